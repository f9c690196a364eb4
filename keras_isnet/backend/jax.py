"""The JAX implementation of keras-isnet's backend primitives (see :mod:`keras_isnet.backend`).

Pullbacks are ``jax.vjp``; compilation is ``jax.jit`` of a function of the model's variable
values (read through Keras' ``StatelessScope``), so that a compiled analysis sees the weights
of the call, not those of its first trace. The ISNet's training step is Keras' stateless JAX
step (:mod:`keras_isnet.isnet.model`); its input checks run on the host before the compiled
step (:mod:`keras_isnet.backend.host_checks`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from keras import StatelessScope

# not exported by Keras: the scope a stateless step runs in (see _RecordingScope)
from keras.src.backend.common.stateless_scope import get_stateless_scope

from keras_isnet.backend.host_checks import binary_problem, bounds_problem, finite_problem


def _is_float(p) -> bool:
    return p is not None and jnp.issubdtype(jnp.asarray(p).dtype, jnp.floating)


class _RecordingScope(StatelessScope):
    """A ``StatelessScope`` inside ``jax.vjp``: reads fall through to the enclosing scope (or
    the variables), and assignments (BatchNorm statistics, seed states of a training-mode
    forward pass) are recorded, so that their primal values can be applied after the vjp
    instead of leaking its tracers."""

    def __init__(self, outer):
        super().__init__(initialize_variables=False)
        self.outer = outer
        self.assigned = {}

    def add_update(self, update):
        variable, value = update
        self.assigned[id(variable)] = variable
        super().add_update(update)

    def get_current_value(self, variable):
        value = super().get_current_value(variable)
        if value is None and self.outer is not None:
            return self.outer.get_current_value(variable)
        return value


def vjp(fn: Callable, primals: Sequence) -> tuple[object, Callable]:
    """``(fn(*primals), pullback)`` with ``jax.vjp`` (see the TensorFlow version for the
    contract: zeros for unconnected primals, None for non-floating ones, differentiable).

    Variables that ``fn`` assigns (a training-mode BatchNorm, dropout's seed) take their new
    values after the call, as on the other backends: in the enclosing ``StatelessScope`` (the
    stateless training step), else on the variables themselves."""
    primals = [None if p is None else jnp.asarray(p) for p in primals]
    floating = [_is_float(p) for p in primals]
    outer = get_stateless_scope()
    recording = _RecordingScope(outer)

    def of_floats(*floats):
        it = iter(floats)
        with recording:
            out = fn(*[next(it) if f else p for p, f in zip(primals, floating, strict=True)])
        return out, {key: recording.state_mapping[key] for key in recording.assigned}

    outputs, pull, assigned = jax.vjp(
        of_floats, *[p for p, f in zip(primals, floating, strict=True) if f], has_aux=True
    )
    for key, value in assigned.items():  # primal values: no tracer of the vjp escapes
        variable = recording.assigned[key]
        if outer is not None:
            outer.add_update((variable, value))
        else:
            variable.assign(value)

    def pullback(cotangents):
        cotangents = jax.tree_util.tree_map(
            lambda c, o: jnp.zeros_like(o) if c is None else jnp.asarray(c, o.dtype),
            cotangents,
            outputs,
            is_leaf=lambda c: c is None,
        )
        grads = iter(pull(cotangents))
        return [next(grads) if f else None for f in floating]

    return outputs, pullback


def compile_function(fn: Callable, variables: Sequence = ()) -> Callable:
    """``fn`` compiled with ``jax.jit``, the values of ``variables`` passed in at each call."""
    variables = list(variables)

    def with_values(values, *args):
        with StatelessScope(state_mapping=list(zip(variables, values, strict=True))):
            return fn(*args)

    jitted = jax.jit(with_values)

    def call(*args):
        return jitted([v.value for v in variables], *args)

    return call


def value_and_gradients(fn: Callable, variables: Sequence) -> tuple[object, list]:
    """``(fn(), d fn()[0] / d variables)`` for ``fn`` returning ``(loss, aux)``, with the
    variables' values traced as arguments (outside a compiled step)."""
    variables = list(variables)

    def of_values(values):
        with StatelessScope(state_mapping=list(zip(variables, values, strict=True))):
            loss, aux = fn()
        return loss, aux

    (loss, aux), grads = jax.value_and_grad(of_values, has_aux=True)([v.value for v in variables])
    return (loss, aux), list(grads)


def scale_loss_for_distribution(loss):
    """Identity: under ``keras.distribution`` the step computes the global batch's mean."""
    return loss


def after(tensors):
    """No-op context: operations run in program order here (see the TensorFlow module)."""
    return contextlib.nullcontext()


def replica_position():
    """``(0, 1)``: under ``keras.distribution`` the compiled step sees the global batch (the
    arrays are sharded, the program is one), so its random draws already cover every sample."""
    return 0, 1


def _concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def assert_binary(x, *gated, what: str = "masks"):
    """Check on the host that ``x`` holds only 0 and 1 (skipped inside a trace, where the
    ISNet checks each batch before the compiled step); returns ``x`` (with ``gated``)."""
    if _concrete(x):
        problem = binary_problem(np.asarray(x), what)
        if problem:
            raise ValueError(problem)
    return x if not gated else (x, *gated)


def assert_within(x, low, high, *gated, what: str = "images", hint: str = ""):
    """Check on the host that ``low <= x <= high`` (as :func:`assert_binary`)."""
    if _concrete(x):
        problem = bounds_problem(np.asarray(x), low, high, what, hint)
        if problem:
            raise ValueError(problem)
    return x if not gated else (x, *gated)


def assert_finite(x, *gated, what: str = "images", hint: str = ""):
    """Check on the host that ``x`` holds no NaN or inf (as :func:`assert_binary`)."""
    if _concrete(x):
        problem = finite_problem(np.asarray(x), what, hint)
        if problem:
            raise ValueError(problem)
    return x if not gated else (x, *gated)


def value_errors():
    """The checks raise ValueError themselves: nothing to translate."""
    return contextlib.nullcontext()


def supports_float64() -> bool:
    """Whether float64 tensors are float64 (JAX: only with ``jax_enable_x64``)."""
    return bool(jax.config.jax_enable_x64)


def native_dataset(arrays, *, batch_size: int, shuffle: bool, seed):
    """None: on this backend ``isnet_dataset`` gives a ``keras.utils.PyDataset``."""
    return None


def stateless_value_and_grad(fn: Callable) -> Callable:
    """``jax.value_and_grad(fn, has_aux=True)``: for the stateless training step, whose
    ``fn(trainable_values, ...)`` returns ``(loss, aux)``; gradients w.r.t. its first argument."""
    return jax.value_and_grad(fn, has_aux=True)
