"""The demo's baselines, now in :mod:`keras_isnet.experiments.baselines`; kept importable here."""

from keras_isnet.experiments.baselines import *  # noqa: F403
