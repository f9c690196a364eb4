"""``ki.tune_cuts``: estimate the heatmap loss's C1/C2 from a plainly trained classifier.

The method page's "cut tune": train the classifier without the heatmap loss for a few
epochs, collect per sample the mean over heatmaps of the total absolute relevance
``sum |H|``, and set ``C1 = max(mu / 5, mu - 3 sigma)``, ``C2 = min(25 C1, mu + 3 sigma)``.
"""

from __future__ import annotations

from keras import ops

from keras_isnet.arrays import to_numpy
from keras_isnet.isnet.model import ISNet, unpack_batch
from keras_isnet.losses import CutAccumulator


def tune_cuts(isnet: ISNet, data, *, epochs: int = 5, verbose: int = 0, ddof: int = 1):
    """Estimate ``(C1, C2)`` for ``isnet`` and set them in its loss.

    Trains ``isnet`` with ``P = 0`` (plain cross-entropy; the ISNet's optimizer must be
    compiled) for ``epochs`` epochs on ``data``, then runs once more over ``data`` in
    inference mode and feeds each sample's ``mean over maps of sum |H|`` to a Welford
    accumulator. The reference collects these values during the last training epoch; we
    collect them right after it, with the weights the last epoch ended with.

    Args:
        isnet: a compiled :class:`ISNet`; its variant decides which heatmaps are measured.
        data: ``(images, labels, masks)`` batches (a ``tf.data.Dataset`` or any iterable of
            batches; masks are not used).
        epochs: plain training epochs, default 5 (the reference's).
        verbose: Keras progress output during training.
        ddof: 1 (default) for the sample standard deviation, as the reference's Welford
            finaliser; 0 for the population one.

    Returns:
        ``(C1, C2)`` as floats, also stored in ``isnet.loss_kwargs``. The original ``P`` is
        restored afterwards.

    Example:
        >>> C1, C2 = ki.tune_cuts(isnet, ki.isnet_dataset(x, y, masks), epochs=5)
    """
    if epochs < 1:
        raise ValueError(f"tune_cuts needs epochs >= 1, got {epochs}.")
    if getattr(isnet, "optimizer", None) is None:
        raise ValueError("Compile the ISNet (isnet.compile(optimizer=...)) before tune_cuts.")
    saved_P, saved_value = isnet.P, float(isnet._P_value.numpy())
    isnet.P = 0.0
    isnet._P_value.assign(0.0)
    try:
        isnet.fit(data, epochs=epochs, verbose=verbose)
    finally:
        isnet.P = saved_P
        isnet._P_value.assign(saved_value)
    accumulator = CutAccumulator(ddof=ddof)
    for batch in data:
        images, labels, _ = unpack_batch(batch)
        _, heatmaps = isnet.heatmaps.logits_and_heatmaps(
            images, labels, variant=isnet.variant, training=False
        )
        totals = ops.mean(ops.sum(ops.abs(heatmaps), axis=(2, 3, 4)), axis=1)
        accumulator.update(to_numpy(totals))
    c1, c2 = accumulator.result()
    isnet.loss_kwargs["C1"], isnet.loss_kwargs["C2"] = float(c1), float(c2)
    # The cuts are constants of the compiled steps: the training epochs above traced them
    # with the old cuts, so the next fit/evaluate must trace again.
    isnet.train_function = isnet.test_function = None
    return float(c1), float(c2)
