"""Foreground-mask preparation for the ISNet heatmap loss (``keras.ops`` only)."""

from __future__ import annotations

import numpy as np
from keras import ops

__all__ = ["prepare_masks"]


def prepare_masks(masks, heatmap_spatial_shape, *, batch_size=None):
    """Validate binary foreground masks and bring them to the heatmap's spatial size.

    Masks use 1 = foreground (region of interest: relevance is allowed there) and
    0 = background (relevance there is penalised).

    Steps:

    1. ``(batch, H, W, 1)`` is squeezed to ``(batch, H, W)``.
    2. Every value must be exactly 0 or 1 (``bool`` masks are accepted). Anything else is a
       ``ValueError``; masks are never binarised silently. The check needs the values, so it
       runs when the mask is concrete (NumPy, eager tensors). Inside a traced function
       (``tf.function``, ``jax.jit``) Python cannot see the values and the check is skipped:
       validate masks in the input pipeline, or call this function once eagerly.
    3. If the mask is larger than the heatmap by integer factors ``(fh, fw)`` (heatmaps of
       hidden layers), it is average-pooled by ``(fh, fw)`` and every non-zero cell becomes 1
       ("any foreground keeps it"): a cell is background only if all its pixels are.

    Args:
        masks: array or tensor, shape ``(batch, Hm, Wm)`` or ``(batch, Hm, Wm, 1)``, values in
            {0, 1}, any numeric or bool dtype. ``Hm, Wm`` must equal ``(H, W)`` or be integer
            multiples of them.
        heatmap_spatial_shape: ``(H, W)``, the spatial size of the heatmaps.
        batch_size: optional int, the heatmaps' batch size; if given (and the mask's batch
            size is known) they must agree. Default None: not checked.

    Returns:
        float32 tensor of shape ``(batch, H, W)`` with values in {0, 1}.

    Raises:
        ValueError: on a non-binary mask (the message gives how many values are bad and one
            example), a mask of wrong or unknown rank, a batch-size mismatch, or a spatial
            size that is not an integer multiple of ``(H, W)`` (the message names both shapes).

    Example:
        >>> import numpy as np
        >>> m = np.zeros((1, 4, 4)); m[0, 0, 1] = 1  # one foreground pixel in the top-left cell
        >>> np.asarray(prepare_masks(m, (2, 2)))[0].tolist()
        [[1.0, 0.0], [0.0, 0.0]]
    """
    try:
        h, w = (int(s) for s in heatmap_spatial_shape)
    except (TypeError, ValueError):
        raise ValueError(
            "prepare_masks: `heatmap_spatial_shape` must be a pair of ints (H, W), got "
            f"{heatmap_spatial_shape!r}."
        ) from None
    return _prepare_masks(
        masks, (h, w), batch_size, target=f"heatmap spatial shape {(h, w)}", arg="masks"
    )


def _prepare_masks(masks, spatial, batch_size, *, target, arg):
    """Shared implementation; ``target`` describes the heatmaps in error messages."""
    h, w = spatial
    m = ops.convert_to_tensor(masks)
    expected = "(batch, H, W) or (batch, H, W, 1)"
    if ops.ndim(m) is None:
        raise ValueError(
            f"`{arg}` has an unknown rank (a traced function whose input signature was "
            f"relaxed); reshape it to {expected} before the loss, for {target}."
        )
    shape = tuple(m.shape)

    def shape_error(reason):
        return ValueError(
            f"`{arg}` of shape {shape} does not fit {target}: {reason}. Pass masks of shape "
            f"{expected} whose (H, W) equals the heatmaps' (H, W) = {(h, w)} or is an integer "
            "multiple of it."
        )

    if len(shape) == 4:
        if shape[-1] != 1:
            raise shape_error(f"a rank-4 mask must have 1 channel, got {shape[-1]}")
        m = ops.squeeze(m, axis=-1)
        shape = shape[:3]
    elif len(shape) != 3:
        raise shape_error(f"expected rank 3 or 4, got rank {len(shape)}")
    if batch_size is not None and shape[0] is not None and int(shape[0]) != int(batch_size):
        raise shape_error(f"batch size {shape[0]} != heatmaps' batch size {batch_size}")
    mh, mw = shape[1], shape[2]
    if mh is None or mw is None:
        raise shape_error("the mask's spatial size must be known statically")
    if mh < h or mw < w or mh % h or mw % w:
        raise shape_error(f"spatial size {(mh, mw)} is not an integer multiple of {(h, w)}")

    if "bool" in str(getattr(m.dtype, "name", m.dtype)):
        m = ops.cast(m, "float32")
    else:
        _check_binary(m, arg)
        m = ops.cast(m, "float32")

    if (mh, mw) != (h, w):
        fh, fw = mh // h, mw // w
        pooled = ops.mean(ops.reshape(m, (-1, h, fh, w, fw)), axis=(2, 4))
        m = ops.cast(ops.not_equal(pooled, 0.0), "float32")
    return m


def _check_binary(m, arg):
    """Raise if a concrete mask holds values other than 0 and 1; skip for symbolic tensors."""
    bad = ops.logical_and(ops.not_equal(m, 0), ops.not_equal(m, 1))
    n_bad = ops.sum(ops.cast(bad, "int32"))
    try:
        n_bad = int(ops.convert_to_numpy(n_bad))
    except Exception:  # symbolic (traced) tensor: values are not visible from Python
        return
    if n_bad == 0:
        return
    values = np.asarray(ops.convert_to_numpy(m))
    example = values[np.asarray(ops.convert_to_numpy(bad))].flat[0].item()
    raise ValueError(
        f"`{arg}` must be binary, with 1 = foreground (region of interest) and "
        f"0 = background, but {n_bad} of {values.size} values are neither 0 nor 1 "
        f"(for example {example!r}). Threshold the masks first, e.g. `masks > 0.5`."
    )
