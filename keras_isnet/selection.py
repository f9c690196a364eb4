"""Which output neurons an analyzer explains (iNNvestigate's ``neuron_selection``).

An analyzer explains ``sum(output * weights)`` for a selection-dependent ``weights`` tensor
shaped like the explained output ``(batch, *out_shape)``:

* mode ``"max_activation"``: per sample, a one-hot of the largest output value;
* mode ``"all"``: all ones;
* mode ``"index"``, with ``neuron_selection`` one of

  - an ``int``: a flat index into ``out_shape``, the same for every sample (the class index
    for a classifier);
  - a list or 1-D integer array of length ``batch``: one flat index per sample;
  - a ``tuple`` of ``len(out_shape)`` ints: one position, e.g. ``(row, col, class)`` for a
    segmentation output;
  - a float (or bool) array shaped ``out_shape`` or ``(batch, *out_shape)``: the weights
    themselves, to explain a region or a whole class map at once (see
    :mod:`keras_isnet.segmentation` for helpers).

Every malformed selection raises a ValueError that names the expected shape.

Example:
    >>> normalize_selection((3, 4, 1), out_shape=(8, 8, 2), batch=2)    # pixel (3, 4), class 1
    array([57, 57])
"""

from __future__ import annotations

import numbers

import numpy as np
from keras import ops

MODES = ("max_activation", "index", "all")


def check_mode(mode: str) -> str:
    """Return ``mode`` or raise a ValueError listing the valid modes."""
    if mode not in MODES:
        raise ValueError(f"Unknown neuron_selection_mode {mode!r}; valid modes are {list(MODES)}.")
    return mode


def normalize_selection(selection, out_shape: tuple, batch: int) -> np.ndarray:
    """Turn a user ``neuron_selection`` into per-sample flat indices or a weights array.

    Args:
        selection: see the module docstring.
        out_shape: the explained output's shape without the batch axis.
        batch: the number of samples.

    Returns:
        An int64 array of shape ``(batch,)`` (flat indices) or a float32 array of shape
        ``(batch, *out_shape)`` (weights).

    Raises:
        ValueError: naming the expected shape, for a missing selection, an index out of
            range, a tuple of the wrong length or a weights array of the wrong shape.
    """
    out_shape = tuple(int(n) for n in out_shape)
    size = int(np.prod(out_shape))
    if selection is None:
        raise ValueError(
            "neuron_selection_mode='index' needs neuron_selection: an int (flat index into "
            f"the output shape {out_shape}), one int per sample, a tuple of "
            f"{len(out_shape)} ints, or a weights array of shape {out_shape}."
        )
    if isinstance(selection, tuple):
        if len(selection) != len(out_shape):
            raise ValueError(
                f"neuron_selection tuple {selection} has {len(selection)} entries but the "
                f"explained output has shape {out_shape} (without the batch axis): "
                f"give {len(out_shape)} indices."
            )
        for i, (s, n) in enumerate(zip(selection, out_shape, strict=True)):
            if isinstance(s, bool) or not isinstance(s, numbers.Integral):
                raise ValueError(
                    f"neuron_selection tuple {selection}: entry {s!r} at position {i} is not "
                    f"an integer; the tuple indexes the output shape {out_shape}."
                )
            if not -n <= int(s) < n:
                raise ValueError(
                    f"neuron_selection tuple {selection}: index {s} at position {i} is out of "
                    f"range for the output shape {tuple(out_shape)}."
                )
        position = tuple(int(s) % n for s, n in zip(selection, out_shape, strict=True))
        flat = int(np.ravel_multi_index(position, out_shape))
        return np.full((batch,), flat, dtype=np.int64)
    arr = np.asarray(selection)
    if arr.dtype.kind in "fb":
        if arr.shape == out_shape:
            arr = np.broadcast_to(arr, (batch, *out_shape))
        if arr.shape != (batch, *out_shape):
            hint = " (for an index, pass an int)" if arr.ndim == 0 else ""
            raise ValueError(
                f"neuron_selection weights have shape {arr.shape}; expected {out_shape} "
                f"or {(batch, *out_shape)} (the explained output's shape, without or with "
                f"the batch axis){hint}."
            )
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if not np.isfinite(arr).all():
            raise ValueError("neuron_selection weights contain NaN or infinite values.")
        return arr
    if arr.dtype.kind not in "iu":
        raise ValueError(
            f"neuron_selection must hold integers or float weights, got dtype {arr.dtype}; "
            f"give an int, one int per sample, a tuple indexing {out_shape}, or float "
            f"weights of shape {out_shape}."
        )
    if arr.ndim == 0:
        arr = np.full((batch,), int(arr), dtype=np.int64)
    if arr.shape != (batch,):
        if arr.shape in (out_shape, (batch, *out_shape)):
            raise ValueError(
                f"neuron_selection is an integer array of the output's shape {arr.shape}; "
                "seed weights must be a float or bool array (cast it with .astype('float32'))."
            )
        raise ValueError(
            f"neuron_selection has shape {arr.shape}; give one int, one flat index per "
            f"sample (shape ({batch},)), a tuple of {len(out_shape)} ints for a position in "
            f"{out_shape}, or float weights of shape {out_shape} or {(batch, *out_shape)}."
        )
    bad = (arr < -size) | (arr >= size)
    if bad.any():
        raise ValueError(
            f"neuron_selection index {int(arr[bad][0])} is out of range: the explained output "
            f"has {size} values per sample (shape {tuple(out_shape)})."
        )
    return (arr % size).astype(np.int64)


def selection_weights(head, mode: str, selection=None):
    """The weights tensor ``(batch, *out_shape)`` for ``head`` under ``mode``.

    Args:
        head: the explained output tensor, ``(batch, *out_shape)``.
        mode: one of ``"max_activation"``, ``"index"``, ``"all"``.
        selection: for ``"index"``, the output of :func:`normalize_selection` (or an
            equivalent tensor): int flat indices ``(batch,)`` or float weights.
    """
    if mode == "all":
        return ops.ones_like(head)
    flat = ops.reshape(head, (ops.shape(head)[0], -1))
    if mode == "max_activation":
        index = ops.argmax(flat, axis=-1)
    else:
        selection = ops.convert_to_tensor(selection)
        if "float" in str(selection.dtype):
            return ops.cast(selection, head.dtype)
        index = selection
    depth = int(np.prod(head.shape[1:]))  # static, even when the batch size is unknown
    onehot = ops.one_hot(index, depth, dtype=head.dtype)
    return ops.reshape(onehot, ops.shape(head))
