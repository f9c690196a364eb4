"""Tensors to NumPy on every Keras backend."""

from __future__ import annotations

import numpy as np
from keras import ops


def to_numpy(x, dtype=None) -> np.ndarray:
    """``x`` (a tensor of any backend, an array or a number) as a NumPy array.

    The tensor is detached first (``stop_gradient``): PyTorch refuses ``numpy()`` on a tensor
    that requires grad, as the analyzers' results on that backend do.

    Args:
        x: the value.
        dtype: optional NumPy dtype of the result.
    """
    if isinstance(x, np.ndarray):
        return x if dtype is None else x.astype(dtype, copy=False)
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        x = ops.convert_to_numpy(ops.stop_gradient(x))
    return np.asarray(x, dtype=dtype)
