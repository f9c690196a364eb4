"""Analyzers that average gradients over many inputs: integrated gradients and SmoothGrad.

Both evaluate the gradient on augmented copies of the batch (points on a path, noisy
copies), processed together in chunks of ``augment_batch_size`` copies.

The explained neuron is chosen on the *original* input: with ``"max_activation"`` the
largest output of ``x`` is explained at every path point or noisy copy (which reproduces
iNNvestigate's reference numbers).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_isnet.analyzers.gradient import Gradient
from keras_isnet.selection import selection_weights


class _AugmentedGradient(Gradient):
    def __init__(self, model, *, n: int, augment_batch_size: int | None = None, **kwargs):
        if int(n) < 1:
            raise ValueError(f"{type(self).__name__} needs at least one sample, got {n}.")
        self._n = int(n)
        self.augment_batch_size = augment_batch_size
        super().__init__(model, **kwargs)

    def _points(self, inputs, ks):
        """The augmented inputs for copy numbers ``ks``, stacked copy-major."""
        raise NotImplementedError

    def _combine(self, inputs, mean_gradients):
        return mean_gradients

    def _explain(self, inputs, selection, *, training=False, keep=None):
        values, _ = self.engine.replay(inputs)
        head = values[self.engine.head_key]
        weights = selection_weights(head, self.neuron_selection_mode, selection)
        chunk = self.augment_batch_size or self._n
        totals = None
        for start in range(0, self._n, chunk):
            ks = list(range(start, min(start + chunk, self._n)))
            points = self._points(inputs, ks)
            tiled = ops.concatenate([weights] * len(ks), axis=0)
            grads = self._finalize(points, self._propagate(points, lambda h, w=tiled: w))
            sums = [ops.sum(ops.reshape(g, (len(ks), -1, *g.shape[1:])), axis=0) for g in grads]
            totals = (
                sums
                if totals is None
                else [ops.add(t, s) for t, s in zip(totals, sums, strict=True)]
            )
        means = [ops.divide(t, float(self._n)) for t in totals]
        return self._combine(inputs, means)


class IntegratedGradients(_AugmentedGradient):
    """Integrated gradients (Sundararajan et al., 2017), ``integrated_gradients``.

    ``(x - x0) * mean_k grad(x0 + a_k (x - x0))`` with ``a_k = k / steps``,
    ``k = 0 .. steps - 1``: a left Riemann sum (``a = 0`` included, ``a = 1`` not), as in
    iNNvestigate.

    Args:
        reference_inputs: the baseline ``x0``, a scalar or an array broadcastable to the input
            (default 0).
        steps: the number of path points, default 64.
        augment_batch_size: path points evaluated together (default: all).
    """

    name = "integrated_gradients"

    def __init__(self, model, *, reference_inputs=0.0, steps: int = 64, **kwargs):
        self.reference_inputs = reference_inputs
        self.steps = steps
        super().__init__(model, n=steps, **kwargs)

    def _references(self, inputs):
        refs = self.reference_inputs
        if not isinstance(refs, (list, tuple)):
            refs = [refs] * len(inputs)
        return [
            ops.add(ops.zeros_like(x), ops.cast(r, x.dtype))
            for x, r in zip(inputs, refs, strict=True)
        ]

    def _points(self, inputs, ks):
        alphas = np.arange(self._n) / self._n
        out = []
        for x, ref in zip(inputs, self._references(inputs), strict=True):
            diff = ops.subtract(x, ref)
            out.append(ops.concatenate([ops.add(ref, float(alphas[k]) * diff) for k in ks], 0))
        return out

    def _finalize(self, inputs, relevances):
        return relevances

    def _combine(self, inputs, mean_gradients):
        return [
            ops.multiply(ops.subtract(x, ref), g)
            for x, ref, g in zip(inputs, self._references(inputs), mean_gradients, strict=True)
        ]


class SmoothGrad(_AugmentedGradient):
    """SmoothGrad (Smilkov et al., 2017), ``smoothgrad``: the mean gradient of noisy copies.

    Args:
        augment_by_n: the number of noisy copies, default 64.
        noise_scale: the noise's standard deviation in input units, default 1.0 (the value
            iNNvestigate uses; unlike iNNvestigate, a given value is honoured).
        postprocess: None, "abs" or "square", applied to each gradient before averaging.
        seed: an int for reproducible noise.
    """

    name = "smoothgrad"

    def __init__(
        self, model, *, augment_by_n: int = 64, noise_scale: float = 1.0, seed=None, **kwargs
    ):
        self.noise_scale = noise_scale
        self._seed_generator = keras.random.SeedGenerator(seed)
        super().__init__(model, n=augment_by_n, **kwargs)

    def _points(self, inputs, ks):
        out = []
        for x in inputs:
            rep = ops.concatenate([x] * len(ks), axis=0)
            noise = keras.random.normal(
                ops.shape(rep), stddev=self.noise_scale, seed=self._seed_generator
            )
            out.append(ops.add(rep, ops.cast(noise, x.dtype)))
        return out
