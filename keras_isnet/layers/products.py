"""Products of signals and nonlinear normalisers: the rules attention needs.

Three descriptions, shared by the ``keras.ops`` nodes of a functional graph (``x * y``,
``ops.matmul``, ``ops.einsum``, ``ops.softmax``), the ``Softmax`` layer and
``MultiHeadAttention``:

* :class:`ProductReverse`, a product of ``n`` signal factors (element-wise multiply, matmul,
  einsum): the uniform rule of AttnLRP (Achtibat et al., 2024, Proposition 3.3),
  ``R_k = x_k * J_k^T (R / (n y))``. A bilinear map is homogeneous of degree one in each factor,
  so ``sum_k R_k = R``: it conserves relevance and splits it equally among the factors. A factor
  that is not a tensor of the graph (a constant) takes no share, so ``x * 2.0``,
  ``x / 3.0`` and ``x @ W`` pass relevance through unchanged. Under the CP-LRP composite
  (``products="constant_softmax"``, Ali et al., 2022) a factor computed by a softmax
  (attention weights, possibly reshaped or transposed) is a constant too: all relevance goes to
  the other factors. An element-wise multiply whose factor is broadcast (a
  squeeze-and-excitation gate) or comes from a sigmoid is a gate under every composite (the
  signal takes all, as for ``keras.layers.Multiply``).
* :class:`SoftmaxReverse`: relevance passes (the default, an element-wise map), or AttnLRP's
  softmax rule ``R_x = x * (R - s sum(R))`` (``softmax="taylor"``: the linearisation of the
  softmax at ``x`` without its bias term, ``x * J^T (R / s)``; not conservative, the bias term
  absorbs ``sum(s x) sum(R)``).
* :class:`DivideReverse`: a quotient ``a / b``: the numerator takes all relevance, the
  denominator is held constant (a normaliser, as the LN rule holds the standard deviation).

Example:
    >>> q, k, v = dense_q(x), dense_k(x), dense_v(x)
    >>> a = keras.ops.softmax(keras.ops.matmul(q, keras.ops.transpose(k, (0, 2, 1))))
    >>> y = keras.ops.matmul(a, v)   # uniform split under lrp.attn_lrp, all to v under lrp.cp_lrp
"""

from __future__ import annotations

import keras
from keras import ops

from keras_isnet.layers.base import ElementwiseLayer, ReverseLayer, activation_name
from keras_isnet.rules.base import safe_divide

#: composite values of ``products``.
PRODUCT_MODES = ("uniform", "constant_softmax")
#: composite values of ``softmax``.
SOFTMAX_MODES = ("pass", "taylor")

_GATES = ("sigmoid", "hard_sigmoid")


def _operation(tensor):
    history = getattr(tensor, "_keras_history", None)
    return None if history is None else (history.operation, history.node_index)


def _node_inputs(operation, node_index):
    nodes = getattr(operation, "_inbound_nodes", [])
    return list(nodes[node_index].input_tensors) if node_index < len(nodes) else []


def _is_routing(operation) -> bool:
    from keras_isnet.layers.base import ElementwiseLayer, RoutingLayer
    from keras_isnet.layers.registry import lookup

    spec = lookup(operation)
    name = type(operation).__name__
    if name in ("Softmax", "Sigmoid", "HardSigmoid") or activation_name(operation):
        return False
    return isinstance(spec, (RoutingLayer, ElementwiseLayer))


def computed_by(tensor, names: tuple, depth: int = 6) -> bool:
    """Whether a symbolic tensor is computed by an operation of class ``names`` (``"Softmax"``)
    or a layer with such an ``activation=`` (lower-case names), possibly followed by
    operations that only move values (reshape, transpose, dropout, slicing).

    Args:
        tensor: a ``keras.KerasTensor`` of a functional graph.
        names: class names and activation names, e.g. ``("Softmax", "softmax")``.
        depth: how many moving operations to look through.
    """
    found = _operation(tensor)
    if found is None or depth == 0:
        return False
    operation, node_index = found
    if type(operation).__name__ in names or activation_name(operation) in names:
        return True
    if not _is_routing(operation):
        return False
    inputs = _node_inputs(operation, node_index)
    return len(inputs) == 1 and computed_by(inputs[0], names, depth - 1)


def _symbolic_by_key(step) -> dict:
    """Tensor key -> (a symbolic tensor of the call, how many argument positions hold it)."""
    found: dict = {}
    for key, tensor in zip(step.inputs, step.node.input_tensors, strict=True):
        t, n = found.get(key, (tensor, 0))
        found[key] = (t, n + 1)
    return found


