"""The offline datasets, now in :mod:`keras_isnet.experiments.datasets` (the experiments left
the library core); ``keras_isnet.datasets`` stays an alias of that package."""

from keras_isnet.experiments.datasets import *  # noqa: F403
from keras_isnet.experiments.datasets import __all__, biased_mnist, mnist  # noqa: F401
