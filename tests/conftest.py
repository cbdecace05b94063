import os

# Quiet TensorFlow's C++ start-up chatter in test output; set before TF is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402


@pytest.fixture(scope="module")
def lenet_search(tmp_path_factory):
    """One finished two-trial LeNet search, shared by the tests that only read it."""
    from tuning_helpers import search

    from keras_cnns import tuning

    directory = tmp_path_factory.mktemp("lenet-search")
    result = search(directory)
    tuning.write_reports(result)
    return result
