"""EinsumDense and MultiHeadAttention.

``EinsumDense`` is a kernel layer (category "dense"): ``y = einsum(equation, x, kernel) + b``,
so every LRP rule applies to it.

``MultiHeadAttention`` is one Keras layer that computes, per call,
``q, k, v = Q(query), K(key), V(value)`` (EinsumDense projections),
``A = softmax(einsum(k, q / sqrt(d)))``, ``c = einsum(A, v)`` and ``y = O(c)``. Its
description runs that computation on the call's recorded inputs and propagates relevance
through it with the composite's rules (the same ones a hand-built attention block from
``Dense`` + ``keras.ops.matmul`` + ``keras.ops.softmax`` gets, see
:mod:`keras_isnet.layers.products`): the composite's kernel rule on the four projections,
the product rule on ``einsum(A, v)`` and ``einsum(k, q)`` (uniform under AttnLRP; CP-LRP holds
``A`` constant, so no relevance reaches ``q`` and ``k``), and the softmax rule on ``A``.
Masks (``attention_mask``, ``use_causal_mask``, Keras masks) and
``return_attention_scores=True`` are refused; dropout is the identity at inference.

Example:
    >>> x = keras.Input((5, 8))
    >>> y = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)(x, x)
    >>> ki.create_analyzer("lrp.cp_lrp", keras.Model(x, ...)).analyze(tokens)
"""

from __future__ import annotations

import keras
from keras import ops

from keras_isnet.backend import vjp
from keras_isnet.layers.base import KernelLayer, ReverseLayer
from keras_isnet.layers.registry import register_reverse_rule
from keras_isnet.rules.base import KernelCall, safe_divide


class EinsumDenseReverse(KernelLayer):
    """The linear part of ``keras.layers.EinsumDense``: ``einsum(equation, x, kernel)``."""

    category = "dense"

    def weights(self, layer):
        if getattr(layer, "quantization_mode", None):
            raise NotImplementedError(
                f"EinsumDense layer {layer.name!r} is quantized ({layer.quantization_mode}); "
                "explain the float model before quantizing it."
            )
        return layer.kernel, layer.bias

    def linear(self, layer, x, kernel):
        return ops.einsum(layer.equation, x, kernel)

    def channel_axis(self, layer, rank: int) -> int:
        return rank - 1


_EINSUM_DENSE = EinsumDenseReverse()


def kernel_call(layer, x) -> KernelCall:
    """The :class:`KernelCall` of an EinsumDense ``layer`` applied to ``x`` (for rules run on
    the sublayers of a layer)."""
    kernel, bias = _EINSUM_DENSE.weights(layer)
    kernel = ops.cast(kernel, x.dtype)
    bias = None if bias is None else ops.cast(bias, x.dtype)
    z_nobias, pull = vjp(lambda v: _EINSUM_DENSE.linear(layer, v, kernel), [x])
    return KernelCall(_EINSUM_DENSE, layer, x, kernel, bias, z_nobias, pull)


def _product(equation, a, b, R, n_a, n_b, divide):
    """Relevance of the factors of ``einsum(equation, a, b)``: the z-rule with ``n`` signal
    factors (``n_a`` / ``n_b``: 1 for a signal, 0 for a constant), the uniform split."""
    y, pull = vjp(lambda u, v: ops.einsum(equation, u, v), [a, b])
    n = n_a + n_b
    grads = pull(divide(R, ops.multiply(y, float(n))))
    R_a = ops.multiply(a, grads[0]) if n_a else None
    R_b = ops.multiply(b, grads[1]) if n_b else None
    return R_a, R_b


