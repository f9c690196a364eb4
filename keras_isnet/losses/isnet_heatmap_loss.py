"""The ISNet heatmap loss (reference: ``LRPLossCEValleysGWRP``), written with ``keras.ops``.

The specification is section 2 of the project's design note ``isnet-method.md``. Layout is
channels-last: heatmaps ``(batch, maps, H, W, C)``.
"""

from __future__ import annotations

import math
import numbers

import keras
import numpy as np
from keras import ops

from .gwrp import gwrp
from .masks import _prepare_masks

__all__ = ["isnet_heatmap_loss", "estimate_cuts", "CutAccumulator", "loss_dtype"]

FOREGROUND_CHOICES = ("L2", "hybrid", "L1")
NORM_CHOICES = ("absRoIMean", "RoIMean", "none")
REDUCTION_CHOICES = ("mean", "none")

_EPS = 1e-10  # the reference's eps in the foreground-mean normaliser
_A_MAX = 1.0 - 1e-7  # clamp of a = g / (g + E) before -log(1 - a)


def isnet_heatmap_loss(
    heatmaps,
    masks,
    *,
    d=0.9,
    E=1.0,
    A=1.0,
    B=3.0,
    C1=1.0,
    C2=25.0,
    foreground="L2",
    norm="absRoIMean",
    reduction="mean",
):
    """ISNet heatmap loss: penalise background relevance, keep foreground relevance in [C1, C2].

    For every sample ``b`` and map ``k`` (``M`` = mask broadcast over maps and channels, all
    sums over ``H, W, C``):

    * **Background term** (weight ``A``). ``Ha = |H|`` normalised by ``norm``:

      - ``"absRoIMean"`` (default): ``Ha / (sum(Ha*M) / (sum(M) + 1e-10) + 1e-10)``, i.e.
        divided by the mean ``|H|`` over the foreground;
      - ``"RoIMean"``: the signed ``H`` is divided by its foreground mean (same formula
        without ``|.|``), the absolute value is taken after;
      - ``"none"``: ``|H| * H * W * C``.

      The foreground is zeroed (the zeros stay in the ranking), GWRP with decay ``d`` over the
      ``H*W`` positions of each channel gives ``g``; ``a = min(g / (g + E), 1 - 1e-7)``;
      the term is ``-log(1 - a)`` (``= log(1 + g/E)`` below the clamp), averaged over channels
      and maps.
    * **Foreground term** (weight ``B``), on the un-normalised heatmap:
      ``F = sum(|H| * M)``. Left side ``(min(F/C1, 1) - 1)**2``; right side

      - ``"L2"`` (original ISNet): ``(max(F/C1, C2/C1) - C2/C1)**2``;
      - ``"hybrid"`` (Faster ISNet): the L2 term if ``F <= C1 + C2`` (decided on ``F`` with
        no gradient), else ``|max(F, C1+C2) - (C1+C2)| + 1`` (continuous at ``C1 + C2``);
      - ``"L1"``: ``|max(F, C2) - C2|``, not scaled by ``C1``.

      Both sides are averaged over maps.

    Per sample: ``A * background + B * (left + right)``; ``reduction="mean"`` averages over
    the batch. When ``A == 0`` (or ``B == 0``) that term is skipped entirely, as in the
    reference, so it cannot inject NaN.

    Non-finite heatmap values are replaced before anything else, with statistics of the
    whole batch treated as constants (no gradient flows through them; the replaced entries
    get zero gradient), as in the reference code:

    * NaN -> the foreground mean ``sum(H' * M) / (sum(M) + 1e-10)``, where ``H'`` is ``H`` with
      every non-finite entry set to 0 (so non-finite foreground entries count in the
      denominator);
    * +inf -> ``max(H')`` and -inf -> ``min(H')``: the largest / smallest finite value, except
      that, because ``H'`` contains the zeros put in place of the non-finite entries, the
      replacement is never below 0 for +inf (never above 0 for -inf).

    Precision: float64 heatmaps (tensors or NumPy arrays) are computed in float64; every
    other dtype in float32, also float16/bfloat16 (cast first): the loss is never computed
    below float32, even under a mixed-precision policy, nor below the heatmaps' precision.

    **No foreground** (an all-zero mask for a sample): the normaliser becomes
    ``0 / 1e-10 + 1e-10 = 1e-10``, so any non-zero background relevance is multiplied by 1e10,
    ``a`` hits the clamp ``1 - 1e-7`` (1 - 1.19e-7 in float32) and the background term is
    ``-log(1.19e-7) ~= 15.94`` (float64: ``-log(1e-7) ~= 16.12``) per channel and map, with
    zero gradient (the clamp is flat); ``F = 0`` so the left foreground term is 1. The loss is
    finite: ``~15.94 A + B`` per such sample (``B`` alone if the heatmap is all zero). With
    ``"RoIMean"`` the same happens, and also whenever the signed foreground mean is close to
    0, which makes that norm fragile.

    Args:
        heatmaps: tensor or array ``(batch, maps, H, W, C)``, channels-last, any float dtype.
            ``maps`` is 1 for the selective/stochastic ISNet, one per class for the original.
            ``H, W, C`` must be known statically.
        masks: ``(batch, Hm, Wm)`` or ``(batch, Hm, Wm, 1)``, 1 = foreground, 0 = background,
            exactly binary; ``(Hm, Wm)`` equal to ``(H, W)`` or an integer multiple (then
            pooled, "any foreground keeps it"); see ``prepare_masks``.
        d: GWRP decay, float >= 0 (default 0.9; 0 = max pooling, 1 = mean).
        E: float > 0, scale of the background activation ``g / (g + E)`` (default 1).
        A: weight of the background term (default 1).
        B: weight of the foreground term (default 3; the Faster-ISNet scripts use 1).
        C1: float > 0, lower bound of the foreground relevance ``F`` (default 1).
        C2: float >= C1, upper bound of ``F`` (default 25). See ``estimate_cuts``.
        foreground: right side of the foreground term, one of ``"L2"`` (default),
            ``"hybrid"``, ``"L1"``.
        norm: background normalisation, one of ``"absRoIMean"`` (default), ``"RoIMean"``,
            ``"none"``.
        reduction: ``"mean"`` (default: scalar) or ``"none"`` (one value per sample).

    Returns:
        float32 tensor (float64 for float64 heatmaps): scalar for ``reduction="mean"``,
        shape ``(batch,)`` for ``"none"``.

    Raises:
        ValueError: unknown ``foreground``/``norm``/``reduction`` (lists the valid choices),
            heatmaps not of rank 5, masks of incompatible shape or not binary, ``C1 <= 0``,
            ``C2 < C1``, ``E <= 0`` or ``d < 0``.

    Example:
        >>> import numpy as np
        >>> h = np.random.default_rng(0).normal(size=(2, 1, 8, 8, 3)).astype("float32")
        >>> m = np.zeros((2, 8, 8)); m[:, 2:6, 2:6] = 1
        >>> loss = isnet_heatmap_loss(h, m)  # scalar float32 tensor
        >>> per_sample = isnet_heatmap_loss(
        ...     h, m, d=0.0, B=1.0, foreground="hybrid", reduction="none"
        ... )  # Faster-ISNet settings
        >>> tuple(per_sample.shape)
        (2,)
    """
    _check_choice("foreground", foreground, FOREGROUND_CHOICES)
    _check_choice("norm", norm, NORM_CHOICES)
    _check_choice("reduction", reduction, REDUCTION_CHOICES)
    _check_params(d=d, E=E, C1=C1, C2=C2)

    h = ops.convert_to_tensor(heatmaps)
    shape = tuple(h.shape)
    if len(shape) != 5:
        raise ValueError(
            f"`heatmaps` must have rank 5 with layout (batch, maps, H, W, C) (channels-last), "
            f"got shape {shape}. For one map per sample of shape (batch, H, W, C), pass "
            "`heatmaps[:, None]`."
        )
    _, _, H, W, C = shape
    if H is None or W is None or C is None:
        raise ValueError(
            f"`heatmaps` of shape {shape}: H, W and C of the layout (batch, maps, H, W, C) "
            "must be known statically."
        )
    h = ops.cast(h, loss_dtype(h.dtype))  # float16 / bfloat16 -> float32; float64 stays

    m = _prepare_masks(
        masks,
        (H, W),
        shape[0],
        target=f"`heatmaps` of shape {shape} (batch, maps, H, W, C)",
        arg="masks",
    )
    # Broadcast to all maps and channels: (batch, maps, H, W, C).
    mask = ops.cast(m, h.dtype)[:, None, :, :, None] * ops.ones_like(h)
    inv_mask = 1.0 - mask

    h = _replace_non_finite(h, mask)
    h_abs = ops.abs(h)
    spatial = (2, 3, 4)

    per_sample = None
    if not _is_zero(A):
        if norm == "absRoIMean":
            n_fg = ops.sum(mask, axis=spatial, keepdims=True)
            denom = ops.sum(h_abs * mask, axis=spatial, keepdims=True) / (n_fg + _EPS)
            h_norm = h_abs / (denom + _EPS)
        elif norm == "RoIMean":
            n_fg = ops.sum(mask, axis=spatial, keepdims=True)
            denom = ops.sum(h * mask, axis=spatial, keepdims=True) / (n_fg + _EPS)
            h_norm = ops.abs(h / (denom + _EPS))
        else:  # "none"
            h_norm = h_abs * float(H * W * C)
        background = h_norm * inv_mask
        # (batch, maps, H, W, C) -> (batch, maps, H*W, C); GWRP over the H*W positions.
        hs = ops.shape(background)
        background = ops.reshape(background, (hs[0], hs[1], H * W, C))
        g = gwrp(background, d, axis=2)  # (batch, maps, C)
        a = ops.minimum(g / (g + E), _A_MAX)
        bkg_loss = ops.mean(-ops.log(1.0 - a), axis=(1, 2))  # (batch,)
        per_sample = A * bkg_loss

    if not _is_zero(B):
        f = ops.sum(h_abs * mask, axis=spatial)  # (batch, maps), not normalised
        left = ops.square(ops.where(f < C1, f / C1, 1.0) - 1.0)
        if foreground == "L2":
            right = _l2_right(f, C1, C2)
        elif foreground == "L1":
            right = ops.abs(ops.maximum(f, C2) - C2)
        else:  # "hybrid"
            c12 = C1 + C2
            high = ops.stop_gradient(f) > c12
            l1 = ops.abs(ops.maximum(f, c12) - c12) + 1.0
            right = ops.where(high, l1, _l2_right(f, C1, C2))
        fg_loss = ops.mean(left, axis=1) + ops.mean(right, axis=1)
        per_sample = B * fg_loss if per_sample is None else per_sample + B * fg_loss

    if per_sample is None:  # A == B == 0
        per_sample = ops.zeros_like(h[:, 0, 0, 0, 0])
    if reduction == "mean":
        return ops.mean(per_sample)
    return per_sample


