"""iGOS++ (Khorram et al., 2021) and I-GOS (Qi et al., 2019): saliency by mask optimisation.

Masks live at a low ``resolution`` (default 28 x 28), are up-sampled bilinearly to the input,
and blend the image ``x`` with a baseline ``b`` (a Gaussian-blurred copy of ``x``):
``phi(x, b, m) = x * m + b * (1 - m)``. For a mask ``m`` (up-sampled ``u``) and the path
``a_k = k / ig_iter``, ``k = 1 .. ig_iter``:

* deletion score ``D(u) = mean_k f(phi(x, b, a_k u))`` (mask 0 = pixel deleted);
* insertion score ``I(u) = mean_k f(phi(b, x, a_k u))`` (mask 0 = pixel revealed);

where ``f`` is the selected output (softmax probability by default, as in the paper). iGOS++
keeps a deletion mask ``m_d`` and an insertion mask ``m_i`` and minimises

``D(u_d) - I(u_i) + D(u_d u_i) - I(u_d u_i) + L1 mean|1 - m_d m_i| + L2 BTV(x, m_d m_i)``

from ``m_d = m_i = 1``. Each of the ``iterations`` steps uses the integrated gradient: the
gradient of the path terms evaluated on images with Gaussian noise (std ``noise``), halved
to balance the four terms, plus the gradient of the regularisation; the step size comes
from a backtracking (Armijo) line search started at ``alpha`` (condition
``loss(new) <= loss - beta * step * |grad|^2``, step times ``decay`` until it holds or drops
below ``min_alpha``) on the noise-free objective; the masks are clamped to [0, 1].

``BTV(x, m) = 0.5 (TV(m) + sum_dir mean(exp(-dx^2 / sigma) |du|^2))``: the squared total
variation of the low-resolution mask plus that of the up-sampled mask weighted by the
image's (channel-averaged) differences between neighbours, ``sigma = btv_sigma``.

I-GOS (``"igos"``) is the single-mask special case: one deletion mask, objective
``D(u) + L1 mean|1 - m| + L2 BTV(x, m)``, same integrated gradient and line search.

The analysis is ``1 - upsample(m_d m_i)`` (``1 - upsample(m)`` for I-GOS), repeated over the
input's channels: the official code ranks pixels by increasing mask value (small = deleted
or revealed first); ``1 -`` makes large values important, like every other analyzer here, so
that :func:`keras_isnet.metrics.insertion_curve` ranks them the same way.

Differences from the official script: ``iterations`` and ``ig_iter`` mean what they say
(the script swaps them), there is no unused optimizer option, and the line search evaluates
the objective without noise, so that its sufficient-decrease test compares like with like.
The optimisation runs eagerly (each step is a compiled function), so :meth:`relevance` is not
available inside a ``tf.function``.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_isnet.analyzers.grad_cam import check_single_image_input, upsample
from keras_isnet.analyzers.gradient import Gradient
from keras_isnet.arrays import to_numpy
from keras_isnet.backend import compile_function, vjp
from keras_isnet.image import gaussian_blur
from keras_isnet.selection import selection_weights


def _pair(value, name):
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or any(int(v) != v or v < 1 for v in pair):
        raise ValueError(f"{name} must be a positive int or a pair of them; got {value!r}.")
    return tuple(int(v) for v in pair)


def _tv(m):
    """Mean squared differences between vertical and horizontal neighbours, per sample."""
    a = ops.mean(ops.square(m[:, 1:, :, :] - m[:, :-1, :, :]), axis=(1, 2, 3))
    b = ops.mean(ops.square(m[:, :, 1:, :] - m[:, :, :-1, :]), axis=(1, 2, 3))
    return a + b


class IGOSPlusPlus(Gradient):
    """iGOS++ (``igos++``): separate deletion and insertion masks optimised with integrated
    gradients.

    Args:
        resolution: the masks' height and width, an int or a pair; at most the input's size
            (a ValueError otherwise). Default None: 28, or the input's size where smaller.
        iterations: optimisation steps (default 15).
        ig_iter: points on the integration path (default 20).
        L1: weight of ``mean|1 - mask|`` (default 1).
        L2: weight of the bilateral total variation (default 20).
        alpha: initial step of the line search (default 1000).
        noise: standard deviation of the Gaussian noise added to the path images, in input
            units (default 0.2; 0 for none).
        btv_sigma: the bilateral weights' ``sigma`` (default 0.01).
        softmax: if True (default, as in the paper), the score is the softmax probability of
            the selected output (a softmax over the last axis of the logits, the model's final
            softmax being stripped); False uses the logit itself.
        blur_sigma, blur_kernel_size: the baseline's Gaussian blur (default 50 and 51, a
            51 x 51 kernel as in the official code); see :func:`keras_isnet.image.gaussian_blur`.
        beta, decay, min_alpha: the line search's sufficient-decrease constant (1e-4), step
            factor (0.2) and smallest step (1e-5).
        seed: an int for reproducible noise.
        verbose: 1 shows a progress bar (``keras.utils.Progbar``) over the iterations.
        **kwargs: ``neuron_selection_mode``, ``output_index``, ``strip_softmax``.

    The explained neuron is chosen on the original input (``max_activation``) or given
    (``index``: a missing ``neuron_selection`` raises a ValueError). The samples of a batch
    are optimised together (memory grows with ``4 * ig_iter * batch`` images; use
    ``analyze(x, batch_size=...)``).
    """

    name = "igos++"
    _n_masks = 2
    _ig_scale = 0.5  # the official code halves the four path terms' gradient

    def __init__(
        self,
        model,
        *,
        resolution=None,
        iterations: int = 15,
        ig_iter: int = 20,
        L1: float = 1.0,
        L2: float = 20.0,
        alpha: float = 1000.0,
        noise: float = 0.2,
        btv_sigma: float = 0.01,
        softmax: bool = True,
        blur_sigma=50.0,
        blur_kernel_size=51,
        beta: float = 1e-4,
        decay: float = 0.2,
        min_alpha: float = 1e-5,
        seed=None,
        verbose: int = 0,
        **kwargs,
    ):
        self._default_resolution = resolution is None
        self.resolution = _pair(28 if resolution is None else resolution, "resolution")
        for name, value in (("iterations", iterations), ("ig_iter", ig_iter)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive int; got {value!r}.")
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must lie in (0, 1); got {decay!r}.")
        if alpha <= 0 or noise < 0 or btv_sigma <= 0:
            raise ValueError("alpha and btv_sigma must be > 0 and noise >= 0.")
        self.iterations, self.ig_iter = int(iterations), int(ig_iter)
        self.L1, self.L2, self.alpha, self.noise = float(L1), float(L2), float(alpha), noise
        self.btv_sigma, self.softmax = float(btv_sigma), bool(softmax)
        self.blur_sigma, self.blur_kernel_size = blur_sigma, blur_kernel_size
        self.beta, self.decay, self.min_alpha = float(beta), float(decay), float(min_alpha)
        self.verbose = verbose
        self._seed_generator = keras.random.SeedGenerator(seed)
        super().__init__(model, **kwargs)
        check_single_image_input(self)
        self._check_resolution(tuple(model.inputs[0].shape[1:3]))
        # analyze() runs the optimisation loop eagerly; its steps are compiled below.
        self._compiled = self._compiled_explain
        self._compiled_layers = self._compiled_explain_layers
        self._grads_fn = compile_function(self._grads, self.model.variables)
        self._loss_fn = compile_function(self._loss, self.model.variables)

    def _check_resolution(self, size):
        if self._default_resolution:
            self.resolution = tuple(
                r if n is None else min(r, int(n)) for r, n in zip((28, 28), size, strict=True)
            )
            return
        for r, n, axis in zip(self.resolution, size, ("height", "width"), strict=True):
            if n is not None and r > int(n):
                raise ValueError(
                    f"resolution {self.resolution} is larger than the input's {axis} {n}; the "
                    "masks are up-sampled to the input, so choose at most the input size."
                )

    # ------------------------------------------------------------------------- objective
    def _scores(self, images, weights, copies: int):
        """The explained score of ``copies * batch`` images stacked copy-major: ``(copies,
        batch)``."""
        values, _ = self.engine.replay([images])
        head = values[self.engine.head_key]
        if self.softmax:
            head = ops.softmax(head, axis=-1)
        tiled = ops.tile(weights, [copies] + [1] * (len(weights.shape) - 1))
        flat = ops.reshape(head * ops.cast(tiled, head.dtype), (ops.shape(head)[0], -1))
        return ops.reshape(ops.sum(flat, axis=1), (copies, -1))

    def _path_score(self, start, end, up_mask, weights, noise):
        """``mean_k f(start * a_k u + end * (1 - a_k u))``, ``a_k = k / ig_iter``: ``(batch,)``."""
        n = self.ig_iter
        a = ops.reshape(ops.arange(1, n + 1, dtype=start.dtype) / n, (n, 1, 1, 1, 1))
        m = a * up_mask[None]
        images = start[None] * m + end[None] * (1.0 - m)
        if noise is not None:
            images = images + noise
        images = ops.reshape(images, (-1, *start.shape[1:]))
        return ops.mean(self._scores(images, weights, n), axis=0)

    def _up(self, mask, x):
        return upsample(mask, int(x.shape[1]), int(x.shape[2]))

    def _btv(self, x, mask):
        up = self._up(mask, x)
        gray = ops.mean(x, axis=-1, keepdims=True)
        wy = ops.exp(-ops.square(gray[:, 1:] - gray[:, :-1]) / self.btv_sigma)
        wx = ops.exp(-ops.square(gray[:, :, 1:] - gray[:, :, :-1]) / self.btv_sigma)
        bil = ops.mean(wy * ops.square(up[:, 1:] - up[:, :-1]), axis=(1, 2, 3)) + ops.mean(
            wx * ops.square(up[:, :, 1:] - up[:, :, :-1]), axis=(1, 2, 3)
        )
        return 0.5 * (_tv(mask) + bil)

    def _regularization(self, x, mask):
        l1 = ops.mean(ops.abs(1.0 - mask), axis=(1, 2, 3))
        return self.L1 * l1 + self.L2 * self._btv(x, mask)

    def _terms(self, x, base, masks, weights, noises):
        """``(path terms, regularisation)``, each ``(batch,)``."""
        md, mi = masks
        ud, ui = self._up(md, x), self._up(mi, x)
        both = ud * ui
        nz = noises if noises is not None else [None] * 4
        terms = (
            self._path_score(x, base, ud, weights, nz[0])
            - self._path_score(base, x, ui, weights, nz[1])
            + self._path_score(x, base, both, weights, nz[2])
            - self._path_score(base, x, both, weights, nz[3])
        )
        return terms, self._regularization(x, md * mi)

    def _n_noises(self):
        return 4

    def _loss(self, x, base, masks, weights):
        terms, reg = self._terms(x, base, list(masks), weights, None)
        return terms + reg

    def _grads(self, x, base, masks, weights, noises):
        def objective(*ms):
            terms, reg = self._terms(x, base, list(ms), weights, noises)
            return self._ig_scale * ops.sum(terms) + ops.sum(reg)

        out, pullback = vjp(objective, list(masks))
        return pullback(ops.ones_like(out))

    def _saliency_mask(self, masks):
        out = masks[0]
        for m in masks[1:]:
            out = out * m
        return out

    # ------------------------------------------------------------------------ optimiser
    def _explain(self, inputs, selection, *, training=False, keep=None):
        x = inputs[0]
        self._check_resolution(tuple(x.shape[1:3]))
        values, _ = self.engine.replay([x])
        head = values[self.engine.head_key]
        weights = selection_weights(head, self.neuron_selection_mode, selection)
        base = gaussian_blur(x, self.blur_sigma, self.blur_kernel_size)
        batch = int(x.shape[0])
        shape = (batch, *self.resolution, 1)
        masks = [ops.ones(shape, x.dtype) for _ in range(self._n_masks)]
        bar = keras.utils.Progbar(self.iterations) if self.verbose else None
        path_shape = (self.ig_iter, *x.shape)
        for it in range(self.iterations):
            noises = None
            if self.noise:
                noises = [
                    ops.cast(
                        keras.random.normal(
                            path_shape, stddev=self.noise, seed=self._seed_generator
                        ),
                        x.dtype,
                    )
                    for _ in range(self._n_noises())
                ]
            grads = self._grads_fn(x, base, masks, weights, noises)
            masks, loss = self._line_search(x, base, masks, grads, weights)
            if bar is not None:
                bar.update(it + 1, values=[("loss", float(np.mean(loss)))])
        saliency = 1.0 - self._up(self._saliency_mask(masks), x)
        return [ops.cast(ops.broadcast_to(saliency, ops.shape(x)), x.dtype)]

    def _line_search(self, x, base, masks, grads, weights):
        """Backtracking (Armijo) line search per sample; returns the new masks and losses."""
        base_loss = to_numpy(self._loss_fn(x, base, masks, weights))
        g2 = sum(np.sum(np.square(to_numpy(g)), axis=(1, 2, 3)) for g in grads)
        alphas = np.full(len(base_loss), self.alpha, dtype=np.float64)
        active = np.ones(len(base_loss), dtype=bool)
        while True:
            step = ops.reshape(ops.convert_to_tensor(alphas, x.dtype), (-1, 1, 1, 1))
            new = [ops.clip(m - step * g, 0.0, 1.0) for m, g in zip(masks, grads, strict=True)]
            loss = to_numpy(self._loss_fn(x, base, new, weights))
            failed = loss > base_loss - self.beta * alphas * g2
            active = active & failed & (alphas >= self.min_alpha)
            if not active.any():
                return new, loss
            alphas = np.where(active, alphas * self.decay, alphas)


class IGOS(IGOSPlusPlus):
    """I-GOS (``igos``): the single-mask special case of :class:`IGOSPlusPlus`.

    One deletion mask ``m`` minimising ``D(u) + L1 mean|1 - m| + L2 BTV(x, m)`` with the same
    integrated gradient (not halved), line search and defaults; the analysis is
    ``1 - upsample(m)``.
    """

    name = "igos"
    _n_masks = 1
    _ig_scale = 1.0

    def _n_noises(self):
        return 1

    def _terms(self, x, base, masks, weights, noises):
        (m,) = masks
        noise = None if noises is None else noises[0]
        terms = self._path_score(x, base, self._up(m, x), weights, noise)
        return terms, self._regularization(x, m)
