"""The framework-specific primitives of keras-isnet, one module per Keras backend.

Everything numerical in the package is written with ``keras.ops``; what ``keras.ops`` cannot
express lives here and only here, implemented for TensorFlow (:mod:`.tensorflow`), JAX
(:mod:`.jax`) and PyTorch (:mod:`.torch`); the module of the running Keras backend is loaded
on first use, so only that framework is imported:

* :func:`vjp`: evaluate a function and return a differentiable pullback;
* :func:`compile_function`: compile a function for fast repeated calls;
* :func:`value_and_gradients`: a loss and its gradients with respect to variables;
* :func:`scale_loss_for_distribution`: the per-replica loss scaling;
* :func:`after`: a context whose operations wait for given tensors (the optimizer update);
* :func:`replica_position`: which replica of how many runs the step (per-replica draws);
* :func:`assert_binary`, :func:`assert_within`, :func:`assert_finite`, :func:`value_errors`:
  the ISNet's input checks;
* :func:`native_dataset`: the framework's own input pipeline for ``isnet_dataset`` (tf.data);
* :func:`supports_float64`: whether float64 computes in float64 (JAX needs ``jax_enable_x64``).

Example:
    >>> from keras_isnet import backend
    >>> outputs, pullback = backend.vjp(lambda x: x * x, [x])
"""

from __future__ import annotations

import importlib

import keras

#: the Keras backends keras-isnet supports, with the module implementing each.
MODULES = {
    "tensorflow": "keras_isnet.backend.tensorflow",
    "jax": "keras_isnet.backend.jax",
    "torch": "keras_isnet.backend.torch",
}

_NAMES = (
    "vjp",
    "compile_function",
    "value_and_gradients",
    "scale_loss_for_distribution",
    "replica_position",
    "after",
    "assert_binary",
    "assert_within",
    "assert_finite",
    "value_errors",
    "supports_float64",
    "native_dataset",
    "stateless_value_and_grad",  # JAX only: the stateless training step
)


def implementation():
    """The module implementing the primitives for the running Keras backend."""
    name = keras.backend.backend()
    if name not in MODULES:
        raise NotImplementedError(
            f"keras-isnet supports the Keras backends {sorted(MODULES)}, but Keras runs on "
            f"{name!r}. Set KERAS_BACKEND to one of them before importing keras."
        )
    return importlib.import_module(MODULES[name])


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(implementation(), name)
    raise AttributeError(f"module 'keras_isnet.backend' has no attribute {name!r}")


__all__ = ["MODULES", "implementation", *_NAMES]
