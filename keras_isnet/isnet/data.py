"""Feeding ``(images, labels, masks)`` batches to an ISNet."""

from __future__ import annotations

import numpy as np


def isnet_dataset(images, labels, masks, *, batch_size: int = 32, shuffle: bool = True, seed=0):
    """A ``tf.data.Dataset`` of ``(images, labels, masks)`` batches for ``ISNet.fit``.

    Args:
        images: ``(n, H, W, C)`` float array.
        labels: ``(n,)`` integer labels or ``(n, K)`` one-hot.
        masks: ``(n, H, W)`` or ``(n, H, W, 1)``, 1 = foreground, 0 = background.
        batch_size: default 32.
        shuffle: reshuffle each epoch (default True), with ``seed``.

    Returns:
        A batched, prefetched ``tf.data.Dataset``.

    Raises:
        ValueError: if the three arrays do not have the same number of samples, or the
            masks' spatial shape differs from the images'.
    """
    import tensorflow as tf

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
    ds = tf.data.Dataset.from_tensor_slices(
        (images.astype("float32"), labels, masks.astype("float32"))
    )
    if shuffle:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
