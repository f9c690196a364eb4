"""Unit tests of the runtime core: the graph walk, the engine's head/active/non-negative
analysis, the forward replay and the backward walk (against the model itself and autodiff)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_isnet.canonizers import BatchNormFold
from keras_isnet.engine import Engine, pullback_handler
from keras_isnet.graph import walk
from keras_isnet.propagation import step_names

L = keras.layers


def _nested_model():
    inner_in = keras.Input((6,))
    inner = keras.Model(inner_in, L.Dense(4, activation="relu", name="d1")(inner_in), name="enc")
    x = keras.Input((6,))
    shared = L.Dense(4, name="shared")
    h = inner(x)
    a = shared(h)
    b = shared(L.ReLU(name="relu")(a))
    out = L.Dense(3, activation="softmax", name="head")(L.Add(name="add")([a, b]))
    return keras.Model(x, out)


def test_walk_flattens_nested_models_and_names_shared_calls():
    steps, inputs, outputs = walk(_nested_model())
    paths = [s.path for s in steps]
    assert paths == ["enc/d1", "shared", "relu", "shared", "add", "head"]
    assert [s.index for s in steps] == list(range(len(steps)))
    assert step_names(steps)[3] == "shared#1"  # the second call of the shared layer
    # the keys chain: each step reads what an earlier step (or the input) produced
    produced = set(inputs)
    for step in steps:
        assert set(step.inputs) <= produced
        produced.update(step.outputs)
    assert set(outputs) <= produced


def test_engine_strips_the_softmax_activation_and_finds_the_head():
    model = _nested_model()
    engine = Engine(model)
    head = engine.steps[-1]
    assert engine.head_step is head and engine.head_key == head.outputs[0]
    assert engine.linear_steps == frozenset([head.index])  # softmax activation skipped
    assert engine.active == set(range(len(engine.steps)))
    x = np.random.default_rng(0).normal(size=(3, 6)).astype("float32")
    values, records = engine.replay([tf.constant(x)])
    logits = values[engine.head_key].numpy()
    probabilities = model.predict(x, verbose=0)
    np.testing.assert_allclose(tf.nn.softmax(logits).numpy(), probabilities, rtol=1e-5)
    assert len(records) == len(engine.steps)
    assert engine.head_shape() == (3,)


def test_engine_keeps_the_softmax_when_asked_and_knows_nonnegative_tensors():
    model = _nested_model()
    engine = Engine(model, strip_softmax=False)
    assert engine.linear_steps == frozenset()
    by_path = {s.path: s for s in engine.steps}
    assert engine.nonnegative[by_path["enc/d1"].outputs[0]]  # Dense with relu
    assert not engine.nonnegative[by_path["shared"].outputs[0]]  # linear Dense
    assert engine.nonnegative[by_path["relu"].outputs[0]]
    assert not engine.nonnegative[by_path["add"].outputs[0]]  # one input may be negative


def test_engine_active_steps_skip_branches_that_do_not_reach_the_head():
    x = keras.Input((4,))
    used = L.Dense(2, name="used")(x)
    unused = L.Dense(2, name="unused")(x)
    model = keras.Model(x, [used, unused])
    engine = Engine(model, output_index="used")
    assert {engine.steps[i].path for i in engine.active} == {"used"}
    with pytest.raises(ValueError, match="output_index"):
        Engine(model)


def test_backward_with_pullback_handlers_is_the_gradient():
    model = _nested_model()
    engine = Engine(model)
    handlers = engine.handlers(lambda step: pullback_handler)
    x = tf.constant(np.random.default_rng(1).normal(size=(2, 6)).astype("float32"))
    values, records = engine.replay([x])
    seed = tf.one_hot([0, 2], 3)
    relevance = engine.backward(records, {engine.head_key: seed}, handlers)
    got = engine.input_relevances(relevance, [x])[0].numpy()
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = engine.replay([x])[0][engine.head_key]
        score = tf.reduce_sum(logits * seed)
    np.testing.assert_allclose(got, tape.gradient(score, x).numpy(), rtol=1e-5, atol=1e-7)


def test_batch_norm_fold_canonizer_keeps_the_outputs_and_never_touches_the_model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((5, 5, 2)), L.Conv2D(3, 3), L.BatchNormalization(), L.Flatten(), L.Dense(2)]
    )
    bn = model.layers[1]
    bn.moving_mean.assign([0.3, -0.2, 0.1])
    bn.moving_variance.assign([2.0, 0.5, 1.5])
    before = [w.numpy().copy() for w in model.weights]
    engine = Engine(model, canonizers=[BatchNormFold()])
    plan = engine.canonization
    assert plan.describe() == [(bn.name, model.layers[0].name, "after")]
    x = np.random.default_rng(2).normal(size=(4, 5, 5, 2)).astype("float32")
    folded = engine.replay([tf.constant(x)])[0][engine.head_key].numpy()
    np.testing.assert_allclose(folded, model.predict(x, verbose=0), rtol=1e-4, atol=1e-5)
    for w, b in zip(model.weights, before, strict=True):
        np.testing.assert_array_equal(w.numpy(), b)
    # nothing to fold: the plan changes nothing, and the replay gets no override
    plain = keras.Sequential([keras.Input((3,)), L.Dense(2)])
    assert Engine(plain, canonizers=[BatchNormFold()]).canonization is None
