"""The official LRP Block ISNet's max pooling rule: winner takes all, stabilised by epsilon.

``ISNetFunctionsZe.LRPMaxPool2d`` divides the output relevance by the stabilised pooled
value and multiplies by the input, along the max-pool gradient::

    R_j = a_j * unpool(R_k / (a_k + epsilon sign a_k))_j

so a window's winner keeps ``a_k R_k / (a_k + epsilon)`` (``a >= 0`` after a ReLU) and the
rest of ``R_k`` is absorbed; the gradient runs through ``a_j`` and ``a_k``. It applies to
max-pooling layers (a composite's ``max_pooling`` rule), not to kernel layers.

Example:
    >>> rule = MaxPoolEpsilonRule(epsilon=1e-2)
    >>> rule.label, rule.absorption()
    ('MaxPoolEpsilon(e=0.01)', ['epsilon', 'max-pool ties'])
"""

from __future__ import annotations

from keras import ops

from keras_isnet.rules.base import KernelCall, Rule, stabilize


class MaxPoolEpsilonRule(Rule):
    """Max pooling as ``R_in = x * unpool(R / stab(y))`` (the LRP Block's ``LRPMaxPool2d``).

    Args:
        epsilon: the stabiliser, > 0 (default 1e-2, the official ``e``).
    """

    name = "MaxPoolEpsilon"
    stabilizer = "epsilon"
    #: the rule applies to max-pooling layers (see :meth:`reverse_routing`).
    applies_to_max_pooling = True

    def __init__(self, epsilon: float = 1e-2):
        if not epsilon > 0:
            raise ValueError(f"MaxPoolEpsilonRule needs epsilon > 0, got epsilon={epsilon!r}.")
        self.epsilon = float(epsilon)

    def absorption(self) -> list[str]:
        return ["epsilon", "max-pool ties"]

    def __call__(self, call: KernelCall, R):
        raise TypeError(
            "MaxPoolEpsilonRule applies to max-pooling layers only (a composite's "
            "max_pooling rule), not to Dense or convolution layers."
        )

    def reverse_routing(self, inputs, outputs, pullback, relevances):
        """The relevance of the pooling input from that of its output (lists of tensors;
        ``pullback`` is the call's max-pool pullback)."""
        x, y = inputs[0], outputs[0]
        s = ops.divide(relevances[0], stabilize(y, self.epsilon))
        return [ops.multiply(x, pullback([s])[0])]