def loss_dtype(dtype) -> str:
    """The dtype a loss on tensors of ``dtype`` is computed in: ``"float64"`` for float64,
    ``"float32"`` for anything else (float16, bfloat16, float32, integers).

    Losses are never computed below float32, so that a mixed-precision policy keeps float32
    losses, nor below the inputs' precision, so that a float64 model trains on float64 losses.

    Example:
        >>> loss_dtype("float16"), loss_dtype("float64")
        ('float32', 'float64')
    """
    return "float64" if keras.backend.standardize_dtype(dtype) == "float64" else "float32"


def _l2_right(f, C1, C2):
    return ops.square(ops.maximum(f / C1, C2 / C1) - C2 / C1)


def _replace_non_finite(h, mask):
    """NaN -> foreground mean, +inf -> max, -inf -> min; statistics over the whole batch."""
    finite = ops.isfinite(h)
    h0 = ops.where(finite, h, 0.0)
    nan_value = ops.stop_gradient(ops.sum(h0 * mask) / (ops.sum(mask) + _EPS))
    pos_value = ops.stop_gradient(ops.max(h0))
    neg_value = ops.stop_gradient(ops.min(h0))
    replaced = ops.where(ops.isnan(h), nan_value, ops.where(h > 0, pos_value, neg_value))
    return ops.where(finite, h, replaced)


