"""Where :class:`HeatmapCallback` writes: TensorBoard event files or PNG files.

* ``"tf"``: ``tf.summary`` (TensorFlow backend; ``tf.summary.image`` needs the tensorboard
  package since TensorFlow 2.21);
* ``"tensorboard"``: the tensorboard package's event-file writer with image and scalar
  protos, no TensorFlow needed (JAX and PyTorch backends);
* ``"png"``: one PNG per tag and step (``<tag>_step0003.png``, the images side by side) and
  the scalars in ``scalars.csv``, for machines without tensorboard.

TensorFlow and tensorboard are imported only when a writer is created.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import re
from pathlib import Path

import numpy as np

WRITERS = ("auto", "tf", "tensorboard", "png")


def resolve_writer(kind: str) -> str:
    """The writer ``"auto"`` stands for here: tf.summary on TensorFlow, else tensorboard's
    own writer, else PNG files (tensorboard missing)."""
    if kind not in WRITERS:
        raise ValueError(f"`writer` must be one of {WRITERS}; got {kind!r}.")
    if kind != "auto":
        return kind
    import keras

    has_tensorboard = importlib.util.find_spec("tensorboard") is not None
    if keras.backend.backend() == "tensorflow" and has_tensorboard:
        return "tf"
    return "tensorboard" if has_tensorboard else "png"


def create_writer(kind: str, log_dir: str | Path):
    kind = resolve_writer(kind)
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    return {"tf": _TFWriter, "tensorboard": _TensorBoardWriter, "png": _PNGWriter}[kind](log_dir)


def _uint8(images: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(images, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def png_bytes(image: np.ndarray) -> bytes:
    """PNG encoding of one ``(H, W, 3)`` image in [0, 1] (Pillow)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(_uint8(image)).save(buffer, format="PNG")
    return buffer.getvalue()


class _TFWriter:
    kind = "tf"

    def __init__(self, log_dir):
        import tensorflow as tf

        self._tf = tf
        self._writer = tf.summary.create_file_writer(str(log_dir))

    def images(self, tag: str, images: np.ndarray, step: int) -> None:
        with self._writer.as_default():
            self._tf.summary.image(tag, _uint8(images), step=step, max_outputs=len(images))

    def scalar(self, tag: str, value: float, step: int) -> None:
        with self._writer.as_default():
            self._tf.summary.scalar(tag, float(value), step=step)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class _TensorBoardWriter:
    """Event files without TensorFlow, as ``torch.utils.tensorboard`` writes them."""

    kind = "tensorboard"

    def __init__(self, log_dir):
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self._event_pb2, self._summary_pb2 = event_pb2, summary_pb2
        self._writer = EventFileWriter(str(log_dir))

    def _add(self, value, step: int) -> None:
        import time

        summary = self._summary_pb2.Summary(value=[value])
        self._writer.add_event(
            self._event_pb2.Event(summary=summary, step=int(step), wall_time=time.time())
        )

    def images(self, tag: str, images: np.ndarray, step: int) -> None:
        s = self._summary_pb2
        for i, image in enumerate(images):
            h, w = image.shape[:2]
            encoded = s.Summary.Image(
                height=h, width=w, colorspace=3, encoded_image_string=png_bytes(image)
            )
            self._add(s.Summary.Value(tag=f"{tag}/image/{i}", image=encoded), step)

    def scalar(self, tag: str, value: float, step: int) -> None:
        self._add(self._summary_pb2.Summary.Value(tag=tag, simple_value=float(value)), step)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class _PNGWriter:
    kind = "png"

    def __init__(self, log_dir):
        self.dir = Path(log_dir)

    def images(self, tag: str, images: np.ndarray, step: int) -> None:
        from PIL import Image

        gap = np.ones((images.shape[1], 2, 3))
        strip = np.concatenate([part for image in images for part in (image, gap)][:-1], axis=1)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", tag)
        Image.fromarray(_uint8(strip)).save(self.dir / f"{name}_step{int(step):04d}.png")

    def scalar(self, tag: str, value: float, step: int) -> None:
        path = self.dir / "scalars.csv"
        new = not path.exists()
        with path.open("a", newline="") as f:
            out = csv.writer(f)
            if new:
                out.writerow(["step", "tag", "value"])
            out.writerow([int(step), tag, repr(float(value))])

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass
