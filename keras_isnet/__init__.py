"""keras-isnet: Layer-wise Relevance Propagation and ISNet training for Keras 3.

Example:
    >>> import keras_isnet as ki
    >>> analyzer = ki.create_analyzer("lrp.epsilon", model)
    >>> heatmaps = analyzer.analyze(x)
"""

from keras_isnet import datasets, layers, losses, metrics, rules
from keras_isnet.analyzers import ANALYZERS, Analyzer, UnsupportedLayerError, create_analyzer
from keras_isnet.graph import ModelWalkError
from keras_isnet.isnet import ISNet, ISNetHeatmaps, isnet_dataset, tune_cuts
from keras_isnet.layers import register_reverse_rule

__version__ = "0.1.0"

__all__ = [
    "ANALYZERS",
    "Analyzer",
    "ISNet",
    "ISNetHeatmaps",
    "ModelWalkError",
    "UnsupportedLayerError",
    "create_analyzer",
    "datasets",
    "isnet_dataset",
    "layers",
    "losses",
    "metrics",
    "register_reverse_rule",
    "rules",
    "tune_cuts",
]
