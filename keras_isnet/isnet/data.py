"""Feeding ``(images, labels, masks)`` batches to an ISNet."""

from __future__ import annotations

import keras
import numpy as np

from keras_isnet import backend


def isnet_dataset(images, labels, masks, *, batch_size: int = 32, shuffle: bool = True, seed=0):
    """A ``tf.data.Dataset`` of ``(images, labels, masks)`` batches for ``ISNet.fit``.

    Args:
        images: ``(n, H, W, C)`` float array.
        labels: ``(n,)`` integer labels or ``(n, K)`` one-hot.
        masks: ``(n, H, W)`` or ``(n, H, W, 1)``, 1 = foreground, 0 = background.
        batch_size: default 32.
        shuffle: reshuffle each epoch (default True), with ``seed``.

    Returns:
        A batched, prefetched ``tf.data.Dataset`` (TensorFlow), else :class:`ISNetBatches`.

    Raises:
        ValueError: if the three arrays do not have the same number of samples, or the
            masks' spatial shape differs from the images'.
    """
    images, labels, masks = (np.asarray(a) for a in (images, labels, masks))
    n = len(images)
    if not len(labels) == len(masks) == n:
        raise ValueError(
            f"images, labels and masks must have as many samples; got {n}, {len(labels)} and "
            f"{len(masks)}."
        )
    if masks.shape[1:3] != images.shape[1:3]:
        raise ValueError(
            f"masks of shape {masks.shape} do not match images of shape {images.shape}: "
            "expected (n, H, W) or (n, H, W, 1) with the images' H and W."
        )
    arrays = (images.astype("float32"), labels, masks.astype("float32"))
    native = backend.native_dataset(arrays, batch_size=batch_size, shuffle=shuffle, seed=seed)
    if native is not None:
        return native
    return ISNetBatches(*arrays, batch_size=batch_size, shuffle=shuffle, seed=seed)


class ISNetBatches(keras.utils.PyDataset):
    """``(images, labels, masks)`` batches from NumPy arrays, reshuffled each epoch (the
    ``isnet_dataset`` of the JAX and PyTorch backends; works on TensorFlow too).

    Args:
        images, labels, masks: arrays with the same number of samples.
        batch_size: samples per batch (the last batch may be smaller).
        shuffle: reshuffle the order at the start of every epoch, from ``seed``.
        seed: the shuffling seed.

    Example:
        >>> isnet.fit(ISNetBatches(images, labels, masks, batch_size=64), epochs=5)
    """

    def __init__(self, images, labels, masks, *, batch_size=32, shuffle=True, seed=0):
        super().__init__()
        self.arrays = (np.asarray(images), np.asarray(labels), np.asarray(masks))
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self._rng = np.random.default_rng(seed)
        self._order = np.arange(len(self.arrays[0]))
        if shuffle:
            self._rng.shuffle(self._order)

    def __len__(self) -> int:
        return -(-len(self._order) // self.batch_size)

    def __getitem__(self, index: int):
        chosen = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        return tuple(a[chosen] for a in self.arrays)

    def on_epoch_end(self):
        if self.shuffle:
            self._rng.shuffle(self._order)
