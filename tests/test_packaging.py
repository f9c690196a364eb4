"""The release artefacts: ``python -m build`` makes an sdist, the sdist builds a wheel, and the
wheel installs into a fresh virtual environment where ``import keras_isnet`` and the
``keras-isnet`` command work. Also the metadata a user relies on (licence, version, typing).

The build runs without isolation (the dev extra pins ``build`` and ``setuptools``), so the
test needs no network; the fresh environment gets the heavy dependencies (TensorFlow, Keras)
from this environment through a ``.pth`` file, while keras_isnet itself comes only from the
wheel. About 20 s on 2 cores.
"""

import ast
import email
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

import keras_isnet

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("build")
IGNORE = shutil.ignore_patterns(
    ".git", "*.egg-info", "build", "dist", "__pycache__", ".ruff_cache", "isnet-demo", "*.keras"
)


def _run(cmd, cwd, timeout=300):
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory):
    """``(sdist, wheel)``: the sdist built from a clean copy of the tree, the wheel from the
    unpacked sdist (what pip does with an sdist)."""
    tmp = tmp_path_factory.mktemp("build")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=IGNORE)
    _run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", tmp], src)
    (sdist,) = tmp.glob("keras_isnet-*.tar.gz")
    with tarfile.open(sdist) as tar:
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(tmp / "unpacked", **safe)
    (unpacked,) = (tmp / "unpacked").iterdir()
    _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", tmp], unpacked)
    (wheel,) = tmp.glob("keras_isnet-*.whl")
    return sdist, wheel


def test_one_version():
    """pyproject reads the version from keras_isnet/_version.py; nothing else writes it."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and project["dynamic"] == ["version"]
    tree = ast.parse((ROOT / "keras_isnet" / "_version.py").read_text())
    (assign,) = [n for n in tree.body if isinstance(n, ast.Assign)]
    assert assign.value.value == keras_isnet.__version__
    citation = (ROOT / "CITATION.cff").read_text()
    assert f"version: {keras_isnet.__version__}\n" in citation


def test_sdist_and_wheel_contents(artefacts):
    sdist, wheel = artefacts
    version = keras_isnet.__version__
    assert wheel.name == f"keras_isnet-{version}-py3-none-any.whl"
    with tarfile.open(sdist) as tar:
        names = {
            Path(n).relative_to(f"keras_isnet-{version}").as_posix() for n in tar.getnames()[1:]
        }
    for required in ("LICENSE", "NOTICE", "README.md", "pyproject.toml", "keras_isnet/py.typed"):
        assert required in names, required
    with zipfile.ZipFile(wheel) as zf:
        files = set(zf.namelist())
        meta = email.message_from_bytes(zf.read(f"keras_isnet-{version}.dist-info/METADATA"))
        entry_points = zf.read(f"keras_isnet-{version}.dist-info/entry_points.txt").decode()
    assert "keras_isnet/py.typed" in files and "keras_isnet/plot.py" in files
    assert "keras_isnet/callbacks/heatmap.py" in files and "keras_isnet/metrics/sanity.py" in files
    assert not any(f.startswith("tests/") for f in files)  # iNNvestigate's data stays out
    for licence in ("LICENSE", "NOTICE"):
        assert f"keras_isnet-{version}.dist-info/licenses/{licence}" in files
    assert meta["Version"] == version
    assert meta["License-Expression"] == "BSD-3-Clause"
    assert "Typing :: Typed" in meta.get_all("Classifier")
    assert {"plot", "tensorboard", "dev"} <= set(meta.get_all("Provides-Extra"))
    assert "keras-isnet = keras_isnet.cli:main" in entry_points


def test_wheel_installs_into_a_fresh_venv(artefacts, tmp_path):
    _, wheel = artefacts
    env_dir = tmp_path / "fresh"
    venv.create(env_dir, with_pip=False, symlinks=True)
    python = env_dir / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
          "--no-index", str(wheel)], tmp_path)  # fmt: skip
    purelib = Path(
        _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
             tmp_path).stdout.strip()
    )  # fmt: skip
    # the dependencies from this environment, appended after the fresh site-packages (an
    # editable keras_isnet here is not activated: .pth files in that folder are not run)
    (purelib / "_deps_from_test_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    smoke = (
        "import importlib.metadata, pathlib, numpy as np, keras, keras_isnet as ki\n"
        f"assert pathlib.Path(ki.__file__).is_relative_to({str(purelib)!r}), ki.__file__\n"
        "assert importlib.metadata.version('keras-isnet') == ki.__version__\n"
        "assert (pathlib.Path(ki.__file__).parent / 'py.typed').exists()\n"
        "m = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(),"
        " keras.layers.Dense(2)])\n"
        "x = np.random.rand(2, 4, 4, 1).astype('float32')\n"
        "h = ki.create_analyzer('lrp.epsilon', m).analyze(x)\n"
        "assert h.shape == x.shape\n"
        "assert ki.plot.colorize(h[0]).shape == (4, 4, 3)\n"
        "print('smoke ok', ki.__version__)\n"
    )
    done = _run([python, "-c", smoke], tmp_path)
    assert f"smoke ok {keras_isnet.__version__}" in done.stdout
    cli = _run([env_dir / "bin" / "keras-isnet", "--help"], tmp_path)
    assert "explain" in cli.stdout and "report" in cli.stdout
