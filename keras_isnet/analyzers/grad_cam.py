"""Grad-CAM (Selvaraju et al., 2017) and Grad-CAM++ (Chattopadhay et al., 2018).

Both weight the feature maps ``A^k`` of a 2-D convolution layer (by default the last one)
by the gradient ``g^k = d y / d A^k`` of the explained output ``y`` (the selected neuron,
after stripping a final softmax, as every analyzer does):

* Grad-CAM: ``w_k = mean_ij g^k_ij``;
* Grad-CAM++: ``w_k = sum_ij a^k_ij relu(g^k_ij)`` with
  ``a^k_ij = (g^k_ij)^2 / (2 (g^k_ij)^2 + sum_ab A^k_ab (g^k_ij)^3)`` (0 where the
  denominator is 0), the closed form of the paper for an exponential of the score;

and return ``relu(sum_k w_k A^k)``, up-sampled bilinearly (half-pixel centres) to the input's
height and width and repeated over the input's channels, so that the analysis has the
input's shape like every other analyzer's.

Example:
    >>> ki.create_analyzer("grad_cam", model, layer_name="conv2").analyze(x)
"""

from __future__ import annotations

import keras
from keras import ops

from keras_isnet.analyzers.gradient import Gradient
from keras_isnet.selection import selection_weights

_CONV_CLASSES = (
    keras.layers.Conv2D,
    keras.layers.SeparableConv2D,
    keras.layers.DepthwiseConv2D,
    keras.layers.Conv2DTranspose,
)


def check_single_image_input(analyzer) -> None:
    """Raise a ValueError unless the analyzer's model has one image input
    ``(batch, H, W, C)`` (Grad-CAM and iGOS up-sample maps to it)."""
    if len(analyzer.model.inputs) != 1 or len(analyzer.model.inputs[0].shape) != 4:
        shapes = [tuple(t.shape) for t in analyzer.model.inputs]
        raise ValueError(
            f"{type(analyzer).__name__} explains models with one image input (batch, H, W, C); "
            f"model {analyzer.model.name!r} has inputs of shapes {shapes}."
        )


def upsample(maps, height: int, width: int):
    """Bilinear up-sampling of ``(batch, h, w, c)`` maps to ``(batch, height, width, c)``."""
    if tuple(maps.shape[1:3]) == (height, width):
        return maps
    return ops.image.resize(maps, (height, width), interpolation="bilinear")


class GradCAM(Gradient):
    """Grad-CAM on a 2-D convolution layer (``grad_cam``).

    Args:
        layer_name: the name (or path ``"encoder/conv1"`` in nested models) of a Conv2D,
            SeparableConv2D, DepthwiseConv2D or Conv2DTranspose layer whose output reaches
            the explained output. Default: the last such layer. The layer's output after
            its activation is used.
        **kwargs: ``neuron_selection_mode``, ``output_index``, ``strip_softmax``.

    Raises:
        ValueError: an unknown layer name (the message lists the convolution layers), a
            model without a convolution layer, or a model without a single image input.
    """

    name = "grad_cam"

    def __init__(self, model, *, layer_name: str | None = None, **kwargs):
        super().__init__(model, **kwargs)
        check_single_image_input(self)
        convs = [
            step
            for step in self.engine.steps
            if isinstance(step.layer, _CONV_CLASSES)
            and step.index in self.engine.active
            and len(step.outputs) == 1
            and len(step.node.outputs[0].shape) == 4
        ]
        names = [step.path for step in convs]
        if not convs:
            raise ValueError(
                f"{type(self).__name__} needs a 2-D convolution layer on the path to the "
                f"explained output, and model {model.name!r} has none."
            )
        if layer_name is None:
            step = convs[-1]
        else:
            matches = [s for s in convs if layer_name in (s.path, s.layer.name)]
            if not matches:
                raise ValueError(
                    f"No convolution layer named {layer_name!r} reaches the explained output of "
                    f"model {model.name!r}; its convolution layers are {names}."
                )
            step = matches[-1]
        self.layer_name = step.path
        self._feature_key = step.outputs[0]

    def _weights(self, features, grads):
        """Per-sample, per-channel weights ``(batch, 1, 1, channels)``."""
        return ops.mean(grads, axis=(1, 2), keepdims=True)

    def _explain(self, inputs, selection, *, training=False, keep=None):
        engine = self.engine
        values, records = engine.replay(inputs, training=training)
        head = values[engine.head_key]
        weights = selection_weights(head, self.neuron_selection_mode, selection)
        relevance = engine.backward(records, {engine.head_key: weights}, self._handlers)
        features = values[self._feature_key]
        grads = relevance.get(self._feature_key)
        if grads is None:
            grads = ops.zeros_like(features)
        cam = ops.relu(ops.sum(self._weights(features, grads) * features, axis=-1, keepdims=True))
        x = inputs[0]
        cam = upsample(cam, int(x.shape[1]), int(x.shape[2]))
        cam = ops.broadcast_to(cam, ops.shape(x))
        return [ops.cast(cam, x.dtype)]


class GradCAMPlusPlus(GradCAM):
    """Grad-CAM++ on a 2-D convolution layer (``grad_cam++``); same arguments as
    :class:`GradCAM`."""

    name = "grad_cam++"

    def _weights(self, features, grads):
        g2 = ops.square(grads)
        g3 = g2 * grads
        total = ops.sum(features, axis=(1, 2), keepdims=True)
        denominator = 2.0 * g2 + total * g3
        safe = ops.where(ops.equal(denominator, 0.0), ops.ones_like(denominator), denominator)
        alpha = ops.where(ops.equal(denominator, 0.0), ops.zeros_like(g2), g2 / safe)
        return ops.sum(alpha * ops.relu(grads), axis=(1, 2), keepdims=True)