class MultiHeadAttentionReverse(ReverseLayer):
    """``keras.layers.MultiHeadAttention`` under the composite's rules (see the module)."""

    decomposes = True

    def _argument_keys(self, step):
        """The tensor keys of ``(query, value, key)`` of one call."""
        args, kwargs = step.node.arguments.args, step.node.arguments.kwargs
        names = ("query", "value", "key")
        tensors = {n: kwargs.get(n) for n in names}
        for n, t in zip(names, args, strict=False):
            tensors[n] = t
        if tensors["key"] is None:
            tensors["key"] = tensors["value"]
        by_id = dict(zip(step._symbolic_ids, step.inputs, strict=True))
        return tuple(by_id[id(tensors[n])] for n in names)

    def _check(self, step, context):
        args, kwargs = step.node.arguments.args, step.node.arguments.kwargs
        for name, position in (("attention_mask", 6), ("return_attention_scores", 7)):
            value = kwargs.get(name, args[position] if len(args) > position else None)
            if value is not None and value is not False:
                raise context.unsupported(step, f"{name} is not supported")
        if kwargs.get("use_causal_mask", False):
            raise context.unsupported(step, "use_causal_mask=True is not supported")
        for t in step.node.input_tensors:
            if getattr(t, "_keras_mask", None) is not None:
                raise context.unsupported(step, "Keras masks are not supported")
        if len(step.outputs) != 1:
            raise context.unsupported(step, "return_attention_scores is not supported")

    def lrp_handler(self, step, context):
        self._check(step, context)
        layer = step.layer
        query_key, value_key, key_key = self._argument_keys(step)
        constant_softmax = getattr(context, "products", "uniform") == "constant_softmax"
        taylor_softmax = getattr(context, "softmax", "pass") == "taylor"
        divide = getattr(context, "weightless_divide", safe_divide)

        def rule(sub):
            return context.rule_for_layer(sub, "dense", f"{step.path}/{sub.name}")

        def handler(record, Rs):
            values = dict(zip(record.input_keys, record.inputs, strict=True))
            xq, xv, xk = values[query_key], values[value_key], values[key_key]
            calls = {
                name: kernel_call(getattr(layer, f"_{name}_dense"), x)
                for name, x in (("query", xq), ("key", xk), ("value", xv))
            }
            q, k, v = (calls[n].z for n in ("query", "key", "value"))
            q_scaled = ops.multiply(q, ops.cast(layer._inverse_sqrt_key_dim, q.dtype))
            scores_in = ops.einsum(layer._dot_product_equation, k, q_scaled)
            scores, pull_softmax = vjp(lambda s: layer._softmax(s), [scores_in])
            context_out = ops.einsum(layer._combine_equation, scores, v)
            out_call = kernel_call(layer._output_dense, context_out)
            R_context = rule(layer._output_dense)(out_call, Rs[0])
            R_scores, R_v = _product(
                layer._combine_equation,
                scores,
                v,
                R_context,
                0 if constant_softmax else 1,
                1,
                divide,
            )
            relevance = dict.fromkeys(record.input_keys)

            def add(key, r):
                relevance[key] = r if relevance[key] is None else ops.add(relevance[key], r)

            add(value_key, rule(layer._value_dense)(calls["value"], R_v))
            if R_scores is not None:
                if taylor_softmax:
                    R_logits = ops.multiply(
                        scores_in, pull_softmax(safe_divide(R_scores, scores))[0]
                    )
                else:
                    R_logits = R_scores
                R_k, R_q = _product(
                    layer._dot_product_equation, k, q_scaled, R_logits, 1, 1, divide
                )
                add(key_key, rule(layer._key_dense)(calls["key"], R_k))
                add(query_key, rule(layer._query_dense)(calls["query"], R_q))
            return [relevance[key] for key in record.input_keys]

        return handler

    def conservation_info(self, step, context):
        if getattr(context, "products", "uniform") == "constant_softmax":
            return "attention (CP-LRP)", ["bias", "epsilon"]
        causes = ["bias", "epsilon"]
        if getattr(context, "softmax", "pass") == "taylor":
            causes.append("softmax bias term")
        return "attention (uniform products)", causes


register_reverse_rule(keras.layers.EinsumDense, EinsumDenseReverse())
register_reverse_rule(keras.layers.MultiHeadAttention, MultiHeadAttentionReverse())
