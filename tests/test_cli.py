"""keras-isnet explain / report end to end: a saved tiny model, PNG files written here, the
outputs read back and compared with the Python API."""

import csv
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

import keras_isnet as ki
from keras_isnet.cli import main

SIZE = 10


def _model(channels=1, softmax=False):
    keras.utils.set_random_seed(1)
    return keras.Sequential(
        [
            keras.Input((SIZE, SIZE, channels)),
            keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
            keras.layers.Flatten(),
            keras.layers.Dense(3, activation="softmax" if softmax else None, name="out"),
        ]
    )


def _write_images(folder, n=3, channels=1, size=SIZE, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (n, size, size, channels), dtype=np.uint8)
    paths = []
    for i in range(n):
        mode = "L" if channels == 1 else "RGB"
        arr = pixels[i, ..., 0] if channels == 1 else pixels[i]
        paths.append(folder / f"img{i}.png")
        Image.fromarray(arr, mode).save(paths[-1])
    return pixels.astype("float32") / 255.0, paths


def _write_masks(folder, n=3, size=SIZE):
    folder.mkdir(parents=True, exist_ok=True)
    masks = np.zeros((n, size, size), "float32")
    for i in range(n):
        masks[i, 2 + i : 7, 2:8] = 1
        Image.fromarray((masks[i] * 255).astype(np.uint8), "L").save(folder / f"img{i}.png")
    return masks


@pytest.fixture
def saved(tmp_path):
    model = _model()
    path = tmp_path / "model.keras"
    model.save(path)
    return model, path


def _rows(path):
    with path.open() as f:
        return list(csv.DictReader(f))


def test_explain_writes_heatmaps_npy_and_csv(tmp_path, saved, capsys):
    model, model_path = saved
    x, _ = _write_images(tmp_path / "images")
    masks = _write_masks(tmp_path / "masks")
    out = tmp_path / "out"
    status = main(
        [
            "explain", str(model_path), str(tmp_path / "images"), "--mask",
            str(tmp_path / "masks"), "--out", str(out), "--param", "epsilon=0.01",
        ]
    )  # fmt: skip
    assert status == 0, capsys.readouterr().err
    rows = _rows(out / "explanations.csv")
    assert [r["image"].rsplit("/", 1)[-1] for r in rows] == ["img0.png", "img1.png", "img2.png"]
    logits = model.predict(x, verbose=0)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    analyzer = ki.create_analyzer("lrp.epsilon", model, epsilon=0.01)
    expected = analyzer.analyze(x)
    shares = ki.metrics.background_relevance_share(expected, masks)
    for i, row in enumerate(rows):
        assert int(row["predicted_class"]) == int(logits[i].argmax())
        assert int(row["explained_class"]) == int(logits[i].argmax())
        assert float(row["probability"]) == pytest.approx(float(probs[i].max()), rel=1e-4)
        assert float(row["background_share"]) == pytest.approx(float(shares[i]), rel=1e-4)
        saved_map = np.load(out / row["relevance_npy"])
        assert saved_map.shape == (SIZE, SIZE, 1) and saved_map.dtype == np.float32
        np.testing.assert_allclose(saved_map, expected[i], rtol=1e-5, atol=1e-7)
        assert float(row["relevance_sum"]) == pytest.approx(float(expected[i].sum()), rel=1e-4)
        png = Image.open(out / row["heatmap_png"])
        assert png.format == "PNG" and png.size[0] > 3 * png.size[1] / 2


def test_explain_class_option_and_single_files(tmp_path, saved):
    model, model_path = saved
    x, paths = _write_images(tmp_path / "images")
    out = tmp_path / "out"
    args = ["explain", str(model_path), str(paths[2]), str(paths[0]), "--class", "1"]
    assert main(args + ["--out", str(out), "--analyzer", "gradient"]) == 0
    rows = _rows(out / "explanations.csv")
    assert [r["explained_class"] for r in rows] == ["1", "1"]
    assert "background_share" not in rows[0]
    expected = ki.create_analyzer("gradient", model, neuron_selection_mode="index").analyze(
        x[[2, 0]], neuron_selection=1
    )
    np.testing.assert_allclose(np.load(out / "img2_relevance.npy"), expected[0], rtol=1e-5)


def test_explain_rgb_softmax_model_and_input_range(tmp_path):
    model = _model(channels=3, softmax=True)
    model.save(tmp_path / "m.keras")
    x, paths = _write_images(tmp_path / "images", n=2, channels=3)
    out = tmp_path / "out"
    args = ["explain", str(tmp_path / "m.keras"), str(paths[0]), str(paths[1]), "--out", str(out)]
    assert main(args + ["--input-range", "-1", "1"]) == 0
    probs = model.predict(2 * x - 1, verbose=0)  # the model's own softmax, not applied twice
    rows = _rows(out / "explanations.csv")
    for i, row in enumerate(rows):
        assert float(row["probability"]) == pytest.approx(float(probs[i].max()), rel=1e-4)


