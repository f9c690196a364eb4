"""Experiments outside the library core: the biased-MNIST benchmark and what it needs.

- :mod:`~keras_isnet.experiments.datasets`: offline MNIST and biased MNIST
  (:func:`biased_mnist`, :func:`load_mnist`);
- :mod:`~keras_isnet.experiments.demo`: the plain-CNN vs ISNet benchmark
  (``python -m keras_isnet.demo``);
- :mod:`~keras_isnet.experiments.baselines`: the Right-for-the-Right-Reasons and Grad-CAM
  penalty baselines;
- :mod:`~keras_isnet.experiments.training`: the classifier and training set-up they share.

Example:
    >>> data = ki.experiments.biased_mnist(bias="stripes", seed=0)
"""

from keras_isnet.experiments import datasets
from keras_isnet.experiments.datasets import biased_mnist, load_mnist

__all__ = ["biased_mnist", "datasets", "load_mnist"]
