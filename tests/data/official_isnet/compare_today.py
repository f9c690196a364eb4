"""keras-isnet as it is today against the official ISNet reference arrays.

For every network, BN mode, dtype and case of the arrays, the script builds the Keras twin
of the network with the transferred weights (``tests/official_reference.py``), computes
keras-isnet's ``ISNetHeatmaps`` heatmaps for the case's variant (the stochastic variant with
the official draw's classes forced), the heatmap loss with the official settings of the
implementation, the ISNet loss ``(1 - P) CE + P L_heat`` and its weight gradients, and
prints the relative error of each against the official numbers:

    ``err(a, ref) = max |a - ref| / max |ref|``  (per array; for the gradients the largest
    over the weights, with the weight named).

It compares; it asserts nothing (``tests/test_official_reference.py`` asserts).

Usage::

    python tests/data/official_isnet/compare_today.py [--dtype float64] [--network cnn ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import keras  # noqa: E402
from official_reference import (  # noqa: E402
    CASES,
    NETWORKS,
    gradient_floor,
    keras_numbers,
    load_case,
    rel_err,
)


def compare(network: str, case: str, dtype: str, bn_training: bool) -> dict:
    """The relative errors of one case (see the module docstring)."""
    model, x, labels, masks, expected = load_case(network, case, dtype, bn_training)
    got = keras_numbers(model, x, labels, masks, expected)
    row = {
        "logits": rel_err(got["logits"], expected["logits"]),
        "heatmaps": rel_err(got["heatmaps"], expected["heatmaps"]),
        "heatmap_loss": rel_err(got["heatmap_loss"], expected["heatmap_loss"]),
        "total_loss": rel_err(got["total_loss"], expected["total_loss"]),
    }
    for tag in ("grad_total", "grad_heatmap"):
        top = max(float(np.max(np.abs(v))) for v in expected[tag].values())
        errs = {
            k: rel_err(got[tag][k], v, gradient_floor(v, top)) for k, v in expected[tag].items()
        }
        worst = max(errs, key=errs.get)
        row[tag] = errs[worst]
        row[tag + "_worst"] = worst
    return row


def main(argv: list[str] | None = None) -> int:
    """Print the table of relative errors."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    parser.add_argument("--network", nargs="*", choices=NETWORKS, default=list(NETWORKS))
    parser.add_argument("--case", nargs="*", choices=CASES, default=list(CASES))
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    header = (
        f"| {'network':14} | {'case':24} | logits  | heatmaps | L_heat  | L_total | "
        "grad total (worst weight)      | grad L_heat (worst weight)     |"
    )
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for network in args.network:
        for bn_training in (False, True) if network != "cnn" else (False,):
            label = network + (" (train)" if bn_training else "")
            for case in args.case:
                r = compare(network, case, args.dtype, bn_training)
                gt = f"{r['grad_total']:.1e} ({r['grad_total_worst']})"
                gh = f"{r['grad_heatmap']:.1e} ({r['grad_heatmap_worst']})"
                print(
                    f"| {label:14} | {case:24} | {r['logits']:.1e} | {r['heatmaps']:.1e}  | "
                    f"{r['heatmap_loss']:.1e} | {r['total_loss']:.1e} | {gt:30} | {gh:30} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
