"""The transformer composites: CP-LRP (``"lrp.cp_lrp"``) and AttnLRP (``"lrp.attn_lrp"``).

Both put LRP-epsilon (bias in the denominator, ``epsilon`` 1e-6 by default, as lxt's linear
layers) on Dense, EinsumDense and convolution layers, pass relevance through GELU and other
element-wise activations (the identity rule) and split sums with the z-rule. They differ inside
attention and at LayerNormalization:

* **CP-LRP** (Ali et al., 2022, "XAI for Transformers: Better Explanations through
  Conservative Propagation"): the attention weights (a softmax's output) are constants, so
  the product ``A V`` sends all relevance to ``V`` and none reaches the queries and keys; the
  LN rule holds the standard deviation constant. Conservative on bias-free blocks.
* **AttnLRP** (Achtibat et al., 2024, "AttnLRP: Attention-Aware Layer-Wise Relevance
  Propagation for Transformers"): the uniform rule on the bilinear products (``Q K^T`` and
  ``A V``: half to each factor), the softmax rule ``R_x = x (R - s sum R)`` and LayerNorm
  with the standard deviation held constant, ``R_x = x J^T (R / (y + eps))``.

Example:
    >>> ki.create_analyzer("lrp.attn_lrp", vit, epsilon=1e-6).analyze(images)
    >>> ki.create_analyzer("lrp.cp_lrp", vit).analyze(images)
"""

from __future__ import annotations

from keras_isnet.composites.composite import Composite
from keras_isnet.composites.registry import register_composite
from keras_isnet.rules import EpsilonRule


@register_composite("lrp.cp_lrp")
def cp_lrp(epsilon: float = 1e-6, bias: bool = True) -> Composite:
    """CP-LRP: epsilon on kernel layers, attention weights constant, the LN rule."""
    return Composite(
        default=EpsilonRule(epsilon=epsilon, bias=bias),
        products="constant_softmax",
        softmax="pass",
        layer_norm="ln_rule",
    )


@register_composite("lrp.attn_lrp")
def attn_lrp(epsilon: float = 1e-6, bias: bool = True) -> Composite:
    """AttnLRP: epsilon on kernel layers, the uniform and softmax rules, LayerNorm with the
    standard deviation constant."""
    return Composite(
        default=EpsilonRule(epsilon=epsilon, bias=bias),
        products="uniform",
        softmax="taylor",
        layer_norm="attn_lrp",
    )
