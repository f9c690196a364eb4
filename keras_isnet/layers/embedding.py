"""Embedding: a token's relevance is the sum of the relevance of its embedding vector.

The input is an integer index, so there is nothing to differentiate; LRP analyzers return,
for an (batch, sequence) input, the (batch, sequence) relevance of each token.
"""

from __future__ import annotations

import keras

from keras_isnet.layers.base import EmbeddingLayer
from keras_isnet.layers.registry import register_reverse_rule

register_reverse_rule(keras.layers.Embedding, EmbeddingLayer())
