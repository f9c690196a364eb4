"""The dual ISNet: two maps of the selective quantity, LRP-epsilon and z-plus.

``C1``/``C2`` may be pairs, one cut per map: the heatmap loss is then the mean of the two
maps' losses, each with its own cuts.
"""

from __future__ import annotations

from keras import ops

from keras_isnet.isnet.variants.base import Walks, register_variant
from keras_isnet.isnet.variants.selective import Selective, selective_seeds
from keras_isnet.losses import isnet_heatmap_loss
from keras_isnet.rules import ZPlusRule

#: the rule of the second map, on every kernel layer.
SECOND_RULE = ZPlusRule()


class Dual(Selective):
    """``variant="dual"``: the selective map and its z-plus twin."""

    name = "dual"
    supports_hidden = False

    def classification(self, walks: Walks):
        seeds = selective_seeds(walks, self.explained_classes(walks))
        zplus = walks.heatmaps.handlers_with_kernel_rule(SECOND_RULE)
        return ops.stack([walks.walk(seeds, keep_relevance=True), walks.walk(seeds, zplus)], 1)

    def segmentation(self, walks: Walks):
        classes = self.segmentation_classes(walks.segmentation_labels(), walks.logits.shape[-1])
        zplus = walks.heatmaps.handlers_with_kernel_rule(SECOND_RULE)
        maps = [
            walks.segmentation_walk(classes, keep_relevance=True),
            walks.segmentation_walk(classes, zplus),
        ]
        return ops.stack(maps, axis=1)

    def heatmap_loss(self, heatmaps, masks, loss_kwargs: dict):
        c1, c2 = loss_kwargs["C1"], loss_kwargs["C2"]
        if not isinstance(c1, (tuple, list)):
            return super().heatmap_loss(heatmaps, masks, loss_kwargs)
        kwargs = {k: v for k, v in loss_kwargs.items() if k not in ("C1", "C2")}
        losses = [
            isnet_heatmap_loss(
                heatmaps[:, i : i + 1], masks, C1=c1[i], C2=c2[i], reduction="none", **kwargs
            )
            for i in range(2)
        ]
        return ops.mean(ops.stack(losses, axis=-1), axis=-1)


DUAL = register_variant(Dual())