def validate_loss_options(
    *, d=0.9, E=1.0, A=1.0, B=3.0, C1=1.0, C2=25.0, foreground="L2", norm="absRoIMean"
) -> None:
    """Check the options of :func:`isnet_heatmap_loss` without computing it (the ISNet does
    this when it is created, so a bad option fails at once, not at the first step).

    Args:
        d, E, A, B, C1, C2, foreground, norm: as for :func:`isnet_heatmap_loss`; ``C1`` and
            ``C2`` may also be equal-length pairs (one cut per map of the dual ISNet).

    Raises:
        ValueError: an unknown ``foreground``/``norm``, ``d < 0``, ``E <= 0`` or cuts with
            ``C1 > C2`` (the message names the option).
    """
    _check_choice("foreground", foreground, FOREGROUND_CHOICES)
    _check_choice("norm", norm, NORM_CHOICES)
    pairs = zip(C1, C2, strict=True) if isinstance(C1, (tuple, list)) else [(C1, C2)]
    for a, b in pairs:
        _check_params(d=d, E=E, C1=a, C2=b)


def _check_choice(name, value, choices):
    if not isinstance(value, str) or value not in choices:
        valid = ", ".join(repr(c) for c in choices)
        raise ValueError(f"`{name}` must be one of {valid}; got {value!r}.")


