"""The selective ISNet: one map per sample, of the selective quantity of one class.

LRP Block (``lrp="block"``): ``eta_c = log(p_c / (1 - p_c))`` through a virtual last layer
(method page, section 4): with ``z_cc' = z_c - z_c'`` (bias a constant), ``R_cc' = z_cc'
e^{-z_cc'} / (sum_c'' e^{-z_cc''} - 1 + 1e-5)``, then LRP-epsilon through the virtual layer
with weights ``w_c - w_c'``. LRP-Flex (``lrp="flex"``): the gradient of ``log(p_c + eps_s) -
log(1 - p_c + eps_s)`` through the logit layer (LRP-0). The class c is the ISNet's
``selective_class`` (``"argmin"``: what the reference code does). Segmentation models
explain, per sample, the most frequent class of its label map. A sigmoid head (multi-label, or a
1-unit binary head) explains the chosen label's log-odds ``log(p_c / (1 - p_c))``, which for
a sigmoid is the logit ``z_c`` itself (both modes); the reference code has no multi-label
selective path (its ``multiLabel`` flag only switches the loss to binary cross-entropy), and
the softmax quantity would not be that label's output.
"""

from __future__ import annotations

from keras import ops

from keras_isnet.isnet.variants.base import Variant, Walks, register_variant


def selective_seeds(walks: Walks, classes) -> dict:
    """The seeds of the selective quantity's walk, as the ISNet's LRP mode computes them."""
    return walks.heatmaps.mode.selective_seeds(walks, classes)


class Selective(Variant):
    """``variant="selective"``: one map per sample, of the selective quantity."""

    name = "selective"
    supports_hidden = True

    def classification(self, walks: Walks):
        classes = self.explained_classes(walks)
        if walks.heatmaps.head.sigmoid:
            # a sigmoid label's log-odds log(p / (1 - p)) is its logit: explain the logit
            return ops.stack([walks.class_walk(classes, keep_relevance=True)], axis=1)
        seeds = selective_seeds(walks, classes)
        return ops.stack([walks.walk(seeds, keep_relevance=True)], axis=1)

    def segmentation(self, walks: Walks):
        classes = self.segmentation_classes(walks.segmentation_labels(), walks.logits.shape[-1])
        return ops.stack([walks.segmentation_walk(classes, keep_relevance=True)], axis=1)


SELECTIVE = register_variant(Selective())
