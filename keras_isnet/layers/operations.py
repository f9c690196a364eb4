"""``keras.ops`` between layers: the Operation nodes of a functional graph.

A functional model that writes ``x + y``, ``keras.ops.mean(x, axis=1)`` or ``x[:, 0]`` between
layers holds Keras *Operation* nodes (``keras.src.ops.numpy.Add``, ...), not layers. They are
described by the same registry as layers (:func:`keras_isnet.register_reverse_rule` takes an
operation class), with the semantics of the equivalent layer:

* sums (``add``, ``subtract``, ``mean``, ``sum``, ``average``): weightless linear maps, the
  z-rule ``R_k = x_k * J_k^T (R / y)`` (as ``keras.layers.Add`` and average pooling; a constant
  term, ``x + 1.0``, absorbs its share as a bias does);
* moves and copies (``reshape``, ``transpose``, ``concatenate``, ``stack``, slicing
  ``x[:, 0]``, ``squeeze``, ``expand_dims``, ``where`` with a constant mask, ``max``, ...):
  relevance follows the gradient, so it moves with the values;
* element-wise functions (``relu``, ``gelu``, ``silu``, ``tanh``, ``negative``, ``cast``,
  ...): relevance passes unchanged (the identity rule of AttnLRP for GELU);
* products (``multiply``, ``matmul``, ``einsum``, ``dot``): the uniform rule (see
  :mod:`keras_isnet.layers.products`); a constant factor passes relevance through;
* ``divide`` / ``true_divide``: the numerator takes all; ``softmax``: pass, or AttnLRP's rule.

An operation without a description raises :class:`~keras_isnet.UnsupportedLayerError` naming
its class and its ``keras.ops`` function, with the line that registers a rule for it.

Example:
    >>> x = keras.Input((8,))
    >>> a, b = keras.layers.Dense(4)(x), keras.layers.Dense(4)(x)
    >>> model = keras.Model(x, keras.ops.mean(a + b, axis=-1, keepdims=True))
    >>> ki.create_analyzer("lrp.epsilon", model).analyze(data)   # add and mean have rules
"""

from __future__ import annotations

from keras.src.ops import core as _core
from keras.src.ops import nn as _nn
from keras.src.ops import numpy as _numpy

from keras_isnet.layers.base import ElementwiseLayer, RoutingLayer, WeightlessLinearLayer
from keras_isnet.layers.products import DivideReverse, ProductReverse, SoftmaxReverse
from keras_isnet.layers.registry import register_reverse_rule

#: sums and means: the z-rule.
SUMS = ("Add", "Mean", "Sum", "Average")
#: operations that move, copy or select values: relevance follows the gradient.
MOVES = (
    "Reshape",
    "Transpose",
    "Concatenate",
    "Stack",
    "GetItem",
    "Squeeze",
    "ExpandDims",
    "Where",
    "Swapaxes",
    "Moveaxis",
    "Tile",
    "Repeat",
    "BroadcastTo",
    "Ravel",
    "Flip",
    "Roll",
    "Split",
    "Max",
    "Min",
    "Amax",
    "Amin",
    "Take",
    "TakeAlongAxis",
)
MOVES_CORE = ("Slice", "Unstack")
#: element-wise functions: relevance passes.
ELEMENTWISE_NN = (
    "Relu",
    "Relu6",
    "Gelu",
    "Silu",
    "Elu",
    "Selu",
    "LeakyRelu",
    "Softplus",
    "HardSilu",
    "Sigmoid",
    "HardSigmoid",
    "Celu",
    "Glu",
    "SparsePlus",
    "Squareplus",
)
ELEMENTWISE_NUMPY = ("Negative", "Tanh", "Abs", "Absolute", "Clip", "Maximum", "Minimum")
ELEMENTWISE_CORE = ("Cast", "StopGradient")
PRODUCTS = ("Matmul", "Einsum", "Dot", "Tensordot")
_NONNEGATIVE = ("Relu", "Relu6", "Softplus", "Sigmoid", "HardSigmoid", "Abs", "Absolute")


def _classes(module, names):
    return [getattr(module, n) for n in names if hasattr(module, n)]


for _cls in _classes(_numpy, SUMS):
    register_reverse_rule(_cls, WeightlessLinearLayer())
register_reverse_rule(_numpy.Subtract, WeightlessLinearLayer(preserves_sign=False))
for _cls in _classes(_numpy, MOVES) + _classes(_core, MOVES_CORE):
    register_reverse_rule(_cls, RoutingLayer())
for _module, _names in ((_nn, ELEMENTWISE_NN), (_numpy, ELEMENTWISE_NUMPY)):
    for _cls in _classes(_module, _names):
        register_reverse_rule(_cls, ElementwiseLayer(nonnegative=_cls.__name__ in _NONNEGATIVE))
for _cls in _classes(_core, ELEMENTWISE_CORE):
    register_reverse_rule(_cls, ElementwiseLayer(nonnegative="inherit"))
register_reverse_rule(_nn.Relu, ElementwiseLayer(relu=True, nonnegative=True))
register_reverse_rule(_numpy.Multiply, ProductReverse(elementwise=True))
for _cls in _classes(_numpy, PRODUCTS):
    register_reverse_rule(_cls, ProductReverse())
for _cls in _classes(_numpy, ("Divide", "TrueDivide")):
    register_reverse_rule(_cls, DivideReverse())
register_reverse_rule(_nn.Softmax, SoftmaxReverse())
