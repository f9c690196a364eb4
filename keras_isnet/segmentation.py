"""Selections for segmentation models: a class over a region, a class over its predicted pixels.

An analyzer in ``neuron_selection_mode="index"`` explains ``sum(output * weights)`` when
``neuron_selection`` is a float array shaped like the explained output (see
:mod:`keras_isnet.selection`). These helpers build such weights for a segmentation output
``(batch, *spatial, classes)`` (channels last; ``channel_axis=1`` for channels first):

* one pixel: no helper needed, pass the tuple ``(row, col, class)``;
* class ``c`` over a region ``M``: :func:`class_region_selection`;
* class ``c`` over the pixels predicted as ``c``: :func:`predicted_class_selection`.

Example:
    >>> analyzer = ki.create_analyzer("lrp.epsilon", unet, neuron_selection_mode="index")
    >>> pixel = analyzer.analyze(x, neuron_selection=(12, 20, 1))
    >>> region = analyzer.analyze(x, neuron_selection=class_region_selection(analyzer, 1, mask))
    >>> predicted = predicted_class_selection(unet.predict(x), 1)
    >>> class_map = analyzer.analyze(x, neuron_selection=predicted)
"""

from __future__ import annotations

import numpy as np


def _output_shape(output) -> tuple:
    """The explained output's shape without the batch axis, from a shape, analyzer or model."""
    if isinstance(output, (tuple, list)) and all(isinstance(s, (int, np.integer)) for s in output):
        return tuple(int(s) for s in output)
    engine = getattr(output, "engine", None)
    if engine is not None:  # an analyzer
        shape = tuple(engine.head_shape())
    elif getattr(output, "outputs", None) is not None:  # a Keras model
        if len(output.outputs) != 1:
            raise ValueError(
                f"Model {output.name!r} has {len(output.outputs)} outputs; pass the analyzer "
                "(which knows the explained output) or the output shape instead."
            )
        shape = tuple(output.outputs[0].shape[1:])
    else:
        raise TypeError(
            "Pass the explained output's shape without the batch axis (e.g. (64, 64, 3)), an "
            f"analyzer or a single-output Keras model; got {type(output).__name__}."
        )
    if any(s is None for s in shape):
        raise ValueError(
            f"The explained output has the dynamic shape {shape}; pass the concrete output "
            "shape without the batch axis instead, e.g. model.predict(x).shape[1:]."
        )
    return shape


def class_region_selection(output, class_index: int, mask=None, *, channel_axis: int = -1):
    """Seed weights explaining class ``class_index`` summed over the region ``mask``.

    Args:
        output: the explained output's shape without the batch axis
            (``(H, W, classes)``), or the analyzer, or a single-output model.
        class_index: the class (channel) to explain.
        mask: the region: a bool or float array of the output's spatial shape ``(H, W)`` (one
            region for all samples) or ``(batch, H, W)`` (one per sample); float values weight
            the pixels. Default None: the whole map.
        channel_axis: the class axis of the output without the batch axis (default -1, the
            last; 0 for channels-first outputs).

    Returns:
        A float32 array shaped like the output, ``(H, W, classes)``, or
        ``(batch, H, W, classes)`` for per-sample masks: ``mask`` in channel
        ``class_index`` and zeros elsewhere. Pass it as ``neuron_selection``.

    Raises:
        ValueError: a class index out of range or a mask of the wrong shape (naming the
            expected shape).

    Example:
        >>> mask = np.zeros((32, 32), bool); mask[8:16, 8:16] = True
        >>> weights = class_region_selection((32, 32, 3), 2, mask)
        >>> analyzer.analyze(x, neuron_selection=weights)   # explains sum of class-2 logits in M
    """
    shape = _output_shape(output)
    axis = channel_axis % len(shape)
    n_classes = shape[axis]
    if not -n_classes <= int(class_index) < n_classes:
        raise ValueError(
            f"class_index {class_index} is out of range: the output shape {shape} has "
            f"{n_classes} classes on axis {axis}."
        )
    spatial = shape[:axis] + shape[axis + 1 :]
    if mask is None:
        mask = np.ones(spatial, dtype=np.float32)
    mask = np.asarray(mask)
    if mask.dtype.kind not in "bfiu":
        raise ValueError(f"mask must be a bool or numeric array, got dtype {mask.dtype}.")
    if mask.shape == spatial:
        batch_shape = ()
    elif mask.ndim == len(spatial) + 1 and mask.shape[1:] == spatial:
        batch_shape = mask.shape[:1]
    else:
        raise ValueError(
            f"mask has shape {mask.shape}; expected the output's spatial shape {spatial} or "
            f"(batch, *{spatial}) for the output shape {shape} (classes on axis {axis})."
        )
    weights = np.zeros(batch_shape + shape, dtype=np.float32)
    index = [slice(None)] * weights.ndim
    index[len(batch_shape) + axis] = int(class_index) % n_classes
    weights[tuple(index)] = mask.astype(np.float32)
    return weights


def predicted_class_selection(
    predictions, class_index: int, *, channel_axis: int = -1, threshold: float = 0.5
):
    """Seed weights explaining class ``class_index`` over the pixels predicted as that class.

    Args:
        predictions: the model's output for the batch, ``(batch, *spatial, classes)``
            (probabilities or logits: only their argmax is used).
        class_index: the class to explain.
        channel_axis: the class axis of ``predictions`` (default -1).
        threshold: for a single-channel output (binary segmentation), a pixel is predicted
            as class 0 (the foreground) where the output exceeds ``threshold`` (default 0.5,
            for sigmoid probabilities; use 0.0 for logits).

    Returns:
        A float32 array shaped like ``predictions``: one in channel ``class_index`` at the
        pixels whose predicted class is ``class_index``, zeros elsewhere. Pass it as
        ``neuron_selection``; a sample without such pixels gets all-zero weights (and a
        zero heatmap).

    Raises:
        ValueError: a class index out of range for the number of classes.

    Example:
        >>> weights = predicted_class_selection(model.predict(x), class_index=1)
        >>> heatmaps = analyzer.analyze(x, neuron_selection=weights)
    """
    predictions = np.asarray(predictions)
    if predictions.ndim < 2:
        raise ValueError(
            f"predictions have shape {predictions.shape}; expected (batch, *spatial, classes)."
        )
    axis = channel_axis % predictions.ndim
    if axis == 0:
        raise ValueError("channel_axis points at the batch axis of predictions.")
    n_classes = predictions.shape[axis]
    if n_classes == 1:
        if int(class_index) not in (0, -1):
            raise ValueError(
                f"class_index {class_index} is out of range: predictions of shape "
                f"{predictions.shape} have one channel (binary segmentation: class 0)."
            )
        chosen = predictions > threshold
    else:
        if not -n_classes <= int(class_index) < n_classes:
            raise ValueError(
                f"class_index {class_index} is out of range: predictions of shape "
                f"{predictions.shape} have {n_classes} classes on axis {axis}."
            )
        c = int(class_index) % n_classes
        winner = np.argmax(predictions, axis=axis)
        chosen = np.zeros(predictions.shape, dtype=bool)
        index = [slice(None)] * predictions.ndim
        index[axis] = c
        chosen[tuple(index)] = winner == c
    return chosen.astype(np.float32)


__all__ = ["class_region_selection", "predicted_class_selection"]
