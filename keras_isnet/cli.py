"""The ``keras-isnet`` command (also ``python -m keras_isnet``).

* ``keras-isnet demo [options]``: the biased-MNIST benchmark (``python -m keras_isnet.demo``).
* ``keras-isnet explain MODEL.keras IMAGE_OR_DIR... --out DIR``: a heatmap PNG (input,
  heatmap, overlay) and the relevance as ``.npy`` per image, and ``explanations.csv`` with
  the predicted class, its probability and, with ``--mask``, the background share.
* ``keras-isnet report MODEL.keras IMAGE``: prints the conservation report of an LRP analyzer
  (where relevance is absorbed, layer by layer) and writes its plot.

Images are read with Pillow, converted to the model's channels (grey, RGB or RGBA) and scaled
from [0, 255] to ``--input-range`` (default 0 1). An image of another size than the model's
input is an error unless ``--resize`` is given. User errors (a missing file, a file that is
not an image, a wrong size, an unknown analyzer) print one line ``keras-isnet CMD: error: ...``
on stderr and return exit status 2.

Example:
    $ keras-isnet explain model.keras images/ --mask masks/ --analyzer lrp.epsilon --out out
    $ keras-isnet report model.keras images/cat.png --analyzer lrp.z --class 3
"""

from __future__ import annotations

import argparse
import ast
import csv
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["CLIError", "main"]

#: file name extensions read as images from a directory.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")

_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


class CLIError(Exception):
    """A user error: printed as one line on stderr, exit status 2."""


