"""Keras' stateless JAX training and evaluation steps, for models that compute their own loss.

On JAX, Keras calls ``train_step(state, data) -> (logs, state)`` with
``state = (trainable, non_trainable, optimizer, metrics)`` values, and ``test_step(state,
data)`` with ``(trainable, non_trainable, metrics)``: nothing may be assigned, every new value
is returned. The ISNet and the RRR / Grad-CAM baselines share these two functions: each gives a
``compute()`` that returns its loss (written as on any backend, reading and "assigning"
variables through a ``keras.StatelessScope``) and an ``update_metrics(total, aux)`` that
updates its trackers and returns the logs. BatchNorm moving statistics and random-generator
states assigned inside ``compute()`` come back as the new non-trainable state.

Example:
    >>> def train_step(self, *args):
    ...     if keras.backend.backend() == "jax":
    ...         return stateless.train_step(self, args[0], compute, update_metrics)
"""

from __future__ import annotations

from collections.abc import Callable

import keras

from keras_isnet import backend


def state_mapping(model: keras.Model, **groups) -> list:
    """``[(variable, value), ...]`` for ``keras.StatelessScope`` from ``name=values`` groups.

    Args:
        model: the compiled model whose variables the values stand for.
        **groups: any of ``trainable``, ``non_trainable``, ``optimizer``, ``metrics``, each a
            list of values in the order of ``model.trainable_variables``,
            ``model.non_trainable_variables``, ``model.optimizer.variables`` and
            ``model.metrics_variables``.

    Returns:
        The list of pairs, group by group.
    """
    refs = {
        "trainable": model.trainable_variables,
        "non_trainable": model.non_trainable_variables,
        "optimizer": model.optimizer.variables if model.optimizer is not None else [],
        "metrics": model.metrics_variables,
    }
    unknown = sorted(set(groups) - set(refs))
    if unknown:
        raise ValueError(f"state_mapping: unknown variable groups {unknown}; use {sorted(refs)}.")
    return [
        pair for name, values in groups.items() for pair in zip(refs[name], values, strict=True)
    ]


def _current(scope, variables, old_values) -> list:
    """The values ``scope`` holds for ``variables``, the old value where none was assigned."""
    new = [scope.get_current_value(v) for v in variables]
    return [old if value is None else value for old, value in zip(old_values, new, strict=True)]


def updated_metrics(model: keras.Model, metrics_values, update: Callable[[], dict]):
    """``(logs, new metric values)``: ``update()`` run with ``model``'s metric variables bound
    to ``metrics_values``; ``update`` updates the trackers and returns the logs."""
    with keras.StatelessScope(state_mapping=state_mapping(model, metrics=metrics_values)) as scope:
        logs = update()
    return logs, _current(scope, model.metrics_variables, metrics_values)


def train_step(
    model: keras.Model,
    state: tuple,
    compute: Callable[[], tuple],
    update_metrics: Callable[[object, object], dict],
) -> tuple:
    """One stateless training step: the gradient of ``compute()``'s loss, applied by the
    optimizer statelessly.

    Args:
        model: the compiled model (its variables define the order of the state's values).
        state: ``(trainable, non_trainable, optimizer, metrics)`` values, as Keras passes them.
        compute: ``() -> (total, aux)``, the loss (a scalar) and anything the metrics need,
            written with the model's variables as on any backend.
        update_metrics: ``(total, aux) -> logs``: updates the trackers and compiled metrics.

    Returns:
        ``(logs, (trainable, non_trainable, optimizer, metrics))``: the new state.
    """
    trainable, non_trainable, optimizer_values, metrics_values = state

    def loss_fn(trainable_values, non_trainable_values):
        mapping = state_mapping(
            model, trainable=trainable_values, non_trainable=non_trainable_values
        )
        with keras.StatelessScope(state_mapping=mapping) as scope:
            total, aux = compute()
        new_non_trainable = _current(scope, model.non_trainable_variables, non_trainable_values)
        with keras.StatelessScope(state_mapping=state_mapping(model, optimizer=optimizer_values)):
            # the loss scale of a LossScaleOptimizer is an optimizer variable
            scaled = model.optimizer.scale_loss(total)
        return scaled, (total, aux, new_non_trainable)

    (_, (total, aux, non_trainable)), grads = backend.stateless_value_and_grad(loss_fn)(
        trainable, non_trainable
    )
    trainable, optimizer_values = model.optimizer.stateless_apply(
        optimizer_values, grads, trainable
    )
    logs, metrics_values = updated_metrics(
        model, metrics_values, lambda: update_metrics(total, aux)
    )
    return logs, (trainable, non_trainable, optimizer_values, metrics_values)


def test_step(
    model: keras.Model,
    state: tuple,
    compute: Callable[[], tuple],
    update_metrics: Callable[[object, object], dict],
) -> tuple:
    """One stateless evaluation step (as :func:`train_step`, without gradients).

    Args:
        model: the compiled model.
        state: ``(trainable, non_trainable, metrics)`` values, as Keras passes them.
        compute: ``() -> (total, aux)``, evaluated with the variables bound to the state.
        update_metrics: ``(total, aux) -> logs``.

    Returns:
        ``(logs, (trainable, non_trainable, metrics))``.
    """
    trainable, non_trainable, metrics_values = state
    mapping = state_mapping(model, trainable=trainable, non_trainable=non_trainable)
    with keras.StatelessScope(state_mapping=mapping):
        total, aux = compute()
    logs, metrics_values = updated_metrics(
        model, metrics_values, lambda: update_metrics(total, aux)
    )
    return logs, (trainable, non_trainable, metrics_values)


__all__ = ["state_mapping", "test_step", "train_step", "updated_metrics"]
