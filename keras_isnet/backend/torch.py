"""The PyTorch implementation of keras-isnet's backend primitives (see
:mod:`keras_isnet.backend`).

Pullbacks are ``torch.autograd.grad`` with ``create_graph=True`` (so the ISNet can train on
heatmaps built from them); the step runs eagerly, as Keras' PyTorch trainer runs it; the
input checks run on the values directly and raise ``ValueError`` before any state changes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch
from keras import tree

from keras_isnet.backend.host_checks import binary_problem, bounds_problem, finite_problem


def vjp(fn: Callable, primals: Sequence) -> tuple[object, Callable]:
    """``(fn(*primals), pullback)`` with ``torch.autograd.grad`` (see the TensorFlow version
    for the contract: zeros for unconnected primals, None for non-floating ones; the pullback
    is differentiable)."""
    sources, args = [], []
    for p in primals:
        if p is None or not torch.is_tensor(p) and not hasattr(p, "dtype"):
            args.append(p)
            continue
        t = torch.as_tensor(p)
        if t.is_floating_point():
            # A fresh node per primal: the pullback is then d fn / d primal alone (PyTorch's
            # graph is global, so differentiating w.r.t. the tensor itself would add the
            # paths through other primals computed from it, e.g. both inputs of a residual
            # Add); an alias keeps the primal's own history for outer gradients.
            t = t.view_as(t) if t.requires_grad else t.detach().requires_grad_(True)
            sources.append(t)
        args.append(t)
    floating = [torch.is_tensor(a) and a.is_floating_point() for a in args]
    with torch.enable_grad():
        outputs = fn(*args)

    def pullback(cotangents):
        outs = tree.flatten(outputs)
        cots = tree.flatten(cotangents)
        pairs = [
            (o, torch.zeros_like(o) if c is None else torch.as_tensor(c, dtype=o.dtype))
            for o, c in zip(outs, cots, strict=True)
            if torch.is_tensor(o) and o.requires_grad
        ]
        if pairs and sources:
            with torch.enable_grad():
                grads = torch.autograd.grad(
                    [o for o, _ in pairs],
                    sources,
                    grad_outputs=[c for _, c in pairs],
                    create_graph=True,
                    retain_graph=True,
                    allow_unused=True,
                )
        else:
            grads = [None] * len(sources)
        it = iter(
            torch.zeros_like(s) if g is None else g for s, g in zip(sources, grads, strict=True)
        )
        return [next(it) if f else None for f in floating]

    return outputs, pullback


def compile_function(fn: Callable, variables: Sequence = ()) -> Callable:
    """``fn`` itself: the PyTorch backend runs eagerly."""
    return fn


def value_and_gradients(fn: Callable, variables: Sequence) -> tuple[object, list]:
    """``(fn(), d fn()[0] / d variables)`` by ``torch.autograd.grad`` (zeros where a variable
    does not reach the loss)."""
    with torch.enable_grad():
        value = fn()
        tensors = [v.value for v in variables]
        grads = torch.autograd.grad(value[0], tensors, allow_unused=True)
    return value, [
        torch.zeros_like(t) if g is None else g for t, g in zip(tensors, grads, strict=True)
    ]


def scale_loss_for_distribution(loss):
    """Identity: the PyTorch step runs on one device."""
    return loss


def after(tensors):
    """No-op context: operations run in program order here (see the TensorFlow module)."""
    return contextlib.nullcontext()


def replica_position():
    """``(0, 1)``: the PyTorch step runs on one device."""
    return 0, 1


def _host(x):
    return x.detach().cpu().numpy() if torch.is_tensor(x) else x


def assert_binary(x, *gated, what: str = "masks"):
    """Raise ValueError unless ``x`` holds only 0 and 1; returns ``x`` (with ``gated``)."""
    problem = binary_problem(_host(x), what)
    if problem:
        raise ValueError(problem)
    return x if not gated else (x, *gated)


def assert_within(x, low, high, *gated, what: str = "images", hint: str = ""):
    """Raise ValueError unless ``low <= x <= high`` (1e-3 of the range tolerated)."""
    problem = bounds_problem(_host(x), low, high, what, hint)
    if problem:
        raise ValueError(problem)
    return x if not gated else (x, *gated)


def assert_finite(x, *gated, what: str = "images", hint: str = ""):
    """Check on the host that ``x`` holds no NaN or inf (as :func:`assert_binary`)."""
    problem = finite_problem(_host(x), what, hint)
    if problem:
        raise ValueError(problem)
    return x if not gated else (x, *gated)


def value_errors():
    """The checks raise ValueError themselves: nothing to translate."""
    return contextlib.nullcontext()


def supports_float64() -> bool:
    """Whether float64 tensors are float64 (JAX: only with ``jax_enable_x64``)."""
    return True


def native_dataset(arrays, *, batch_size: int, shuffle: bool, seed):
    """None: on this backend ``isnet_dataset`` gives a ``keras.utils.PyDataset``."""
    return None