def _is_number(x):
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _is_zero(x):
    return _is_number(x) and x == 0


def _check_params(*, d, E, C1, C2):
    # Only Python numbers are checked; tensors (e.g. scheduled values) pass through.
    if _is_number(d) and not (math.isfinite(d) and d >= 0):
        raise ValueError(f"`d` (GWRP decay) must be a finite number >= 0, got {d}.")
    if _is_number(E) and not E > 0:
        raise ValueError(f"`E` must be > 0 (scale of g / (g + E)), got {E}.")
    if _is_number(C1) and not C1 > 0:
        raise ValueError(
            f"`C1` must be > 0 (lower bound of the foreground relevance), got {C1}. "
            "Use estimate_cuts() on a plainly trained model, or the default 1.0."
        )
    if _is_number(C1) and _is_number(C2) and not C2 >= C1:
        raise ValueError(f"`C2` must be >= `C1`, got C1={C1}, C2={C2}.")


# --------------------------------------------------------------------------------------------
# Automatic C1/C2 ("cut tune")
# --------------------------------------------------------------------------------------------


def _cuts_from_moments(mean, std):
    c1 = max(mean / 5.0, mean - 3.0 * std)
    c2 = min(25.0 * c1, mean + 3.0 * std)
    return float(c1), float(c2)


def _as_values(values, arg):
    v = np.asarray(ops.convert_to_numpy(values) if not isinstance(values, np.ndarray) else values)
    v = v.astype(np.float64).reshape(-1)
    if not np.all(np.isfinite(v)):
        raise ValueError(f"`{arg}` must be finite; got {int(np.sum(~np.isfinite(v)))} bad values.")
    if np.any(v < 0):
        raise ValueError(
            f"`{arg}` holds sums of |H| and cannot be negative; got minimum {v.min()}. Pass "
            "ops.mean(ops.sum(ops.abs(heatmaps), axis=(2, 3, 4)), axis=1)."
        )
    return v


