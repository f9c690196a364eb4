"""ARCHITECTURE.md's "how to add ..." examples run as printed, and each checks its numbers.

Each ```python block is executed verbatim in a fresh namespace; the blocks end with
assertions against NumPy closed forms or an independent configuration, so a change that
breaks an extension point fails here.
"""

from __future__ import annotations

import pathlib
import re

import pytest

from keras_isnet.composites import COMPOSITES
from keras_isnet.isnet.variants import VARIANTS
from keras_isnet.layers.registry import _REGISTRY
from keras_isnet.rules import RULES

ARCHITECTURE = pathlib.Path(__file__).resolve().parents[1] / "ARCHITECTURE.md"


def _blocks():
    return re.findall(r"```python\n(.*?)```", ARCHITECTURE.read_text(), flags=re.S)


def test_there_is_one_example_per_extension_point():
    headings = re.findall(r"^## How to add (.+)$", ARCHITECTURE.read_text(), flags=re.M)
    assert headings == ["a rule", "a layer type", "an ISNet variant", "a composite"]
    assert len(_blocks()) == len(headings)


@pytest.fixture
def clean_registries():
    """The examples register a rule, a layer, a variant and a composite: undo it after."""
    saved = (dict(RULES), dict(_REGISTRY), dict(VARIANTS), dict(COMPOSITES))
    yield
    for registry, before in zip((RULES, _REGISTRY, VARIANTS, COMPOSITES), saved, strict=True):
        registry.clear()
        registry.update(before)


@pytest.mark.parametrize("index", range(len(_blocks())))
def test_architecture_example_runs(index, clean_registries, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    source = _blocks()[index]
    assert "assert" in source, "every example checks what it shows"
    exec(compile(source, f"ARCHITECTURE.md[{index}]", "exec"), {"__name__": "architecture"})
