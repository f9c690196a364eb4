"""Image utilities built on ``keras.ops`` (backend-agnostic, differentiable).

Images are channels-last float tensors of shape ``(batch, H, W, C)``.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

__all__ = ["gaussian_blur"]

_PADDINGS = ("reflect", "edge", "zeros")


def _pair(value, name):
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"`{name}` must be a scalar or a pair (y, x); got {value!r}.")
        return tuple(value)
    return (value, value)


def _gaussian_kernel_1d(sigma: float, size: int) -> np.ndarray:
    """Normalised 1-D Gaussian of odd length ``size`` (a delta when ``sigma == 0``)."""
    if sigma == 0:
        kernel = np.zeros(size, dtype=np.float64)
        kernel[size // 2] = 1.0
        return kernel
    x = np.arange(size, dtype=np.float64) - size // 2
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def _padding_indices(n: int, radius: int, mode: str) -> np.ndarray:
    """Source indices of a length-``n`` axis padded by ``radius`` on both sides.

    ``reflect`` mirrors about the edge pixel without repeating it (``... 2 1 | 0 1 2 ...``),
    applied periodically so that any radius works, even one larger than the axis.
    ``edge`` repeats the border pixel.
    """
    idx = np.arange(-radius, n + radius)
    if mode == "edge" or n == 1:
        return np.clip(idx, 0, n - 1)
    period = 2 * (n - 1)
    idx = np.mod(idx, period)
    return np.where(idx >= n, period - idx, idx)


def gaussian_blur(images, sigma, kernel_size=None, *, padding: str = "reflect"):
    """Gaussian-blur a batch of channels-last images, each channel independently.

    The 2-D Gaussian is separable, so the blur is two depthwise convolutions
    (``keras.ops.depthwise_conv``): one ``(k_y, 1)`` pass along the height and one
    ``(1, k_x)`` pass along the width. The output has the same shape as the input and
    the operation is differentiable (usable inside saliency optimisation, e.g. iGOS++).

    Args:
        images: float array/tensor of shape ``(batch, H, W, C)``. Integer inputs are cast
            to ``float32``. ``H``, ``W`` and ``C`` must be statically known.
        sigma: standard deviation in pixels, a scalar or a pair ``(sigma_y, sigma_x)``;
            must be ``>= 0``. ``sigma == 0`` along an axis leaves that axis unblurred.
        kernel_size: odd kernel length, a scalar or a pair ``(k_y, k_x)``. Defaults to
            ``2 * ceil(3 * sigma) + 1`` per axis (covers +-3 sigma). The kernel is always
            normalised to sum to 1, so a truncated kernel still preserves the mean.
        padding: how borders are handled, one of
            ``"reflect"`` (default): mirror without repeating the edge pixel, like
            ``numpy.pad(mode="reflect")``; extended periodically when the kernel radius
            exceeds the image size. A constant image stays exactly constant.
            ``"edge"``: replicate the border pixel.
            ``"zeros"``: zero padding ("same" convolution); darkens the borders.

    Returns:
        Tensor of shape ``(batch, H, W, C)`` with the dtype of ``images`` (``float32``
        for integer input).

    Example:
        >>> import numpy as np
        >>> from keras_isnet.image import gaussian_blur
        >>> x = np.random.rand(2, 32, 32, 3).astype("float32")
        >>> y = gaussian_blur(x, sigma=2.0)  # kernel 13 x 13, reflect padding
        >>> tuple(y.shape)
        (2, 32, 32, 3)
    """
    if padding not in _PADDINGS:
        raise ValueError(f"`padding` must be one of {_PADDINGS}; got {padding!r}.")
    x = ops.convert_to_tensor(images)
    if "float" not in keras.backend.standardize_dtype(x.dtype):
        x = ops.cast(x, "float32")
    if len(x.shape) != 4:
        raise ValueError(f"`images` must have shape (batch, H, W, C); got shape {tuple(x.shape)}.")
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    if height is None or width is None or channels is None:
        raise ValueError(
            f"`images` needs static H, W and C for gaussian_blur; got shape {tuple(x.shape)}."
        )

    sigmas = _pair(sigma, "sigma")
    for s in sigmas:
        if not np.isfinite(s) or s < 0:
            raise ValueError(f"`sigma` must be finite and >= 0; got {sigma!r}.")
    if kernel_size is None:
        sizes = tuple(2 * math.ceil(3 * float(s)) + 1 for s in sigmas)
    else:
        sizes = _pair(kernel_size, "kernel_size")
        for k in sizes:
            if int(k) != k or k < 1 or k % 2 == 0:
                raise ValueError(
                    f"`kernel_size` must be a positive odd integer; got {kernel_size!r}."
                )
        sizes = tuple(int(k) for k in sizes)

    dtype = x.dtype
    for axis, (s, k, n) in enumerate(zip(sigmas, sizes, (height, width), strict=True)):
        if k == 1:
            continue
        radius = k // 2
        kernel = _gaussian_kernel_1d(float(s), k)
        shape = (k, 1) if axis == 0 else (1, k)
        kernel = np.tile(kernel.reshape(shape + (1, 1)), (1, 1, channels, 1))
        kernel = ops.convert_to_tensor(kernel, dtype=dtype)
        if padding == "zeros":
            pad = [[0, 0], [radius, radius], [0, 0], [0, 0]]
            if axis == 1:
                pad = [[0, 0], [0, 0], [radius, radius], [0, 0]]
            x = ops.pad(x, pad)
        else:
            x = ops.take(x, _padding_indices(n, radius, padding), axis=axis + 1)
        x = ops.depthwise_conv(x, kernel, strides=1, padding="valid", data_format="channels_last")
    return x
