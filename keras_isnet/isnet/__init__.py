"""ISNet: training a classifier to ignore the image background through its LRP heatmaps."""

from keras_isnet.isnet.cuts import tune_cuts
from keras_isnet.isnet.data import isnet_dataset
from keras_isnet.isnet.heatmaps import VARIANTS, ISNetHeatmaps
from keras_isnet.isnet.model import ISNet

__all__ = ["VARIANTS", "ISNet", "ISNetHeatmaps", "isnet_dataset", "tune_cuts"]