def estimate_cuts(per_sample_sums, *, ddof=0):
    """Estimate the foreground bounds ``(C1, C2)`` from relevance statistics ("cut tune").

    Following the ISNet reference: train a plain classifier (no heatmap loss) for a few
    epochs and, during the last one, collect per sample the mean over maps of ``sum |H|``
    over the whole image (all ``H, W, C``)::

        values = ops.mean(ops.sum(ops.abs(heatmaps), axis=(2, 3, 4)), axis=1)  # (batch,)

    With ``mu`` the mean and ``sigma`` the standard deviation of all collected values::

        C1 = max(mu / 5, mu - 3 sigma)
        C2 = min(25 C1, mu + 3 sigma)

    ``sigma`` is the *population* standard deviation (``ddof=0``, divide by n) by default.
    Note: the reference's Welford ``finalizeWelford`` returns the *sample* standard
    deviation (``M2 / (n - 1)``); pass ``ddof=1`` to reproduce it exactly. The two differ by
    a factor ``sqrt(n / (n - 1))``, negligible for an epoch of samples.

    Args:
        per_sample_sums: 1-D array/tensor of shape ``(n,)`` (any shape is flattened) of
            non-negative, finite values.
        ddof: 0 (default, population std) or 1 (sample std, as the reference).

    Returns:
        ``(C1, C2)`` as Python floats, ``0 <= C1 <= C2``.

    Raises:
        ValueError: empty input, fewer than ``ddof + 1`` values, non-finite or negative
            values, ``ddof`` not 0 or 1, or all values zero (then ``C1 = 0`` is unusable).

    Example:
        >>> estimate_cuts([1.0, 2.0, 3.0, 4.0, 5.0])  # mu = 3, sigma = sqrt(2)
        (0.6, 7.242640687119286)
    """
    v = _as_values(per_sample_sums, "per_sample_sums")
    _check_ddof(ddof, v.size)
    mean = float(v.mean())
    std = float(v.std(ddof=ddof))
    return _checked_cuts(mean, std)


def _check_ddof(ddof, n):
    if ddof not in (0, 1):
        raise ValueError(f"`ddof` must be 0 (population std) or 1 (sample std), got {ddof!r}.")
    if n <= ddof:
        raise ValueError(
            f"need at least {ddof + 1} value(s) to estimate the cuts with ddof={ddof}, got {n}."
        )


def _checked_cuts(mean, std):
    c1, c2 = _cuts_from_moments(mean, std)
    if not c1 > 0:
        raise ValueError(
            "all per-sample relevance sums are 0, so C1 would be 0; check that the heatmaps "
            "are not all zero (is the model trained / the LRP analyzer correct?)."
        )
    return c1, c2


class CutAccumulator:
    """Streaming version of ``estimate_cuts`` (Welford / Chan running mean and variance).

    Feed it the per-sample values of each batch; ``result()`` equals
    ``estimate_cuts(all_values, ddof=ddof)`` up to float64 rounding.

    Args:
        ddof: 0 (default, population std) or 1 (sample std, as the reference's
            ``finalizeWelford``).

    Example:
        >>> acc = CutAccumulator()
        >>> for batch in ([1.0, 2.0], [3.0, 4.0, 5.0]):
        ...     acc.update(batch)  # e.g. ops.mean(ops.sum(ops.abs(h), axis=(2, 3, 4)), axis=1)
        >>> acc.result()
        (0.6, 7.242640687119286)
    """

    def __init__(self, ddof=0):
        if ddof not in (0, 1):
            raise ValueError(f"`ddof` must be 0 (population std) or 1 (sample std), got {ddof!r}.")
        self.ddof = ddof
        self.reset()

    def reset(self):
        """Forget all values."""
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0  # sum of squared deviations from the mean

    def update(self, values):
        """Add values, shape ``(n,)`` (any shape is flattened): NumPy, list or tensor."""
        v = _as_values(values, "values")
        n_b = v.size
        if n_b == 0:
            return
        mean_b = float(v.mean())
        m2_b = float(np.sum((v - mean_b) ** 2))
        n = self.count + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta * delta * self.count * n_b / n
        self.count = n

    @property
    def std(self):
        """Standard deviation with this accumulator's ``ddof``."""
        _check_ddof(self.ddof, self.count)
        return math.sqrt(self.m2 / (self.count - self.ddof))

    def result(self):
        """Return ``(C1, C2)`` as floats; see ``estimate_cuts``."""
        _check_ddof(self.ddof, self.count)
        return _checked_cuts(self.mean, self.std)