def test_explain_an_isnet_explains_its_classifier(tmp_path):
    model = _model()
    isnet = ki.ISNet(model)
    isnet.compile(optimizer="sgd")
    isnet.save(tmp_path / "isnet.keras")
    x, paths = _write_images(tmp_path / "images", n=1)
    assert main(["explain", str(tmp_path / "isnet.keras"), str(paths[0]), "--out",
                 str(tmp_path / "out")]) == 0  # fmt: skip
    expected = ki.create_analyzer("lrp.epsilon", model).analyze(x)
    np.testing.assert_allclose(np.load(tmp_path / "out" / "img0_relevance.npy"), expected[0],
                               rtol=1e-5, atol=1e-7)  # fmt: skip


def test_wrong_size_needs_resize(tmp_path, saved, capsys):
    model, model_path = saved
    _, paths = _write_images(tmp_path / "images", n=1, size=16)
    args = ["explain", str(model_path), str(paths[0]), "--out", str(tmp_path / "out")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "16x16 pixels but the model takes 10x10" in err and "--resize" in err
    assert not (tmp_path / "out").exists()
    assert main(args + ["--resize"]) == 0
    assert np.load(tmp_path / "out" / "img0_relevance.npy").shape == (SIZE, SIZE, 1)


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing model", "model file not found"),
        ("not a model", "could not load the model"),
        ("missing image", "no such file or folder"),
        ("not an image", "is not an image file"),
        ("empty folder", "no image files"),
        ("missing mask", "no mask for img0.png"),
        ("mask size", "small_mask.png is 4x4 pixels but the model takes 10x10"),
        ("unknown analyzer", "No analyzer named 'lrp.nope'"),
        ("class out of range", "--class 7 is not a class of this model (0..2)"),
    ],
)
def test_explain_errors_are_one_clear_line(tmp_path, saved, capsys, case, message):
    _, model_path = saved
    _, paths = _write_images(tmp_path / "images", n=1)
    (tmp_path / "notes.png").write_text("this is not a PNG")
    (tmp_path / "empty").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8), "L").save(tmp_path / "small_mask.png")
    model, image, extra = str(model_path), str(paths[0]), []
    if case == "missing model":
        model = str(tmp_path / "nope.keras")
    elif case == "not a model":
        model = str(tmp_path / "notes.png")
    elif case == "missing image":
        image = str(tmp_path / "nope.png")
    elif case == "not an image":
        image = str(tmp_path / "notes.png")
    elif case == "empty folder":
        image = str(tmp_path / "empty")
    elif case == "missing mask":
        extra = ["--mask", str(tmp_path / "masks")]
    elif case == "mask size":
        extra = ["--mask", str(tmp_path / "small_mask.png")]
    elif case == "unknown analyzer":
        extra = ["--analyzer", "lrp.nope"]
    else:
        extra = ["--class", "7"]
    assert main(["explain", model, image, "--out", str(tmp_path / "out"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("keras-isnet explain: error:") and message in err
    assert "Traceback" not in err and len(err.splitlines()) == 1


def test_report_prints_and_plots(tmp_path, saved, capsys):
    model, model_path = saved
    x, paths = _write_images(tmp_path / "images", n=1)
    args = ["report", str(model_path), str(paths[0]), "--analyzer", "lrp.z", "--out"]
    assert main(args + [str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    analyzer = ki.create_analyzer("lrp.z", model, neuron_selection_mode="index")
    cls = int(model.predict(x, verbose=0)[0].argmax())
    expected = ki.conservation_report(analyzer, x, neuron_selection=cls).to_text()
    assert expected in text and f"class {cls}" in text
    assert Image.open(tmp_path / "out" / "img0_conservation.png").size[0] > 300
    assert main(["report", str(model_path), str(paths[0]), "--analyzer", "gradient"]) == 2
    assert "needs an LRP analyzer" in capsys.readouterr().err


def test_help_lists_the_commands(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    assert all(cmd in text for cmd in ("demo", "explain", "report"))
    assert main([]) == 2
    assert main(["explain"]) == 2  # the model and images are required
    assert "required" in capsys.readouterr().err


def test_python_m_keras_isnet_explain(tmp_path, saved):
    """The installed entry point's module form, in a fresh interpreter."""
    _, model_path = saved
    _, paths = _write_images(tmp_path / "images", n=2)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    cmd = [
        sys.executable,
        "-m",
        "keras_isnet",
        "explain",
        str(model_path),
        str(tmp_path / "images"),
    ]
    done = subprocess.run(
        cmd + ["--out", str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "explained 2 image(s)" in done.stdout
    assert len(_rows(tmp_path / "out" / "explanations.csv")) == 2
