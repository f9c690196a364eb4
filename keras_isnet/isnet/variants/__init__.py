"""ISNet variants as strategy objects, registered by name (``ISNet(variant=name)``).

=======================  ===================  ==========================================
variant                  heatmaps per sample  what is explained
=======================  ===================  ==========================================
``"selective"``          1                    ``eta_c = log(p_c / (1 - p_c))``
``"stochastic"``         1                    the top logit (5/11) or a random other
``"original"``           K                    every logit
``"dual"``               2                    epsilon and z-plus maps of ``eta_c``
``"gradient_x_input"``   1                    gradient x input of the selective class
=======================  ===================  ==========================================
"""

from keras_isnet.isnet.variants import (  # noqa: F401  (their registrations)
    dual,
    gradient_x_input,
    original,
    selective,
    stochastic,
)
from keras_isnet.isnet.variants.base import (
    VARIANTS,
    Variant,
    Walks,
    get_variant,
    register_variant,
    segmentation_labels,
    segmentation_weights,
    sparse_labels,
)
from keras_isnet.isnet.variants.stochastic import STOCHASTIC_TOP_PROBABILITY

__all__ = [
    "STOCHASTIC_TOP_PROBABILITY",
    "VARIANTS",
    "Variant",
    "Walks",
    "get_variant",
    "register_variant",
    "segmentation_labels",
    "segmentation_weights",
    "sparse_labels",
]
