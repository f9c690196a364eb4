"""The max-pooling shortcut pullback equals TensorFlow's gradient exactly, ties included."""

import keras
import numpy as np
import pytest

from keras_isnet.backend import vjp
from keras_isnet.layers import lookup

CASES = [
    (keras.layers.MaxPooling2D(), (2, 8, 8, 3)),  # windows tile the input
    (keras.layers.MaxPooling2D(padding="same"), (2, 7, 9, 3)),  # partial last windows
    (keras.layers.MaxPooling2D(), (2, 7, 9, 3)),  # rows after the last window
    (keras.layers.MaxPooling2D(3), (2, 7, 9, 3)),
    (keras.layers.MaxPooling2D(3, padding="same"), (2, 7, 8, 3)),  # padding before and after
    (keras.layers.MaxPooling1D(4, padding="same"), (2, 5, 3)),
    (keras.layers.MaxPooling2D(2, strides=1), (2, 7, 9, 3)),  # overlapping: autodiff
    (keras.layers.MaxPooling1D(), (2, 8, 3)),
    (keras.layers.MaxPooling1D(), (2, 7, 3)),
    (keras.layers.MaxPooling3D(), (2, 4, 6, 4, 2)),
    (keras.layers.MaxPooling3D(), (2, 4, 5, 4, 2)),
    (keras.layers.MaxPooling2D(data_format="channels_first"), (2, 3, 8, 6)),
    (keras.layers.MaxPooling2D(data_format="channels_first"), (2, 3, 8, 7)),
    (keras.layers.GlobalMaxPooling2D(), (2, 5, 5, 3)),  # ties split equally
    (keras.layers.GlobalMaxPooling2D(keepdims=True), (2, 5, 5, 3)),
    (keras.layers.GlobalMaxPooling1D(data_format="channels_first"), (2, 3, 6)),
]


@pytest.mark.parametrize("layer,shape", CASES, ids=lambda c: getattr(c, "name", str(c)))
def test_pullback_equals_the_gradient(layer, shape):
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape).astype("float32")
    x[0] = np.round(x[0])  # many ties in the first sample
    y, autodiff = vjp(lambda v: layer(v), [x])
    fast = lookup(layer).pullback(layer, [x], [y], autodiff)
    for _ in range(2):  # the pullback is reusable
        R = rng.normal(size=y.shape).astype("float32")
        np.testing.assert_array_equal(np.asarray(fast([R])[0]), np.asarray(autodiff([R])[0]))
