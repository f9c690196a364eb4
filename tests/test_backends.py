"""The same numbers on every Keras backend (issue 11).

``tests/backends/probe.py`` runs under TensorFlow, JAX and PyTorch in subprocesses (a Keras
process has one backend) on the same float64 NumPy weights; every analyzer heatmap,
conservation sum, ISNet heatmap, loss and weight gradient must agree with TensorFlow's within
1e-5 (relative to each array's largest value), and a classifier trained and saved on one
backend must load on the others with the same predictions.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

PROBE = Path(__file__).parent / "backends" / "probe.py"
BACKENDS = ("tensorflow", "jax", "torch")


def _run(backend: str, *args: str) -> None:
    env = dict(os.environ, KERAS_BACKEND=backend, JAX_ENABLE_X64="1", TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, str(PROBE), *args], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{backend}: {done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def probes(tmp_path_factory):
    root = tmp_path_factory.mktemp("backends")
    for backend in BACKENDS:
        _run(backend, str(root / f"{backend}.npz"), "--save", str(root / f"{backend}.keras"))
    return root, {b: dict(np.load(root / f"{b}.npz")) for b in BACKENDS}


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_every_number_equals_tensorflows(probes, backend):
    _, results = probes
    reference, other = results["tensorflow"], results[backend]
    keys = [k for k in reference if k != "saved_predictions"]
    assert sorted(keys) == sorted(k for k in other if k != "saved_predictions")
    assert any(k.startswith("isnet/selective/grad/") for k in keys)
    for key in keys:
        scale = float(np.abs(reference[key]).max())
        error = float(np.abs(other[key] - reference[key]).max())
        assert error <= 1e-5 * scale + 1e-12, (key, error, scale)


@pytest.mark.parametrize("saved_on", BACKENDS)
def test_a_keras_file_saved_on_one_backend_predicts_the_same_on_another(probes, saved_on):
    root, results = probes
    expected = results[saved_on]["saved_predictions"]
    for backend in BACKENDS:
        if backend == saved_on:
            continue
        out = root / f"{saved_on}-on-{backend}.npz"
        _run(backend, str(out), "--load", str(root / f"{saved_on}.keras"))
        got = np.load(out)["loaded_predictions"]
        # the same predictions up to PyTorch's float32 matmul in float64 Dense layers (the
        # README's 1e-5 of the scale; TensorFlow and JAX agree to round-off)
        scale = float(np.abs(expected).max())
        assert float(np.abs(got - expected).max()) <= 1e-5 * scale, (saved_on, backend)


def test_jax_data_parallel_step_equals_the_single_device_step():
    """keras.distribution.DataParallel on 2 host CPU devices (XLA flag, set before JAX
    starts: a subprocess): the weights after one ISNet step on the same global batch agree
    with the single-device step (selective, original and stochastic: the compiled step draws
    over the global batch) within 1e-5 of the update."""
    script = Path(__file__).parent / "backends" / "data_parallel.py"
    env = dict(
        os.environ,
        KERAS_BACKEND="jax",
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
        TF_CPP_MIN_LOG_LEVEL="3",
    )
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert "relative difference" in done.stdout
