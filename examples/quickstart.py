"""Quickstart: explain a small convolutional classifier with three analyzers.

Run: python examples/quickstart.py
"""

import keras
import numpy as np

import keras_isnet as ki

keras.utils.set_random_seed(0)
model = keras.Sequential(
    [
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax"),
    ]
)
x = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)

for name in ("gradient", "lrp.epsilon", "lrp.sequential_preset_b"):
    heatmaps = ki.create_analyzer(name, model).analyze(x)  # softmax stripped: explains logits
    print(f"{name:24s} shape={heatmaps.shape} sum per sample={heatmaps.sum(axis=(1, 2, 3))}")

# Explain class 3 for every sample, and check LRP-z conservation without biases:
analyzer = ki.create_analyzer("lrp.z", model, neuron_selection_mode="index", bias=False)
relevance = analyzer.analyze(x, neuron_selection=3)
print("class-3 relevance sums:", relevance.sum(axis=(1, 2, 3)))