class ProductReverse(ReverseLayer):
    """A product of signals: the uniform rule (see the module), with gates and constants.

    Args:
        elementwise: True for an element-wise multiply (broadcast and sigmoid factors are
            gates); False for matmul / einsum (contractions).
    """

    decomposes = True

    def __init__(self, elementwise: bool = False):
        self.elementwise = elementwise

    def output_nonnegative(self, layer, inputs_nonnegative: bool) -> bool:
        return inputs_nonnegative

    def factors(self, step, context) -> dict:
        """Tensor key -> how many factor positions it holds among the signal factors (the
        keys absent from it are held constant)."""
        found = _symbolic_by_key(step)
        if self.elementwise and len(found) > 1:
            out_shape = tuple(step.node.outputs[0].shape[1:])
            full = {k for k, (t, _) in found.items() if tuple(t.shape[1:]) == out_shape}
            gates = {k for k, (t, _) in found.items() if computed_by(t, _GATES + ("Sigmoid",))}
            signal = [k for k in full if k not in gates]
            if len(signal) == 1 and len(found) > 1:  # a gate: the signal takes all
                return {signal[0]: found[signal[0]][1]}
        if getattr(context, "products", "uniform") == "constant_softmax":
            held = {k for k, (t, _) in found.items() if computed_by(t, ("Softmax", "softmax"))}
            if held and len(held) < len(found):
                found = {k: v for k, v in found.items() if k not in held}
        return {k: n for k, (_, n) in found.items()}

    def lrp_handler(self, step, context):
        if len(step.outputs) != 1:
            raise context.unsupported(step, "a product needs exactly one output")
        factors = self.factors(step, context)
        n = sum(factors.values())
        divide = getattr(context, "weightless_divide", safe_divide)

        def uniform(record, Rs):
            y = record.outputs[0]
            grads = record.pullback([divide(Rs[0], ops.multiply(y, float(n)))])
            return [
                ops.multiply(x, g) if (k in factors and g is not None) else None
                for k, x, g in zip(record.input_keys, record.inputs, grads, strict=True)
            ]

        return uniform

    def conservation_info(self, step, context):
        factors = self.factors(step, context)
        n = sum(factors.values())
        if n == 1:
            return "product: one signal factor", ["zero denominators"]
        return f"product: uniform over {n} factors", ["zero denominators"]


class SoftmaxReverse(ElementwiseLayer):
    """Softmax (the layer and ``ops.softmax``): pass, or AttnLRP's rule under
    ``softmax="taylor"`` (see the module)."""

    def __init__(self):
        super().__init__(nonnegative=True)

    def lrp_handler(self, step, context):
        if len(set(step.inputs)) != 1:
            raise context.unsupported(step, "a softmax with a mask input has no rule here")
        if getattr(context, "softmax", "pass") != "taylor":
            return super().lrp_handler(step, context)

        def taylor(record, Rs):
            grads = record.pullback([safe_divide(Rs[0], record.outputs[0])])
            return [ops.multiply(record.inputs[0], grads[0])]

        return taylor

    def conservation_info(self, step, context):
        if getattr(context, "softmax", "pass") == "taylor":
            return "softmax: x J^T (R / s)", ["softmax bias term"]
        return "pass", []


class DivideReverse(ReverseLayer):
    """``a / b``: all relevance to the numerator ``a``; ``b`` is held constant (a constant
    divisor passes relevance through unchanged)."""

    def output_nonnegative(self, layer, inputs_nonnegative: bool) -> bool:
        return inputs_nonnegative

    def _numerator_key(self, step):
        args = step.node.arguments.args
        numerator = args[0] if args else None
        if isinstance(numerator, keras.KerasTensor):
            for sid, key in zip(step._symbolic_ids, step.inputs, strict=True):
                if sid == id(numerator):
                    return key
        return None

    def lrp_handler(self, step, context):
        key = self._numerator_key(step)
        if key is None:
            raise context.unsupported(
                step,
                "a constant divided by a signal has no LRP rule (only a / b with the "
                "numerator a a tensor of the graph)",
            )

        def numerator_takes_all(record, Rs):
            return [Rs[0] if k == key else None for k in record.input_keys]

        return numerator_takes_all

    def conservation_info(self, step, context):
        return "quotient: numerator takes all", []


def softmax_taylor(x, s, R, axis=-1):
    """AttnLRP's softmax rule in closed form: ``x * (R - s * sum(R, axis))``."""
    return ops.multiply(x, ops.subtract(R, ops.multiply(s, ops.sum(R, axis=axis, keepdims=True))))


__all__ = [
    "DivideReverse",
    "PRODUCT_MODES",
    "SOFTMAX_MODES",
    "ProductReverse",
    "SoftmaxReverse",
    "computed_by",
    "softmax_taylor",
]
