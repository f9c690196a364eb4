"""The ISNet's LRP implementations (``ISNet(lrp=...)``), as strategy objects.

===========  ==================================================================
``lrp``      reproduces
===========  ==================================================================
``"block"``  the official LRP Block: ISNetLayersZe / ISNetFunctionsZe / ISNetLightningZe
``"flex"``   the official LRP-Flex: ISNetFlexTorch / ISNetFlexLightning
===========  ==================================================================
"""

from keras_isnet.isnet.modes.base import (
    LRP_MODES,
    LRPMode,
    check_selective_eps,
    get_lrp_mode,
    register_lrp_mode,
)
from keras_isnet.isnet.modes.block import BlockLRP
from keras_isnet.isnet.modes.flex import FlexLRP

__all__ = [
    "LRP_MODES",
    "BlockLRP",
    "FlexLRP",
    "LRPMode",
    "check_selective_eps",
    "get_lrp_mode",
    "register_lrp_mode",
]
