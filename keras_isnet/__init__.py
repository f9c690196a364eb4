"""keras-isnet: Layer-wise Relevance Propagation and ISNet training for Keras 3.

Example:
    >>> import keras_isnet as ki
    >>> analyzer = ki.create_analyzer("lrp.epsilon", model)
    >>> heatmaps = analyzer.analyze(x)
"""

from keras_isnet import (  # analyzers first: composites registers into it
    analyzers,
    arrays,
    callbacks,
    canonizers,
    composites,
    conservation,
    datasets,
    experiments,
    layers,
    losses,
    metrics,
    plot,
    rules,
    segmentation,
)
from keras_isnet._version import __version__
from keras_isnet.analyzers import ANALYZERS, Analyzer, UnsupportedLayerError, create_analyzer
from keras_isnet.canonizers import fold_batch_norm
from keras_isnet.conservation import ConservationReport, conservation_report
from keras_isnet.graph import ModelWalkError
from keras_isnet.isnet import ISNet, ISNetHeatmaps, isnet_dataset, tune_cuts
from keras_isnet.layer_graphs import register_layer_graph
from keras_isnet.layers import register_reverse_rule
from keras_isnet.output_activation import model_wo_output_activation, model_wo_softmax
from keras_isnet.segmentation import class_region_selection, predicted_class_selection

__all__ = [
    "ANALYZERS",
    "Analyzer",
    "ConservationReport",
    "ISNet",
    "ISNetHeatmaps",
    "ModelWalkError",
    "UnsupportedLayerError",
    "__version__",
    "analyzers",
    "arrays",
    "callbacks",
    "canonizers",
    "class_region_selection",
    "composites",
    "conservation",
    "conservation_report",
    "create_analyzer",
    "datasets",
    "experiments",
    "fold_batch_norm",
    "isnet_dataset",
    "model_wo_output_activation",
    "model_wo_softmax",
    "layers",
    "losses",
    "metrics",
    "plot",
    "predicted_class_selection",
    "register_layer_graph",
    "register_reverse_rule",
    "rules",
    "segmentation",
    "tune_cuts",
]
