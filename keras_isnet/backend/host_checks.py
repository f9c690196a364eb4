"""The input checks of the ISNet's training step, on host (NumPy) values.

JAX runs the step as one compiled function and PyTorch runs it eagerly; neither has
TensorFlow's in-graph assertion, so their backends check the batch's values here, before any
state changes. The messages are the ones the TensorFlow checks give.
"""

from __future__ import annotations

import numpy as np


def short(bound) -> str:
    """A bound for a message: the number, or ``array of shape ...`` for arrays."""
    shape = getattr(bound, "shape", ())
    return f"array of shape {tuple(shape)}" if len(shape) else f"{float(bound):g}"


def binary_problem(x, what: str = "masks") -> str | None:
    """The error message if ``x`` holds a value other than 0 and 1, else None."""
    x = np.asarray(x)
    bad = (x != 0) & (x != 1)
    if not bad.any():
        return None
    return (
        f"Non-binary mask: {what} must hold only 0 (background) and 1 (foreground); "
        f"threshold soft masks first (e.g. masks > 0.5). Found the value {x[bad][:1]}"
    )


def finite_problem(x, what: str = "images", hint: str = "") -> str | None:
    """The error message if ``x`` holds NaN or inf, else None."""
    x = np.asarray(x)
    bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1) if x.ndim else ~np.isfinite(x)
    if not np.any(bad):
        return None
    return (
        f"{what} hold NaN or inf in {int(np.sum(bad))} sample(s) (first: sample "
        f"{int(np.argmax(bad))}). {hint}"
    ).strip()


def bounds_problem(x, low, high, what: str = "images", hint: str = "") -> str | None:
    """The error message if ``x`` leaves ``[low, high]`` by more than 1e-3 of the range (or
    holds NaN), else None."""
    x = np.asarray(x, dtype=np.float64)
    lo, hi = np.asarray(low, np.float64), np.asarray(high, np.float64)
    slack = 1e-3 * (hi - lo)
    if np.all(x >= lo - slack) and np.all(x <= hi + slack):
        return None
    return (
        f"{what} outside the bounds ({short(low)}, {short(high)}). {hint} Found values from "
        f"{np.nanmin(x) if np.isfinite(x).any() else np.nan} to "
        f"{np.nanmax(x) if np.isfinite(x).any() else np.nan}"
    )
