"""Convolutions: Conv1D/2D/3D, their transposes, depthwise and separable convolutions.

All are ``y = activation(conv(x, kernel) + bias)`` with category "conv"; the linear part is
computed with the layer's own settings (strides, padding, dilation, data format), so the
reverse pass matches the forward pass exactly.

Example:
    >>> layer = keras.layers.Conv2D(8, 3, padding="same")
    >>> ConvolutionReverse().linear(layer, x, layer.kernel)
"""

from __future__ import annotations

import keras
from keras import ops

from keras_isnet.layers.base import KernelLayer
from keras_isnet.layers.registry import register_reverse_rule


class _ConvBase(KernelLayer):
    category = "conv"
    foldable = True

    def weights(self, layer):
        return layer.kernel, layer.bias

    def add_bias(self, layer, z, bias):
        if bias is None:
            return z
        if layer.data_format == "channels_first":
            shape = (1, -1) + (1,) * (len(z.shape) - 2)
            return ops.add(z, ops.reshape(bias, shape))
        return ops.add(z, bias)


class ConvolutionReverse(_ConvBase):
    """Conv1D, Conv2D, Conv3D (any padding, stride, dilation, groups, causal)."""

    def linear(self, layer, x, kernel):
        if layer.padding == "causal":  # Conv1D pads on the left itself, then runs "valid"
            x = ops.pad(x, layer._compute_causal_padding())
            return ops.conv(
                x,
                kernel,
                strides=list(layer.strides),
                padding="valid",
                dilation_rate=layer.dilation_rate,
                data_format=layer.data_format,
            )
        return layer.convolution_op(x, kernel)

    def fold_problem(self, layer, side: str) -> str | None:
        if side == "before" and layer.groups != 1:
            return "is a grouped convolution"
        return super().fold_problem(layer, side)

    def input_channel_axes(self, layer):
        if getattr(layer, "groups", 1) != 1 or layer.padding == "causal":
            return None
        return -2, (1 if layer.data_format == "channels_first" else -1)


class ConvolutionTransposeReverse(_ConvBase):
    """Conv1DTranspose, Conv2DTranspose, Conv3DTranspose."""

    def linear(self, layer, x, kernel):
        return ops.conv_transpose(
            x,
            kernel,
            strides=list(layer.strides),
            padding=layer.padding,
            output_padding=layer.output_padding,
            dilation_rate=layer.dilation_rate,
            data_format=layer.data_format,
        )

    def scale_inputs(self, layer, kernel, s):
        return ops.multiply(kernel, s)  # kernel (..., out, in)

    def scale_outputs(self, layer, kernel, s):
        return ops.multiply(kernel, ops.expand_dims(s, -1))


class DepthwiseConvolutionReverse(_ConvBase):
    """DepthwiseConv1D, DepthwiseConv2D."""

    def weights(self, layer):
        return layer.kernel, layer.bias

    def linear(self, layer, x, kernel):
        return ops.depthwise_conv(
            x,
            kernel,
            strides=layer.strides,
            padding=layer.padding,
            dilation_rate=layer.dilation_rate,
            data_format=layer.data_format,
        )

    def scale_outputs(self, layer, kernel, s):
        return ops.multiply(kernel, ops.reshape(s, tuple(kernel.shape[-2:])))  # c * mult + m


class SeparableConvolutionReverse(_ConvBase):
    """SeparableConv1D, SeparableConv2D.

    The kernel is the pair ``(depthwise_kernel, pointwise_kernel)``; rules that transform
    weights (alpha-beta's positive part, w-square, flat) transform both factors, as
    iNNvestigate does.
    """

    def weights(self, layer):
        return (layer.depthwise_kernel, layer.pointwise_kernel), layer.bias

    def linear(self, layer, x, kernel):
        depthwise, pointwise = kernel
        return ops.separable_conv(
            x,
            depthwise,
            pointwise,
            strides=layer.strides,
            padding=layer.padding,
            dilation_rate=layer.dilation_rate,
            data_format=layer.data_format,
        )

    def scale_inputs(self, layer, kernel, s):
        depthwise, pointwise = kernel
        return (ops.multiply(depthwise, ops.expand_dims(s, -1)), pointwise)

    def scale_outputs(self, layer, kernel, s):
        depthwise, pointwise = kernel
        return (depthwise, ops.multiply(pointwise, s))


for _cls in (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D):
    register_reverse_rule(_cls, ConvolutionReverse())
for _cls in (
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
):
    register_reverse_rule(_cls, ConvolutionTransposeReverse())
for _cls in (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D):
    register_reverse_rule(_cls, DepthwiseConvolutionReverse())
for _cls in (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D):
    register_reverse_rule(_cls, SeparableConvolutionReverse())
