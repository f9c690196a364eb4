"""``PSchedule``: the ISNet's heatmap loss weight P as a function of the epoch."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import keras

__all__ = ["PSchedule"]


def _check(value, where: str) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"P must lie in [0, 1], got {value!r} ({where}).")
    return value


class PSchedule(keras.callbacks.Callback):
    """Set the ISNet's heatmap loss weight P at the start of every epoch.

    The ISNet minimises ``(1 - P) * cross_entropy + P * heatmap_loss``; a schedule lets the
    classifier learn first and the heatmap loss take over later. ``ki.ISNet(model,
    P={0: 0.0, 5: 0.8})`` uses this callback itself; add it to ``fit`` to drive a schedule
    from outside (or with a function), as ``keras.callbacks.LearningRateScheduler`` does for
    the learning rate. A ``PSchedule`` passed to ``fit`` replaces the ISNet's own dict
    schedule for that call.

    Args:
        schedule: a mapping ``{epoch: P}`` with a value for epoch 0 (from each key on, its
            value applies until the next key), or a function ``epoch -> P``. Epochs count
            from 0, as in Keras' ``on_epoch_begin``; every P must lie in ``[0, 1]``.
        log: if True, each epoch's P is put into the epoch logs as ``"P"`` (so the
            ``History`` and ``keras.callbacks.TensorBoard`` show it; default False).

    Raises:
        ValueError: a mapping without epoch 0 or a P outside [0, 1] (a function's value is
            checked when the epoch begins); TypeError: the model is not an ISNet.

    Example:
        >>> isnet = ki.ISNet(classifier, P=0.0)
        >>> isnet.fit(data, epochs=10, callbacks=[ki.callbacks.PSchedule({0: 0.0, 3: 0.7})])
        >>> ramp = ki.callbacks.PSchedule(lambda epoch: min(0.8, 0.1 * epoch), log=True)
    """

    def __init__(self, schedule: Mapping[int, float] | Callable[[int], float], log: bool = False):
        super().__init__()
        if isinstance(schedule, Mapping):
            table = {int(k): _check(v, f"epoch {k}") for k, v in schedule.items()}
            if 0 not in table:
                raise ValueError(
                    f"A P schedule needs a value for epoch 0, got keys {sorted(table)}."
                )
            self._table: dict[int, float] | None = table
            self._fn = None
        elif callable(schedule):
            self._table, self._fn = None, schedule
        else:
            raise TypeError(
                f"`schedule` must be a mapping {{epoch: P}} or a function epoch -> P; got "
                f"{type(schedule).__name__}."
            )
        self.log = bool(log)
        self.current: float | None = None

    def value_at(self, epoch: int) -> float:
        """The P that applies in ``epoch`` (0-based).

        Args:
            epoch: the epoch index, ``>= 0``.

        Returns:
            P as a float in ``[0, 1]``.

        Example:
            >>> PSchedule({0: 0.0, 5: 0.8}).value_at(7)
            0.8
        """
        if self._table is None:
            return _check(self._fn(int(epoch)), f"schedule({epoch})")
        key = max(k for k in self._table if k <= int(epoch))
        return self._table[key]

    def on_epoch_begin(self, epoch, logs=None):
        target = getattr(self.model, "_P_value", None)
        if target is None:
            raise TypeError(
                f"PSchedule drives an ISNet's P; the model {type(self.model).__name__} has none."
            )
        self.current = self.value_at(epoch)
        target.assign(self.current)

    def on_epoch_end(self, epoch, logs=None):
        if self.log and logs is not None and self.current is not None:
            logs["P"] = self.current
