"""ISNet: training a classifier to ignore the image background through its LRP heatmaps."""

from keras_isnet.isnet.cuts import tune_cuts
from keras_isnet.isnet.data import isnet_dataset
from keras_isnet.isnet.heatmaps import ISNetHeatmaps
from keras_isnet.isnet.model import ISNet
from keras_isnet.isnet.variants import VARIANTS, Variant, register_variant

__all__ = [
    "VARIANTS",
    "ISNet",
    "ISNetHeatmaps",
    "Variant",
    "isnet_dataset",
    "register_variant",
    "tune_cuts",
]
