"""The scripts in examples/ run end to end (with their smallest settings) and print what
their docstrings say. examples/segmentation_unet.py and examples/isnet_multiworker.py have
their own tests (test_segmentation.py, test_isnet_training.py)."""

from __future__ import annotations

import importlib.util
import runpy
from pathlib import Path

import keras
import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quickstart(capsys):
    namespace = runpy.run_path(str(EXAMPLES / "quickstart.py"))
    out = capsys.readouterr().out
    for name in ("gradient", "lrp.epsilon", "lrp.sequential_preset_b"):
        assert f"{name} " in out and "shape=(4, 28, 28, 1)" in out
    # its closing claim: LRP-z without biases conserves the class-3 logit (softmax stripped)
    model, x, relevance = namespace["model"], namespace["x"], namespace["relevance"]
    features = keras.Model(model.inputs, model.layers[-2].output).predict(x, verbose=0)
    dense = model.layers[-1]
    logit = features @ dense.kernel.numpy()[:, 3] + dense.bias.numpy()[3]
    np.testing.assert_allclose(relevance.sum(axis=(1, 2, 3)), logit, rtol=1e-4, atol=1e-6)


def test_isnet_segmentation_smallest_run(capsys):
    module = _load("isnet_segmentation")
    module.main(["--warmup", "1", "--epochs", "1", "--train", "32"])
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.startswith(("plain ", "ISNet "))]
    assert [(r[0], r[1]) for r in rows] == [
        (model, frame) for frame in ("biased", "clean", "swapped") for model in ("plain", "ISNet")
    ]
    values = np.array([[float(v) for v in r[2:]] for r in rows])
    assert values.shape == (6, 3) and ((values >= 0) & (values <= 1)).all()


def test_compare_explanations_smallest_run(tmp_path, capsys):
    module = _load("compare_explanations")
    module.main(["--epochs", "1", "--n", "2", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith(("| plain |", "| isnet |"))]
    assert len(rows) == 6  # 2 models x 3 methods
    assert (tmp_path / "compare_explanations.png").stat().st_size > 0


def test_compare_explanations_rejects_bad_arguments():
    module = _load("compare_explanations")
    with pytest.raises(SystemExit):
        module.main(["--n", "0"])


def test_multilabel_isnet_smallest_run(capsys):
    module = _load("multilabel_isnet")
    results = module.main(["--n-train", "64", "--n-test", "32", "--epochs", "1"])
    out = capsys.readouterr().out
    assert [line.split(" | ")[0] for line in out.splitlines() if line.startswith("| plain")]
    assert set(results) == {"plain", "isnet"}
    for per_set in results.values():
        assert set(per_set) == {"biased", "unbiased", "confounding"}
        for accuracy, auc in per_set.values():
            assert 0.0 <= accuracy <= 1.0 and 0.0 <= auc <= 1.0


def test_multilabel_isnet_marks_follow_the_labels():
    """Each test set's marks are lit as documented: as the labels (biased), never
    (unbiased), exactly when the label is negative (confounding); never on the mask."""
    module = _load("multilabel_isnet")
    sets = module.build_data(64, 40, seed=0)
    templates = module.bias_templates("corner_square", 32)
    for name, expected in (("biased", 1.0), ("unbiased", None), ("confounding", 0.0)):
        x, y, m = sets[name]
        np.testing.assert_array_equal(y[:, 0], 1.0 * (sets[name][1][:, 0] == 1))
        for j, position in enumerate(module.MARK_POSITIONS):
            region = templates[position] > 0
            lit = x[:, region, 0].min(axis=1) > 0.99
            want = np.zeros(len(y), bool) if expected is None else (y[:, j] == expected)
            np.testing.assert_array_equal(lit, want)
        assert np.all(x[..., 0][m > 0] <= sets["unbiased"][0][..., 0][m > 0] + 1e-7)


@pytest.mark.slow
def test_vit_isnet_quick_run(capsys):
    module = _load("vit_isnet")
    results = module.main(["--quick"])
    out = capsys.readouterr().out
    assert "| plain ViT |" in out and "| ViT ISNet |" in out
    for name in ("plain ViT", "ViT ISNet"):
        accuracy = results["models"][name]["accuracy"]
        assert set(accuracy) == {"biased", "unbiased", "confounding"}
