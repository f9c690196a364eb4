"""``python -m keras_isnet`` is the command-line interface (see :mod:`keras_isnet.cli`)."""

import sys

from keras_isnet.cli import main

sys.exit(main())
