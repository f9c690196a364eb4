"""The ``keras-isnet`` command: ``keras-isnet demo [options]`` runs the biased-MNIST benchmark."""

from __future__ import annotations

import sys


def main(argv=None) -> int:
    """Dispatch ``keras-isnet <command> [options]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"demo": "run the biased-MNIST benchmark (python -m keras_isnet.demo)"}
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        print("usage: keras-isnet <command> [options]\n\ncommands:")
        for name, text in commands.items():
            print(f"  {name:8s} {text}")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    from keras_isnet.experiments import demo

    return demo.main(argv[1:])
