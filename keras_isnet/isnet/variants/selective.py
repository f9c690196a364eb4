"""The selective ISNet (LRP Block): one map per sample, of ``eta_c = log(p_c / (1 - p_c))``.

The explained quantity goes through a virtual last layer (method page, section 4): with
``z_cc' = z_c - z_c'`` (bias a constant), ``R_cc' = z_cc' e^{-z_cc'} /
(sum_c'' e^{-z_cc''} - 1 + 1e-5)``, then LRP-epsilon through the virtual layer with weights
``w_c - w_c'``. The class c is the ISNet's ``selective_class`` (``"argmin"``: what the
reference code does). Segmentation models explain, per sample, the most frequent class of
its label map. A sigmoid head (multi-label, or a 1-unit binary head) explains the chosen
label's log-odds ``log(p_c / (1 - p_c))``, which for a sigmoid is the logit ``z_c`` itself;
the reference code has no multi-label selective path (its ``multiLabel`` flag only switches
the loss to binary cross-entropy), and the softmax quantity would not be that label's output.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_isnet.isnet.variants.base import Variant, Walks, register_variant
from keras_isnet.layers import KernelLayer, lookup
from keras_isnet.rules.base import stabilize


def selective_seeds(walks: Walks, classes) -> dict:
    """The relevance at the last layer's input for ``eta_c``, as seeds of a backward walk."""
    heatmaps = walks.heatmaps
    head = heatmaps.engine.head_step
    if head is None or not isinstance(lookup(head.layer), KernelLayer):
        raise ValueError(
            "The selective ISNet explains the logits through the last Dense/Conv layer, but "
            f"the logits of {heatmaps.model.name!r} come from "
            f"{type(head.layer).__name__ if head else 'an input'}. "
            "Use variant='stochastic' or 'original', or end the model with a Dense layer."
        )
    record = walks.records[head.index]
    call = record.kernel
    z = (
        call.add_bias(call.z_nobias, ops.stop_gradient(call.bias))
        if call.bias is not None
        else call.z_nobias
    )
    # The virtual layer runs in float32 under mixed precision (its -1e30 mask and the
    # exponentials do not fit float16); the seeds go back in the layer's dtype.
    dtype = keras.backend.standardize_dtype(z.dtype)
    if dtype in ("float16", "bfloat16"):
        z = ops.cast(z, "float32")
    k = z.shape[-1]
    onehot = ops.cast(ops.one_hot(classes, k), z.dtype)
    z_c = ops.sum(ops.multiply(z, onehot), axis=-1, keepdims=True)
    zcc = ops.subtract(z_c, z)  # 0 at c' = c
    # Stable form of e^{-zcc} / (sum e^{-zcc''} - 1): a softmax over c' != c.
    masked = ops.where(onehot > 0, ops.full_like(zcc, -1e30), ops.negative(zcc))
    lse = ops.logsumexp(masked, axis=-1, keepdims=True)
    weights = ops.multiply(ops.exp(ops.subtract(masked, lse)), 1.0 - onehot)
    correction = ops.divide(1.0, ops.add(1.0, ops.multiply(1e-5, ops.exp(ops.negative(lse)))))
    R = ops.multiply(ops.multiply(zcc, weights), correction)
    s = ops.divide(R, stabilize(zcc, heatmaps.epsilon))
    s_total = ops.sum(s, axis=-1, keepdims=True)
    cotangent = ops.cast(ops.subtract(ops.multiply(onehot, s_total), s), dtype)
    r_a = ops.multiply(call.x, call.pullback(cotangent))
    return {record.input_keys[0]: r_a}


class Selective(Variant):
    """``variant="selective"``: one map per sample, of the selective quantity."""

    name = "selective"
    supports_hidden = True

    def classification(self, walks: Walks):
        classes = self.classes(walks.heatmaps, walks.logits, walks.labels)
        if walks.heatmaps.head.sigmoid:
            # a sigmoid label's log-odds log(p / (1 - p)) is its logit: explain the logit
            return ops.stack([walks.class_walk(classes, keep_relevance=True)], axis=1)
        seeds = selective_seeds(walks, classes)
        return ops.stack([walks.walk(seeds, keep_relevance=True)], axis=1)

    def segmentation(self, walks: Walks):
        classes = self.segmentation_classes(walks.segmentation_labels(), walks.logits.shape[-1])
        return ops.stack([walks.segmentation_walk(classes, keep_relevance=True)], axis=1)


SELECTIVE = register_variant(Selective())
