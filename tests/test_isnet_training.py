"""Training tests of ``ki.ISNet``: P schedules, metrics, background-bias suppression, long
runs, checkpoint resumption, tf.distribute (MirroredStrategy on two logical CPUs,
MultiWorkerMirroredStrategy with two local worker processes).

Gradients, heatmaps, bad input, data forms and serialization are in ``tests/test_isnet.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_isnet as ki

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("loss", "classification_loss", "heatmap_loss", "background_share", "accuracy")


def tiny_model(seed=0):
    """8x8x1 -> Conv2D(3)+ReLU -> MaxPool -> Flatten -> Dense(3) (logits)."""
    init = keras.initializers.GlorotUniform
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(
                3, 3, padding="same", activation="relu", kernel_initializer=init(seed)
            ),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(3, kernel_initializer=init(seed + 1)),
        ]
    )


def random_data(n=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.05, 0.95, size=(n, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 3, size=n)
    m = np.zeros((n, 8, 8), dtype="float32")
    m[:, 2:6, 2:6] = 1
    return x, y, m


def biased_data(n, seed):
    """A toy problem where the label is encoded twice: by a pattern in the foreground (the
    central 4x4 square: a vertical bar, a horizontal bar or a diagonal) and by a bright mark
    in the background (a 2x2 patch in a class-specific corner)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    rng.shuffle(y)
    x = rng.uniform(0.0, 0.3, size=(n, 8, 8)).astype("float32")
    patterns = np.zeros((3, 4, 4), dtype="float32")
    patterns[0, :, 1] = 1.0
    patterns[1, 2, :] = 1.0
    patterns[2] = np.eye(4)
    corners = [(0, 0), (0, 6), (6, 0)]
    for i, label in enumerate(y):
        x[i, 2:6, 2:6] += 0.5 * patterns[label]
        r, c = corners[label]
        x[i, r : r + 2, c : c + 2] = 1.0
    m = np.zeros((n, 8, 8), dtype="float32")
    m[:, 2:6, 2:6] = 1
    return np.clip(x, 0, 1)[..., None], y, m


def quiet_fit(isnet, *args, **kwargs):
    kwargs.setdefault("verbose", 0)
    return isnet.fit(*args, **kwargs)


# ------------------------------------------------------------------------------------------
# 5. P schedule, metrics, background bias
# ------------------------------------------------------------------------------------------


def test_p_schedule_sets_the_heatmap_weight_per_epoch():
    """P = {0: 0.0, 1: 0.7}: the first epoch trains on the cross-entropy only, the next ones on
    0.3 CE + 0.7 heatmap loss; a fit resumed at epoch 1 uses the epoch-1 weight at once."""
    x, y, m = random_data()
    ds = ki.isnet_dataset(x, y, m, batch_size=8, shuffle=False)
    isnet = ki.ISNet(tiny_model(), P={0: 0.0, 1: 0.7})
    isnet.compile(optimizer=keras.optimizers.SGD(0.05), metrics=["accuracy"])
    h = quiet_fit(isnet, ds, epochs=3).history
    assert set(METRICS) <= set(h)
    assert h["loss"][0] == pytest.approx(h["classification_loss"][0], rel=1e-6)
    assert h["heatmap_loss"][0] > 0.1  # computed and reported although its weight is 0
    for e in (1, 2):
        expected = 0.3 * h["classification_loss"][e] + 0.7 * h["heatmap_loss"][e]
        assert h["loss"][e] == pytest.approx(expected, rel=1e-5)

    resumed = ki.ISNet(tiny_model(), P={0: 0.0, 1: 0.7})
    resumed.compile(optimizer=keras.optimizers.SGD(0.05))
    h = quiet_fit(resumed, ds, initial_epoch=1, epochs=2).history
    expected = 0.3 * h["classification_loss"][0] + 0.7 * h["heatmap_loss"][0]
    assert h["loss"][0] == pytest.approx(expected, rel=1e-5)