# ------------------------------------------------------------------ argument parsing
def _param(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE a Python literal (``0.01``, ``False``, ``(0, 1)``) or a string."""
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "model", help="the saved Keras model (.keras or .h5); an ISNet explains its classifier"
    )
    p.add_argument(
        "--analyzer",
        default="lrp.epsilon",
        help="analyzer name, as for ki.create_analyzer (default: %(default)s)",
    )
    p.add_argument(
        "--param",
        action="append",
        type=_param,
        default=[],
        metavar="KEY=VALUE",
        help="an analyzer option, repeatable: --param epsilon=0.01 --param bias=False",
    )
    p.add_argument(
        "--class",
        dest="class_index",
        type=int,
        default=None,
        metavar="N",
        help="explain class N (default: each image's predicted class)",
    )
    p.add_argument(
        "--resize",
        action="store_true",
        help="resize images (bilinear) and masks (nearest) to the model's input size "
        "instead of refusing other sizes",
    )
    p.add_argument(
        "--input-range",
        nargs=2,
        type=float,
        default=(0.0, 1.0),
        metavar=("LOW", "HIGH"),
        help="pixel values 0..255 are mapped linearly onto [LOW, HIGH] (default: 0 1)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``keras-isnet`` (subcommands ``demo``, ``explain``, ``report``).

    Returns:
        An ``argparse.ArgumentParser``; ``demo``'s own options are parsed by the demo.

    Example:
        >>> build_parser().parse_args(["explain", "m.keras", "a.png"]).analyzer
        'lrp.epsilon'
    """
    parser = argparse.ArgumentParser(
        prog="keras-isnet",
        description="LRP heatmaps and ISNet training for Keras 3.",
    )
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    sub.add_parser(
        "demo",
        help="run the biased-MNIST benchmark (python -m keras_isnet.demo; "
        "keras-isnet demo --help lists its options)",
        add_help=False,
    )
    explain = sub.add_parser(
        "explain",
        help="heatmap PNG, relevance .npy and a CSV of predictions for images",
        description="Explain images with an analyzer: writes <name>_heatmap.png (input, "
        "heatmap, overlay), <name>_relevance.npy ((H, W, C) float32) per image and "
        "explanations.csv (predicted class, its probability, the explained class, the "
        "relevance sum and, with --mask, the background share).",
    )
    _common(explain)
    explain.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR", help="image files or folders")
    explain.add_argument(
        "--mask",
        default=None,
        metavar="MASK_OR_DIR",
        help="a foreground mask (white = foreground) for every image, or a folder with one "
        "mask per image under the image's name (or NAME_mask)",
    )
    explain.add_argument(
        "--out", default="explanations", help="output folder (default: %(default)s)"
    )
    explain.add_argument(
        "--percentile",
        type=float,
        default=99.5,
        help="clip the colour scale at this percentile of |R| (default: %(default)s)",
    )
    explain.add_argument(
        "--alpha", type=float, default=0.8, help="overlay opacity (default: %(default)s)"
    )
    explain.add_argument(
        "--batch-size", type=int, default=32, help="images per analyzer call (default: %(default)s)"
    )
    explain.set_defaults(func=explain_command)
    report = sub.add_parser(
        "report",
        help="print an LRP analyzer's conservation report for an image and plot it",
        description="Print where an LRP analyzer's relevance goes, layer by layer "
        "(ki.conservation_report), and write the plot <name>_conservation.png.",
    )
    _common(report)
    report.add_argument("image", help="an image file")
    report.add_argument("--out", default=".", help="folder for the plot (default: %(default)s)")
    report.add_argument(
        "--threshold",
        type=float,
        default=0.01,
        help="flag layers absorbing more than this share (default: %(default)s)",
    )
    report.set_defaults(func=report_command)
    return parser


# ------------------------------------------------------------------ files
def load_model(path: str | Path):
    """Load a saved Keras model for explaining (an ISNet gives its classifier).

    Args:
        path: a ``.keras`` (or legacy ``.h5``) file.

    Returns:
        The ``keras.Model``.

    Raises:
        CLIError: the file is missing or Keras cannot load it.

    Example:
        >>> model = load_model("classifier.keras")
    """
    path = Path(path)
    if not path.is_file():
        raise CLIError(f"model file not found: {path}")
    import keras

    import keras_isnet  # noqa: F401 - registers the ISNet for deserialisation

    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as err:  # noqa: BLE001 - any load failure is the user's file
        raise CLIError(f"could not load the model {path}: {err}") from err
    model = getattr(model, "classifier", model)
    if not isinstance(getattr(model, "input_shape", None), tuple) or len(model.input_shape) != 4:
        raise CLIError(
            f"the model {path} must take one image batch (batch, H, W, C); its input shape is "
            f"{getattr(model, 'input_shape', None)}"
        )
    return model


def collect_images(paths: Sequence[str | Path]) -> list[Path]:
    """Image files from files and folders (a folder's images sorted by name, not recursive).

    Raises:
        CLIError: a path that does not exist or a folder without images.

    Example:
        >>> collect_images(["a.png", "more_images/"])
    """
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise CLIError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {p}")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise CLIError(f"no such file or folder: {p}")
    return files


def _open(path: Path, mode: str, what: str = "image"):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            return img.convert(mode)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise CLIError(f"{path} is not an {what} file Pillow can read ({err})") from err


def _fit_size(img, path: Path, size, resize: bool, resample, what: str):
    height, width = size
    if height is None or width is None or img.size == (width, height):
        return img
    if not resize:
        raise CLIError(
            f"{what} {path} is {img.size[0]}x{img.size[1]} pixels but the model takes "
            f"{width}x{height}; pass --resize to resize it"
        )
    return img.resize((width, height), resample)


def read_image(
    path: str | Path,
    input_shape: tuple,
    *,
    resize: bool = False,
    input_range: tuple[float, float] = (0.0, 1.0),
) -> np.ndarray:
    """Read an image file as a model input.

    Args:
        path: the image file.
        input_shape: the model's input shape ``(batch, H, W, C)``; C must be 1, 3 or 4 and
            H, W may be None (any size).
        resize: resize (bilinear) to ``(H, W)`` instead of raising for another size.
        input_range: pixel values 0..255 map linearly onto ``[low, high]`` (default [0, 1]).

    Returns:
        A float32 array ``(H, W, C)``.

    Raises:
        CLIError: not an image, the wrong size without ``resize``, an unsupported C.

    Example:
        >>> x = read_image("digit.png", model.input_shape)
    """
    from PIL import Image

    path = Path(path)
    channels = input_shape[-1]
    if channels not in _MODES:
        raise CLIError(f"the model takes {channels} channels; images need 1, 3 or 4")
    img = _fit_size(
        _open(path, _MODES[channels]), path, input_shape[1:3], resize, Image.BILINEAR, "image"
    )
    arr = np.asarray(img, dtype=np.float32).reshape(img.size[1], img.size[0], channels)
    low, high = map(float, input_range)
    return (low + arr / 255.0 * (high - low)).astype(np.float32)


def read_mask(path: str | Path, size: tuple[int, int], *, resize: bool = False) -> np.ndarray:
    """Read a foreground mask (grey values >= 128 are foreground).

    Args:
        path: the mask image.
        size: the ``(H, W)`` it must have.
        resize: resize (nearest neighbour) instead of raising for another size.

    Returns:
        A float32 array ``(H, W)`` of 0 and 1.

    Example:
        >>> m = read_mask("digit_mask.png", (28, 28))
    """
    from PIL import Image

    path = Path(path)
    img = _fit_size(_open(path, "L", "image (mask)"), path, size, resize, Image.NEAREST, "mask")
    return (np.asarray(img) >= 128).astype(np.float32)


def _mask_for(mask_arg: Path, image: Path) -> Path:
    if mask_arg.is_file():
        return mask_arg
    for stem in (image.stem, f"{image.stem}_mask"):
        for f in sorted(mask_arg.glob(f"{stem}.*")):
            if f.suffix.lower() in IMAGE_EXTENSIONS:
                return f
    raise CLIError(f"no mask for {image.name} in {mask_arg} (expected {image.stem}.png or similar)")


def _unique_stems(files: Sequence[Path]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for f in files:
        n = seen.get(f.stem, 0)
        seen[f.stem] = n + 1
        out.append(f.stem if n == 0 else f"{f.stem}-{n + 1}")
    return out


# ------------------------------------------------------------------ model helpers
def probabilities(model, outputs: np.ndarray) -> np.ndarray:
    """Class probabilities of a classifier's outputs ``(batch, K)``.

    A final softmax (or sigmoid) in the model means the outputs are probabilities already;
    otherwise they are logits and get a softmax (a sigmoid for ``K == 1``).

    Example:
        >>> probabilities(model, model.predict(x))
    """
    from keras_isnet.output_activation import model_wo_output_activation

    for activation in ("softmax", "sigmoid"):
        try:
            model_wo_output_activation(model, activation)
        except ValueError:
            continue
        return outputs
    if outputs.shape[-1] == 1:
        return 1.0 / (1.0 + np.exp(-outputs))
    z = outputs - outputs.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _analyzer(args, model):
    from keras_isnet.analyzers import create_analyzer

    params = dict(args.param)
    params.setdefault("neuron_selection_mode", "index")
    try:
        return create_analyzer(args.analyzer, model, **params)
    except KeyError as err:
        raise CLIError(err.args[0] if err.args else str(err)) from err
    except (TypeError, ValueError) as err:
        raise CLIError(f"cannot create analyzer {args.analyzer!r}: {err}") from err


def _classes(args, outputs: np.ndarray) -> np.ndarray:
    k = outputs.shape[-1]
    if args.class_index is None:
        return outputs.argmax(axis=-1)
    if not 0 <= args.class_index < k:
        raise CLIError(f"--class {args.class_index} is not a class of this model (0..{k - 1})")
    return np.full(len(outputs), args.class_index)


def _outputs(model, x: np.ndarray) -> np.ndarray:
    outputs = np.asarray(model.predict(x, verbose=0))
    if outputs.ndim != 2:
        raise CLIError(
            f"explain and report need a classifier with outputs (batch, classes); this model's "
            f"outputs have shape {outputs.shape[1:]} per image"
        )
    return outputs


# ------------------------------------------------------------------ commands
def _figure(path: Path, image, heatmap, mask, title: str, percentile, alpha) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from keras_isnet import plot

    fig = Figure(figsize=(7.8, 2.9), dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    plot.image(image, ax=axes[0], mask=mask, title="input")
    plot.heatmap(heatmap, ax=axes[1], percentile=percentile, mask=mask, colorbar=True)
    axes[1].set_title("heatmap (red = for, blue = against)", fontsize=8)
    plot.overlay(image, heatmap, ax=axes[2], alpha=alpha, percentile=percentile, mask=mask)
    axes[2].set_title("overlay", fontsize=9)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    plot.save(fig, path)


def explain_command(args) -> int:
    """``keras-isnet explain``: see :func:`build_parser` and the module docstring."""
    files = collect_images(args.images)
    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be positive, got {args.batch_size}")
    if not 0.0 <= args.alpha <= 1.0:
        raise CLIError(f"--alpha must lie in [0, 1], got {args.alpha}")
    mask_arg = None if args.mask is None else Path(args.mask)
    if mask_arg is not None and not mask_arg.exists():
        raise CLIError(f"no such mask file or folder: {mask_arg}")
    model = load_model(args.model)
    images = [
        read_image(f, model.input_shape, resize=args.resize, input_range=args.input_range)
        for f in files
    ]
    masks = None
    if mask_arg is not None:
        masks = [
            read_mask(_mask_for(mask_arg, f), img.shape[:2], resize=args.resize)
            for f, img in zip(files, images, strict=True)
        ]
    sizes = {img.shape for img in images}
    if len(sizes) > 1:
        raise CLIError(
            f"the images have different sizes {sorted(s[:2] for s in sizes)}; the model takes "
            "any size, so pass images of one size (or a model with a fixed input size and --resize)"
        )
    x = np.stack(images)
    analyzer = _analyzer(args, model)
    outputs = _outputs(model, x)
    probs = probabilities(model, outputs)
    predicted = outputs.argmax(axis=-1)
    classes = _classes(args, outputs)
    heatmaps = np.concatenate(
        [
            np.asarray(
                analyzer.analyze(
                    x[i : i + args.batch_size], neuron_selection=classes[i : i + args.batch_size]
                )
            )
            for i in range(0, len(x), args.batch_size)
        ]
    )
    shares = None
    if masks is not None:
        from keras_isnet.metrics import background_relevance_share

        shares = background_relevance_share(heatmaps, np.stack(masks))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (f, stem) in enumerate(zip(files, _unique_stems(files), strict=True)):
        npy, png = out / f"{stem}_relevance.npy", out / f"{stem}_heatmap.png"
        np.save(npy, heatmaps[i].astype(np.float32))
        title = (
            f"{f.name}: {args.analyzer}, class {classes[i]} (predicted {predicted[i]}, "
            f"p = {probs[i, predicted[i]]:.3f})"
        )
        if shares is not None:
            title += f", background share {shares[i]:.3f}"
        _figure(
            png,
            x[i],
            heatmaps[i],
            None if masks is None else masks[i],
            title,
            args.percentile,
            args.alpha,
        )
        row = {
            "image": str(f),
            "predicted_class": int(predicted[i]),
            "probability": f"{probs[i, predicted[i]]:.6g}",
            "explained_class": int(classes[i]),
            "explained_probability": f"{probs[i, classes[i]]:.6g}",
            "relevance_sum": f"{float(heatmaps[i].sum(dtype=np.float64)):.6g}",
        }
        if shares is not None:
            row["background_share"] = f"{shares[i]:.6g}"
        row.update({"heatmap_png": png.name, "relevance_npy": npy.name})
        rows.append(row)
    with (out / "explanations.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"explained {len(rows)} image(s) with {args.analyzer}: {out / 'explanations.csv'}")
    return 0


def report_command(args) -> int:
    """``keras-isnet report``: see :func:`build_parser` and the module docstring."""
    from keras_isnet.conservation import conservation_report

    image = Path(args.image)
    if not image.is_file():
        raise CLIError(f"no such image file: {image}")
    model = load_model(args.model)
    x = read_image(image, model.input_shape, resize=args.resize, input_range=args.input_range)[None]
    analyzer = _analyzer(args, model)
    outputs = _outputs(model, x)
    cls = int(_classes(args, outputs)[0])
    try:
        report = conservation_report(analyzer, x, neuron_selection=cls, threshold=args.threshold)
    except (TypeError, ValueError) as err:
        raise CLIError(str(err)) from err
    print(f"{image.name}: class {cls} (predicted {int(outputs[0].argmax())})")
    print(report.to_text())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{image.stem}_conservation.png"
    report.plot(path)
    print(f"wrote {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``keras-isnet <command> [options]``; returns the exit status.

    Args:
        argv: the arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        0 on success, 2 for a usage or input error (printed on stderr), the demo's status
        for ``demo``.

    Example:
        >>> main(["explain", "model.keras", "images/", "--out", "out"])
        0
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "demo":
        from keras_isnet.experiments import demo

        return demo.main(argv[1:])
    parser = build_parser()
    if not argv:
        parser.print_help(sys.stderr)
        return 2
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help (0) or a usage error (2, already printed)
        return int(exit_.code or 0)
    try:
        return args.func(args)
    except CLIError as err:
        print(f"keras-isnet {args.command}: error: {err}", file=sys.stderr)
        return 2
