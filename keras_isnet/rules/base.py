"""What an LRP rule sees of a kernel layer, and the shared arithmetic of the rules.

A rule is a callable ``rule(call, R) -> R_in``: ``call`` is the :class:`KernelCall` of one
kernel-layer node (its input, weights, pre-activation and the pullback of its linear part)
and ``R`` the relevance of the layer's pre-activation ``z`` (relevance arriving after an
activation is taken as the relevance of ``z``). It returns the relevance of the input ``x``,
with ``x``'s shape.
"""

from __future__ import annotations

from keras import ops, tree

from keras_isnet.backend import vjp

#: the denominator guard of iNNvestigate's SafeDivide: only exact zeros are changed.
SAFE_DIVIDE_EPSILON = 1e-7


def safe_divide(a, b):
    """``a / b`` with exact zeros of ``b`` replaced by 1e-7 (iNNvestigate's SafeDivide)."""
    return ops.divide(a, ops.add(b, SAFE_DIVIDE_EPSILON * ops.cast(ops.equal(b, 0), b.dtype)))


def stabilize(z, epsilon: float):
    """``z + epsilon * sign(z)`` with ``sign(0) = +1`` (the epsilon rule's denominator).

    The shift is piecewise constant, so it is added as a constant: the gradient with respect
    to ``z`` is 1 (as for the formula) and costs no extra operations in a training step.
    """
    positive = ops.cast(ops.greater_equal(z, 0), z.dtype)
    shift = ops.subtract(ops.multiply(positive, 2.0 * epsilon), epsilon)  # +-epsilon
    return ops.add(z, ops.stop_gradient(shift))


def positive(w):
    """Element-wise positive part ``max(w, 0)``."""
    return ops.relu(w)  # not ops.maximum: Keras' torch maximum returns float32 for float64


def negative(w):
    """Element-wise negative part ``min(w, 0)``."""
    return ops.negative(ops.relu(ops.negative(w)))


class KernelCall:
    """One call of a kernel layer, as the rules see it.

    Attributes:
        layer: the Keras layer.
        x: the layer's input tensor.
        kernel: the kernel (a tensor, or a tuple for separable convolutions).
        bias: the bias or None.
        z_nobias: ``linear(x, kernel)``, the pre-activation without bias.
        x_nonnegative: True when ``x`` is known to be >= 0 from the graph (it comes from a
            ReLU), which lets rules skip the negative-input terms.
        lrp_bias: optionally, the bias as the ISNet's detached-bias denominators see it
            (a folded BatchNormalization's shift with gamma's gradient only, as the official
            ISNet's ``FuseBN``); None: the bias under ``stop_gradient``. See
            :attr:`detached_bias`.
    """

    def __init__(
        self,
        spec,
        layer,
        x,
        kernel,
        bias,
        z_nobias,
        pullback,
        x_nonnegative=False,
        lrp_bias=None,
    ):
        self.spec = spec
        self.layer = layer
        self.x = x
        self.kernel = kernel
        self.bias = bias
        self.z_nobias = z_nobias
        self._pullback = pullback
        self.x_nonnegative = x_nonnegative
        self._lrp_bias = lrp_bias
        self._cache = {}

    def cached(self, key, compute):
        """``compute()``, computed once per layer call for each ``key``: the backward walks
        of one forward pass (the original ISNet's one walk per class) share it."""
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    @property
    def z(self):
        """The pre-activation with bias."""
        return self.spec.add_bias(self.layer, self.z_nobias, self.bias)

    @property
    def detached_bias(self):
        """The bias as a constant of the rules' denominators (None without a bias).

        ``stop_gradient(bias)``, except for a layer with a BatchNormalization folded after
        it, whose folded shift ``gamma (b - mean) / std + beta`` keeps the gradient of gamma
        alone (b, beta and the statistics constant), as the official ISNet's ``FuseBN``.
        The value is the bias's in every case.
        """
        if self._lrp_bias is not None:
            return self._lrp_bias
        return None if self.bias is None else ops.stop_gradient(self.bias)

    def pullback(self, s):
        """``W^T s``: the transpose of the layer's linear part applied to ``s``."""
        return self._pullback(s)[0]

    def linear(self, x, kernel=None):
        """The layer's bias-free linear part applied to ``x`` (with another kernel if given)."""
        return self.spec.linear(self.layer, x, self.kernel if kernel is None else kernel)

    def linear_vjp(self, x, kernel):
        """``(linear(x, kernel), pullback)`` for a transformed kernel."""
        out, pull = vjp(lambda v: self.spec.linear(self.layer, v, kernel), [x])
        return out, lambda s: pull(s)[0]

    def transposes(self, kernels):
        """A function ``s -> [W^T s for W in kernels]`` (run as one call where the layer
        type allows it; see :meth:`keras_isnet.layers.KernelLayer.transposes`)."""
        return self.spec.transposes(self.layer, self.x, kernels)

    def map_kernel(self, fn):
        """The kernel with ``fn`` applied to each of its tensors."""
        return tree.map_structure(fn, self.kernel)

    def add_bias(self, z, bias):
        return self.spec.add_bias(self.layer, z, bias)


