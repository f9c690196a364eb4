"""ISNet losses: the heatmap loss, global weighted rank pooling, mask preparation, cut tune."""

from .gwrp import gwrp
from .isnet_heatmap_loss import (
    CutAccumulator,
    estimate_cuts,
    isnet_heatmap_loss,
    loss_dtype,
    validate_loss_options,
)
from .masks import prepare_masks

__all__ = [
    "CutAccumulator",
    "estimate_cuts",
    "gwrp",
    "isnet_heatmap_loss",
    "loss_dtype",
    "prepare_masks",
    "validate_loss_options",
]
