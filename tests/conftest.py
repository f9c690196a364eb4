import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

# CI is a function of the commit: under CI (the variable is set there), hypothesis draws its
# examples from a fixed seed (derandomize) and keeps no example database between runs. Local
# runs stay random and keep the database, so new counter-examples are still found.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Each test starts with a clean Keras name space and a fixed seed.

    ``free_memory=False`` skips a full garbage collection that costs ~0.25 s per test.
    """
    keras.backend.clear_session(free_memory=False)
    keras.utils.set_random_seed(0)
    np.random.seed(0)
    yield