class Rule:
    """Base class of LRP rules: a small object that owns what it is and what it absorbs.

    A rule implements ``__call__(call, R)`` for kernel layers. Everything else the package
    needs to know about a rule is declared on the rule itself, so that a new rule is one
    module (see ARCHITECTURE.md, "How to add a rule"):

    * :attr:`label`: how the conservation report names it (``"Epsilon(e=1e-07)"``);
    * :attr:`uses_bias`: whether the layer's bias (or a folded BN shift) enters its
      denominators, and so can absorb relevance;
    * :meth:`absorption`: the rule's own reasons to absorb relevance (``"epsilon"``,
      ``"zero denominators"``, a non-conserving split);
    * :attr:`applies_to_weightless`: whether a rule map may also put it on weightless linear
      layers (Add, Average, average pooling), through :meth:`reverse_weightless`.

    Example:
        >>> rule = EpsilonRule(epsilon=1e-7)
        >>> rule.label, rule.uses_bias, rule.absorption()
        ('Epsilon(e=1e-07)', True, ['epsilon'])
    """

    name = ""
    #: attributes shown in :attr:`label` and their short names, in this order.
    label_params: dict = {"epsilon": "e", "gamma": "g"}
    #: whether :attr:`label` says ``[no bias]`` for a rule with ``bias=False``.
    label_ignored_bias = True
    #: how the rule's denominators can absorb relevance (None: they cannot).
    stabilizer: str | None = "zero denominators"
    #: whether a rule map may put the rule on weightless linear layers.
    applies_to_weightless = False

    def __call__(self, call: KernelCall, R):
        raise NotImplementedError

    @property
    def uses_bias(self) -> bool:
        """Whether the bias enters the rule's denominators (default: its ``bias`` flag)."""
        return bool(getattr(self, "bias", False))

    @property
    def label(self) -> str:
        """The rule's name with its parameters, e.g. ``"Epsilon(e=0.01)[no bias]"``."""
        text = self.name or type(self).__name__
        for attr, short in self.label_params.items():
            value = getattr(self, attr, None)
            if isinstance(value, float):
                text += f"({short}={value:g})"
        text += self._label_extra()
        if self.label_ignored_bias and getattr(self, "bias", True) is False:
            text += "[no bias]"
        return text

    def _label_extra(self) -> str:
        """Text appended to the label after the parameters (alpha-beta's weights)."""
        return ""

    def absorption(self) -> list[str]:
        """Why relevance can be lost at this rule besides the bias: ``["epsilon"]``,
        ``["zero denominators"]``, plus any non-conserving split; ``[]`` for exact rules."""
        return [] if self.stabilizer is None else [self.stabilizer]

    def reverse_weightless(self, layer, inputs, outputs, pullback, relevances):
        """The rule at a weightless linear layer (for rules with
        :attr:`applies_to_weightless`): lists of tensors in, input relevances out."""
        raise TypeError(
            f"{type(self).__name__} applies to kernel layers only (Dense, convolutions); put "
            "NormRule or PassRule on weightless layers such as Add."
        )

    def __repr__(self):
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"
