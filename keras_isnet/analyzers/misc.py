"""Reference analyzers that ignore the model: ``input`` and ``random``."""

from __future__ import annotations

import keras
from keras import ops

from keras_isnet.analyzers.base import Analyzer


class Input(Analyzer):
    """``input``: returns the input itself (a baseline for evaluation metrics)."""

    name = "input"

    def _explain(self, inputs, selection, *, training=False, keep=None):
        return [ops.convert_to_tensor(x) for x in inputs]


class Random(Analyzer):
    """``random``: the input plus Gaussian noise of standard deviation ``stddev`` (1.0).

    Args:
        stddev: the noise's standard deviation, default 1.0.
        seed: an int for reproducible noise, default None.
    """

    name = "random"

    def __init__(self, model, *, stddev: float = 1.0, seed: int | None = None, **kwargs):
        self.stddev = stddev
        self._seed_generator = keras.random.SeedGenerator(seed)
        super().__init__(model, **kwargs)

    def _explain(self, inputs, selection, *, training=False, keep=None):
        return [
            ops.add(
                x, keras.random.normal(ops.shape(x), stddev=self.stddev, seed=self._seed_generator)
            )
            for x in inputs
        ]
