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


@pytest.fixture(scope="module")
def round3_inputs(tmp_path_factory):
    """The configs, grids, searches, images and folders of round 3 of the bad-input corpus."""
    from round3_fixtures import write_round3_fixtures

    return write_round3_fixtures(tmp_path_factory.mktemp("round3-fixtures"))


@pytest.fixture(scope="module")
def round3_checkpoints(tmp_path_factory):
    """Round 3's PyTorch checkpoints and sidecar files (skips without the torch extra)."""
    from round3_fixtures import write_checkpoints

    return write_checkpoints(tmp_path_factory.mktemp("round3-pt") / "pt")
