"""ki.callbacks: HeatmapCallback writes what it computed (event files read back, PNGs read
back) with the weights of the epoch; PSchedule sets the ISNet's P per epoch."""

import csv
import io

import keras
import numpy as np
import pytest
from PIL import Image

import keras_isnet as ki
from keras_isnet.callbacks import HeatmapCallback, PSchedule

SIZE = 12


def _data(n=6, seed=0):
    """Bright squares in the centre (class 0) or with a background bar (class 1)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 0.1, (n, SIZE, SIZE, 1)).astype("float32")
    masks = np.zeros((n, SIZE, SIZE), "float32")
    masks[:, 3:9, 3:9] = 1.0
    x[:, 3:9, 3:9, 0] += 0.7
    y = np.arange(n) % 2
    x[y == 1, 0:2, :, 0] = 0.9
    return x, y, masks


def _model():
    return keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 1)),
            keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
            keras.layers.Flatten(),
            keras.layers.Dense(2, name="logits"),
        ]
    )


def _compiled():
    model = _model()
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def _tf_events(log_dir):
    """{tag: {step: value}} of the event files: scalars as floats, images as uint8 arrays."""
    import tensorflow as tf

    out = {}
    for path in sorted(log_dir.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                tensor = tf.make_ndarray(value.tensor)
                if value.metadata.plugin_data.plugin_name == "images":
                    width, height = int(tensor[0]), int(tensor[1])
                    pics = [np.asarray(Image.open(io.BytesIO(b))) for b in tensor[2:]]
                    assert all(p.shape[:2] == (height, width) for p in pics)
                    out.setdefault(value.tag, {})[event.step] = np.stack(pics)
                else:
                    out.setdefault(value.tag, {})[event.step] = float(tensor)
    return out


def test_tf_summary_images_and_background_share_read_back(tmp_path):
    pytest.importorskip("tensorboard")
    x, y, masks = _data()
    model = _compiled()
    cb = HeatmapCallback(x[:4], masks[:4], log_dir=tmp_path, writer="tf", initial=True)
    model.fit(x, y, epochs=2, batch_size=6, verbose=0, callbacks=[cb])
    assert cb.writer_kind == "tf"
    events = _tf_events(tmp_path)
    assert set(events) == {"heatmaps/heatmap", "heatmaps/overlay", "heatmaps/background_share"}
    for tag in ("heatmaps/heatmap", "heatmaps/overlay"):
        assert sorted(events[tag]) == [0, 1, 2]
        # 12 px enlarged by ceil(128 / 12) = 11 to 132 px; 4 images, RGB
        assert events[tag][2].shape == (4, 132, 132, 3)
    shares = events["heatmaps/background_share"]
    assert [cb.history[i]["epoch"] for i in range(3)] == [0, 1, 2]
    for entry in cb.history:
        assert shares[entry["epoch"]] == pytest.approx(entry["background_share"], rel=1e-6)
    # the logged heatmap image is the colorized heatmap: its red/blue balance follows the sign
    last = ki.plot.colorize(cb.heatmaps[0], percentile=99.5)
    big = np.repeat(np.repeat(last, 11, 0), 11, 1)
    center = slice(5 * 11, 6 * 11)  # a pixel well inside the mask: no outline drawn there
    np.testing.assert_allclose(
        events["heatmaps/heatmap"][2][0, center, center] / 255.0, big[center, center], atol=0.01
    )


def test_heatmaps_use_the_current_weights(tmp_path):
    x, y, masks = _data()
    model = _compiled()
    cb = HeatmapCallback(x[:4], masks[:4], initial=True)
    model.fit(x, y, epochs=3, batch_size=6, verbose=0, callbacks=[cb])
    fresh = ki.create_analyzer("lrp.epsilon", model).analyze(x[:4])
    np.testing.assert_allclose(cb.heatmaps, fresh, rtol=1e-5, atol=1e-7)
    expected = ki.metrics.background_relevance_share(fresh, masks[:4])
    assert cb.history[-1]["per_sample"] == pytest.approx(expected.tolist(), rel=1e-6)
    assert cb.history[-1]["background_share"] == pytest.approx(float(np.mean(expected)))
    assert cb.history[0]["background_share"] != pytest.approx(cb.history[-1]["background_share"])


def test_every_and_neuron_selection():
    x, y, masks = _data()
    model = _compiled()
    cb = HeatmapCallback(x[:4], every=2, neuron_selection=y[:4], analyzer="gradient")
    model.fit(x, y, epochs=5, batch_size=6, verbose=0, callbacks=[cb])
    assert [e["epoch"] for e in cb.history] == [2, 4]
    model.fit(x, y, epochs=1, batch_size=6, verbose=0, callbacks=[cb])  # logs nothing
    assert [e["epoch"] for e in cb.history] == [2, 4]
    cb.log(5)  # the weights after 6 epochs
    assert cb.history[0]["background_share"] is None
    expected = ki.create_analyzer("gradient", model, neuron_selection_mode="index").analyze(
        x[:4], neuron_selection=y[:4]
    )
    np.testing.assert_allclose(cb.heatmaps, expected, rtol=1e-5, atol=1e-7)


def test_png_writer_and_grid_figures(tmp_path):
    x, y, masks = _data()
    model = _compiled()
    cb = HeatmapCallback(
        x[:3], masks[:3], log_dir=tmp_path / "tb", out_dir=tmp_path / "fig", writer="png"
    )
    model.fit(x, y, epochs=2, batch_size=6, verbose=0, callbacks=[cb])
    for step in (1, 2):
        strip = np.asarray(Image.open(tmp_path / "tb" / f"heatmaps_heatmap_step{step:04d}.png"))
        assert strip.shape == (132, 3 * 132 + 2 * 2, 3)  # three images, 2 px gaps
        assert (tmp_path / "tb" / f"heatmaps_overlay_step{step:04d}.png").exists()
        figure = Image.open(tmp_path / "fig" / f"heatmaps_epoch{step:04d}.png")
        assert figure.size[0] > 200 and figure.size[1] > 200
    with (tmp_path / "tb" / "scalars.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2]
    assert [float(r["value"]) for r in rows] == pytest.approx(
        [e["background_share"] for e in cb.history], rel=1e-12
    )
    # the mask outline is green in the written heatmap
    first = np.asarray(Image.open(tmp_path / "tb" / "heatmaps_heatmap_step0001.png"))
    assert tuple(first[3 * 11, 6 * 11]) == (0, 191, 0)


def test_tensorboard_package_writer_without_tf_summary(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    x, y, masks = _data()
    model = _compiled()
    cb = HeatmapCallback(x[:2], masks[:2], log_dir=tmp_path, writer="tensorboard")
    model.fit(x, y, epochs=2, batch_size=6, verbose=0, callbacks=[cb])
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    scalars = acc.Scalars("heatmaps/background_share")
    assert [s.step for s in scalars] == [1, 2]
    assert [s.value for s in scalars] == pytest.approx(
        [e["background_share"] for e in cb.history], rel=1e-6
    )
    images = acc.Images("heatmaps/overlay/image/1")
    assert [im.step for im in images] == [1, 2]
    assert np.asarray(Image.open(io.BytesIO(images[-1].encoded_image_string))).shape == (
        132,
        132,
        3,
    )


def test_isnet_explains_its_classifier():
    x, y, masks = _data(n=8)
    isnet = ki.ISNet(_model(), P=0.5)
    isnet.compile(optimizer=keras.optimizers.SGD(0.05))
    cb = HeatmapCallback(x[:4], masks[:4])
    isnet.fit(x, y, sample_weight=masks, batch_size=8, epochs=2, verbose=0, callbacks=[cb])
    fresh = ki.create_analyzer("lrp.epsilon", isnet.classifier).analyze(x[:4])
    np.testing.assert_allclose(cb.heatmaps, fresh, rtol=1e-5, atol=1e-7)
    assert len(cb.history) == 2 and 0.0 <= cb.history[-1]["background_share"] <= 1.0


def test_callback_argument_errors():
    x, _, masks = _data()
    with pytest.raises(ValueError, match="masks"):
        HeatmapCallback(x, masks[:, :5])
    with pytest.raises(ValueError, match="every"):
        HeatmapCallback(x, every=0)
    with pytest.raises(ValueError, match="writer"):
        HeatmapCallback(x, log_dir="logs", writer="svg")


def test_p_schedule_values_and_logs():
    schedule = PSchedule({0: 0.0, 2: 0.5, 4: 0.9})
    assert [schedule.value_at(e) for e in range(6)] == [0.0, 0.0, 0.5, 0.5, 0.9, 0.9]
    assert PSchedule(lambda e: 0.1 * e).value_at(3) == pytest.approx(0.3)
    x, y, masks = _data(n=8)
    isnet = ki.ISNet(_model(), P=0.7)
    isnet.compile(optimizer=keras.optimizers.SGD(0.05))
    cb = PSchedule({0: 0.0, 2: 0.5}, log=True)
    h = isnet.fit(x, y, sample_weight=masks, batch_size=8, epochs=3, verbose=0, callbacks=[cb])
    assert h.history["P"] == [0.0, 0.0, 0.5]
    assert float(isnet._P_value) == pytest.approx(0.5)
    h0 = h.history
    assert h0["loss"][0] == pytest.approx(h0["classification_loss"][0], rel=1e-6)  # P = 0
    expected = 0.5 * h0["classification_loss"][2] + 0.5 * h0["heatmap_loss"][2]
    assert h0["loss"][2] == pytest.approx(expected, rel=1e-5)


def test_p_schedule_passed_to_fit_replaces_the_isnets_own():
    x, y, masks = _data(n=8)
    isnet = ki.ISNet(_model(), P={0: 0.9})
    isnet.compile(optimizer=keras.optimizers.SGD(0.05))
    isnet.fit(x, y, sample_weight=masks, batch_size=8, epochs=1, verbose=0,
              callbacks=[PSchedule({0: 0.2})])  # fmt: skip
    assert float(isnet._P_value) == pytest.approx(0.2)
    isnet.fit(x, y, sample_weight=masks, batch_size=8, epochs=1, verbose=0)
    assert float(isnet._P_value) == pytest.approx(0.9)


def test_p_schedule_errors():
    with pytest.raises(ValueError, match="epoch 0"):
        PSchedule({1: 0.5})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        PSchedule({0: 1.5})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        PSchedule(lambda e: 2.0).value_at(0)
    with pytest.raises(TypeError, match="mapping"):
        PSchedule(0.5)
    model = _compiled()
    x, y, _ = _data()
    with pytest.raises(TypeError, match="ISNet"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[PSchedule({0: 0.5})])
