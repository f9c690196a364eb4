"""Global weighted rank pooling (GWRP), written with ``keras.ops`` only."""

from __future__ import annotations

import math

import numpy as np
from keras import ops

__all__ = ["gwrp", "gwrp_weights"]


def gwrp_weights(n: int, d: float) -> np.ndarray:
    """Normalised GWRP weights ``d**i / sum_j d**j`` for ``i = 0 .. n-1`` (float64, shape (n,)).

    ``0**0`` is taken as 1, so ``d = 0`` gives ``[1, 0, 0, ...]`` (max pooling) and ``d = 1``
    gives ``[1/n, ..., 1/n]`` (the mean). For ``d > 1`` the raw weights are rescaled before
    normalising, so a large ``n`` does not overflow.

    Example:
        >>> gwrp_weights(3, 0.5).tolist()
        [0.5714285714285714, 0.2857142857142857, 0.14285714285714285]
    """
    w = _raw_weights(n, d)
    return w / w.sum()


def _raw_weights(n, d) -> np.ndarray:
    """Unnormalised weights proportional to ``d**i`` (exactly ``d**i`` for ``d <= 1``)."""
    n = int(n)
    if n < 1:
        raise ValueError(f"gwrp: the pooled axis must have at least one element, got {n}.")
    d = _check_d(d)
    if d <= 1.0:
        # np.power(0.0, 0) == 1.0, so d = 0 gives [1, 0, 0, ...]; tiny weights underflow to 0.
        return np.power(d, np.arange(n, dtype=np.float64))
    # d > 1: scale by d**-(n-1) so the largest weight is 1 and nothing overflows.
    return np.exp((np.arange(n, dtype=np.float64) - (n - 1)) * math.log(d))


def gwrp(x, d: float, axis: int = -1):
    """Global weighted rank pooling along one axis.

    The values along ``axis`` are sorted in descending order, ``x_(0) >= x_(1) >= ...``, and
    combined with exponentially decaying weights::

        gwrp(x) = sum_i d**i * x_(i) / sum_i d**i

    with ``0**0 = 1``: ``d = 0`` is max pooling, ``d = 1`` is the mean, values in between
    interpolate (Kolesnikov & Lampert 2016; used by the ISNet background loss with d = 0.9).

    The function is differentiable: the gradient flows through the sorted values (ties are
    broken by the sort, as for any max pooling).

    Args:
        x: tensor or array of any rank >= 1 and shape ``(..., n, ...)``; the length ``n`` of
            ``axis`` must be known statically. Integer inputs are cast to float32; float
            inputs keep their dtype.
        d: float >= 0, the decay of the weights (no default; the ISNet loss uses 0.9).
        axis: int, the axis to pool over (default -1, the last axis).

    Returns:
        Tensor of ``x``'s shape with ``axis`` removed, same float dtype as ``x``.

    Raises:
        ValueError: if ``d`` is negative or not finite, if ``x`` is a scalar, if ``axis`` is out
            of range, or if the pooled axis is empty or has unknown length.

    Example:
        >>> import numpy as np
        >>> float(gwrp(np.array([1.0, 4.0, 2.0]), d=0.5))  # (4 + 0.5*2 + 0.25*1) / 1.75
        3.0
        >>> tuple(gwrp(np.zeros((8, 3, 49)), d=0.9).shape)  # pool 49 positions of 8x3 maps
        (8, 3)
    """
    d = _check_d(d)
    x = ops.convert_to_tensor(x)
    if not _is_float(x.dtype):
        x = ops.cast(x, "float32")
    rank = len(x.shape)
    if rank == 0:
        raise ValueError("gwrp: `x` must have at least one axis, got a scalar.")
    if not -rank <= axis < rank:
        raise ValueError(
            f"gwrp: `axis`={axis} is out of range for `x` of shape {tuple(x.shape)} "
            f"(rank {rank}); pass an axis in [-{rank}, {rank - 1}]."
        )
    axis = axis % rank
    n = x.shape[axis]
    if n is None:
        raise ValueError(
            f"gwrp: the length of `axis`={axis} of `x` (shape {tuple(x.shape)}) must be known "
            "statically, to build the weights."
        )
    raw = _raw_weights(n, d)
    total = float(raw.sum())
    if axis != rank - 1:
        x = ops.moveaxis(x, axis, -1)
    # Only the ranks whose weight is not negligible are needed: with d < 1 the weights fall
    # below 1e-12 of the largest after k ranks, and a partial top-k is much cheaper than a full
    # sort (d = 0.9: the top 263 of 1 024 positions). The result differs from the full sum by
    # less than 1e-12 * max|x| * n / total: far below float32 resolution.
    k = n if not 0.0 < float(d) < 1.0 else min(n, math.ceil(math.log(1e-12) / math.log(d)) + 1)
    if d == 0:
        k = 1
    weights = ops.convert_to_tensor(raw[:k], dtype=x.dtype)
    if k < n:
        x_sorted = ops.top_k(x, k, sorted=True)[0]
    else:
        # Descending sort; keras.ops.sort sorts ascending and is differentiable.
        x_sorted = -ops.sort(-x, axis=-1)
    return ops.sum(x_sorted * weights, axis=-1) / total


def _check_d(d) -> float:
    try:
        d = float(d)
    except (TypeError, ValueError):
        raise ValueError(f"gwrp: `d` must be a number >= 0, got {d!r}.") from None
    if not math.isfinite(d) or d < 0:
        raise ValueError(
            f"gwrp: `d` must be a finite number >= 0 (0 = max pooling, 1 = mean), got {d}."
        )
    return d


def _is_float(dtype) -> bool:
    name = getattr(dtype, "name", None) or str(dtype)
    return "float" in name
