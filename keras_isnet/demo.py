"""``python -m keras_isnet.demo``: the biased-MNIST benchmark (plain CNN vs ISNet).

The benchmark lives in :mod:`keras_isnet.experiments.demo`; this module is the short
command-line entry point and keeps the names importable from here.
"""

from __future__ import annotations

import sys

from keras_isnet.experiments.demo import *  # noqa: F403
from keras_isnet.experiments.demo import main

if __name__ == "__main__":
    sys.exit(main())