def test_p_zero_trains_like_the_plain_classifier():
    """With P = 0 the ISNet's update is that of the classifier trained on the cross-entropy."""
    x, y, m = random_data()
    model_a, model_b = tiny_model(), tiny_model()
    isnet = ki.ISNet(model_a, P=0.0)
    isnet.compile(optimizer=keras.optimizers.SGD(0.1))
    quiet_fit(isnet, ki.isnet_dataset(x, y, m, batch_size=8, shuffle=False))
    model_b.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    quiet_fit(model_b, x, y, batch_size=8, shuffle=False)
    for a, b in zip(model_a.get_weights(), model_b.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_isnet_moves_relevance_off_a_background_shortcut():
    """Same initial weights, same data: after a few epochs the ISNet (P = 0.7 after two
    epochs of plain training; P = 0.7 from the start converges less reliably on this toy)
    puts a smaller share of its relevance on the background than the same network trained
    with P = 0, on held-out images that carry the background mark, and both classify them."""
    x, y, m = biased_data(192, seed=0)
    xv, yv, mv = biased_data(96, seed=1)
    init = tiny_model(seed=3).get_weights()
    shares = {}
    for P in (0.0, {0: 0.0, 2: 0.7}):
        model = tiny_model(seed=3)
        model.set_weights(init)
        isnet = ki.ISNet(model, P=P)
        isnet.compile(optimizer=keras.optimizers.Adam(1e-2), metrics=["accuracy"])
        quiet_fit(isnet, ki.isnet_dataset(x, y, m, batch_size=16, seed=0), epochs=12)
        result = isnet.evaluate(
            ki.isnet_dataset(xv, yv, mv, batch_size=96, shuffle=False),
            verbose=0,
            return_dict=True,
        )
        shares["isnet" if P else "plain"] = result["background_share"]
        assert result["accuracy"] > 0.8, (P, result)  # chance is 1/3
    assert shares["isnet"] < shares["plain"] - 0.2, shares


# ------------------------------------------------------------------------------------------
# 7. Long runs and checkpoints
# ------------------------------------------------------------------------------------------


class _BatchLosses(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.losses = []

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(float(logs["loss"]))


@pytest.mark.slow
def test_thousand_steps_without_nan():
    x, y, m = biased_data(64, seed=2)
    isnet = ki.ISNet(tiny_model(), P=0.7)
    isnet.compile(
        optimizer=keras.optimizers.SGD(1e-2, momentum=0.9, clipnorm=1.0), metrics=["accuracy"]
    )
    ds = ki.isnet_dataset(x, y, m, batch_size=16, seed=0).repeat()
    record = _BatchLosses()
    history = quiet_fit(
        isnet,
        ds,
        steps_per_epoch=250,
        epochs=4,
        callbacks=[record, keras.callbacks.TerminateOnNaN()],
    )
    assert len(record.losses) == 1000
    assert np.all(np.isfinite(record.losses))
    for key in METRICS:
        assert np.all(np.isfinite(history.history[key])), key
    assert all(np.all(np.isfinite(w)) for w in isnet.get_weights())
    assert history.history["loss"][-1] < history.history["loss"][0]


class _SaveAt(keras.callbacks.Callback):
    def __init__(self, epoch, path):
        super().__init__()
        self.epoch, self.path = epoch, path

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            self.model.save(self.path)


def _resume_check(tmp_path, variant, optimizer):
    """Train 4 epochs, saving a checkpoint (``isnet.save``: weights and optimizer) after the
    second; load it and train epochs 3 and 4 again: the same losses, batch by batch."""
    x, y, m = random_data(n=24, seed=4)
    ds = ki.isnet_dataset(x, y, m, batch_size=8, shuffle=False)
    isnet = ki.ISNet(tiny_model(), variant=variant, P={0: 0.3, 3: 0.7}, seed=7)
    isnet.compile(optimizer=optimizer(), metrics=["accuracy"])
    path = tmp_path / "checkpoint.keras"
    full = _BatchLosses()
    quiet_fit(isnet, ds, epochs=4, callbacks=[full, _SaveAt(1, path)])
    assert len(full.losses) == 12

    resumed = keras.models.load_model(path)
    tail = _BatchLosses()
    quiet_fit(resumed, ds, initial_epoch=2, epochs=4, callbacks=[tail])
    np.testing.assert_allclose(tail.losses, full.losses[6:], rtol=1e-5, atol=1e-6)
    for a, b in zip(resumed.get_weights(), isnet.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_resume_from_checkpoint_continues_the_run(tmp_path):
    _resume_check(tmp_path, "selective", lambda: keras.optimizers.SGD(0.05))


@pytest.mark.slow
def test_resume_from_checkpoint_keeps_the_momentum(tmp_path):
    _resume_check(tmp_path, "selective", lambda: keras.optimizers.SGD(0.05, momentum=0.9))


@pytest.mark.slow
def test_resume_from_checkpoint_continues_the_stochastic_draws(tmp_path):
    """The stochastic variant's random generator is saved with the checkpoint: the resumed
    run draws the classes the uninterrupted run draws (a restarted generator would repeat
    the first epochs' draws and change the losses)."""
    _resume_check(tmp_path, "stochastic", lambda: keras.optimizers.SGD(0.05))


# ------------------------------------------------------------------------------------------
# 8. MirroredStrategy on two logical CPUs (in a subprocess: the logical devices must be set
#    up before any other TensorFlow use)
# ------------------------------------------------------------------------------------------

_MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np
    import keras_isnet as ki

    def make():
        init = keras.initializers.GlorotUniform
        return keras.Sequential([
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(3, 3, padding="same", activation="relu",
                                kernel_initializer=init(0)),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(4, activation="relu", kernel_initializer=init(1),
                               bias_initializer="ones"),
            keras.layers.Dense(3, kernel_initializer=init(2),
                               bias_initializer=keras.initializers.RandomNormal(0, 0.1, seed=3)),
        ])

    rng = np.random.default_rng(0)
    x = rng.uniform(0.05, 0.95, (8, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 3, 8)
    m = np.zeros((8, 8, 8), "float32")
    m[:, 2:6, 2:6] = 1

    def one_step(strategy, variant):
        with strategy.scope():
            model = make()
            isnet = ki.ISNet(model, variant=variant, P=0.7, seed=0)
            isnet.compile(optimizer=keras.optimizers.SGD(0.5))
        before = [v.numpy() for v in model.weights]
        logs = isnet.fit(ki.isnet_dataset(x, y, m, batch_size=8, shuffle=False),
                         epochs=1, verbose=0).history
        after = [v.numpy() for v in model.weights]
        return before, after, {k: v[0] for k, v in logs.items()}

    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    out = {"replicas": mirrored.num_replicas_in_sync}
    for variant in sys.argv[1:]:
        b1, a1, l1 = one_step(mirrored, variant)
        b2, a2, l2 = one_step(tf.distribute.OneDeviceStrategy("/cpu:0"), variant)
        out[variant] = {
            "init": max(float(np.abs(p - q).max()) for p, q in zip(b1, b2)),
            "weights": max(float(np.abs(p - q).max()) for p, q in zip(a1, a2)),
            "moved": max(float(np.abs(p - q).max()) for p, q in zip(a2, b2)),
            "logs": [l1, l2],
        }
    print("RESULT " + json.dumps(out))
    """
)


def _run_script(code, args, timeout):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("TF_CONFIG", None)
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT ") :])


def test_mirrored_step_equals_a_single_device_step():
    """One SGD step (no momentum, no BatchNorm) on a global batch of 8 split over two
    replicas moves the weights as one step on one device (losses scaled by the global batch,
    not twice), for the stochastic variant too (per-replica random draws)."""
    out = _run_script(_MIRRORED_SCRIPT, ["selective", "stochastic"], timeout=300)
    assert out["replicas"] == 2
    # stochastic: each replica keeps its rows of a draw over the global batch, so the two
    # halves explain the classes one device draws for them (replicas drawing the same
    # classes for both halves moved the weights 0.46 away from the single-device step)
    for variant in ("selective", "stochastic"):
        r = out[variant]
        assert r["init"] == 0.0
        assert r["moved"] > 1e-3, "the step should change the weights"
        assert r["weights"] <= 1e-5, (variant, r)
        mirrored, single = r["logs"]
        assert mirrored == pytest.approx(single, rel=1e-5)


# ------------------------------------------------------------------------------------------
# 9. MultiWorkerMirroredStrategy: two worker processes on 127.0.0.1
# ------------------------------------------------------------------------------------------


def _example_module(name):
    """Import ``examples/<name>.py`` as a module (its ``main`` is guarded)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_multiworker_example_workers_agree(tmp_path):
    example = ROOT / "examples" / "isnet_multiworker.py"
    ports = _example_module("isnet_multiworker").free_loopback_ports(2)
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("TF_CONFIG", None)
    procs = []
    for index in range(2):
        cmd = [sys.executable, str(example), "--worker", str(index)]
        cmd += ["--ports", ",".join(map(str, ports)), "--out", str(tmp_path / f"w{index}.npz")]
        procs.append(
            subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
        )
    outputs = []
    try:
        for proc in procs:
            # Bounded, but generous: two TensorFlow processes share the cores with whatever
            # else runs (each takes 40-60 s on a loaded 2-core machine).
            out, _ = proc.communicate(timeout=300)
            outputs.append(out)
    except subprocess.TimeoutExpired:
        pytest.fail("a worker did not finish in 300 s (stuck collective or port clash?)")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    for proc, out in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, out[-3000:]
    a, b = (np.load(tmp_path / f"w{i}.npz") for i in range(2))
    names = [k for k in a.files if k.startswith("w")]
    assert sorted(a.files) == sorted(b.files) and len(names) == 4
    for key in names:
        assert np.all(np.isfinite(a[key])), key
        np.testing.assert_allclose(a[key], b[key], rtol=0, atol=1e-6, err_msg=key)
        # ... and both equal the same training on one device with global batches.
        np.testing.assert_allclose(a[key], a["single_" + key], rtol=0, atol=1e-5, err_msg=key)
    assert max(np.abs(a[k] - a["init_" + k]).max() for k in names) > 1e-2
