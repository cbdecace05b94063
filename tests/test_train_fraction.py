"""`train_fraction`: a stratified, seeded, nested share of the training split (the ablation's
data-scale axis, `--train-fraction` in train.py), validated, part of the run's identity and
recorded in its manifest."""

import numpy as np
import pytest

from keras_cnns.config import ConfigError, RunConfig
from keras_cnns.data import load_source, subset_training_split
from keras_cnns.data.subset import subset_indices, subset_size


@pytest.fixture(scope="module")
def digits():
    return load_source("digits")


def test_subset_is_stratified_seeded_and_nested(digits):
    labels = digits.arrays("train")[1]
    small = subset_indices(labels, 0.05, seed=0)
    large = subset_indices(labels, 0.25, seed=0)
    per_class = np.bincount(labels[small], minlength=10)
    assert per_class.min() >= 1 and per_class.max() - per_class.min() <= 1
    assert len(large) == subset_size(labels, 0.25)
    assert set(small) <= set(large)  # more data adds images, never swaps them
    assert np.array_equal(small, subset_indices(labels, 0.05, seed=0))
    assert not np.array_equal(small, subset_indices(labels, 0.05, seed=1))
    assert len(subset_indices(labels[:10], 0.01, seed=0)) == len(np.unique(labels[:10]))


def test_subset_changes_the_training_split_only(digits):
    smaller = subset_training_split(digits, 0.25, seed=3)
    assert smaller.info.split_sizes["train"] == subset_size(digits.arrays("train")[1], 0.25)
    for split in ("validation", "test"):
        assert smaller.arrays(split)[0] is digits.arrays(split)[0]
        assert smaller.info.split_sizes[split] == digits.info.split_sizes[split]
    # The whole split's normalisation, so the run is scored as evaluate.py and exports score it.
    assert (smaller.info.mean, smaller.info.std) == (digits.info.mean, digits.info.std)
    assert smaller.info.fingerprint != digits.info.fingerprint
    assert subset_training_split(digits, 1.0, seed=3) is digits


def test_train_fraction_is_validated_and_part_of_the_identity():
    for bad in (0, -0.5, 1.5, "half", float("nan")):
        with pytest.raises(ConfigError, match="train_fraction"):
            RunConfig(train_fraction=bad)
    whole = RunConfig(model="lenet")
    assert RunConfig(model="lenet", train_fraction=0.5).identity() != whole.identity()
    assert RunConfig(model="lenet", train_fraction=1).identity() == whole.identity()


def test_train_fraction_flag():
    from keras_cnns.commands.flags import parse_config

    config, _ = parse_config(["--model", "lenet", "--train-fraction", "0.25"])
    assert config.train_fraction == 0.25
    with pytest.raises(SystemExit) as exit_info:
        parse_config(["--model", "lenet", "--train-fraction", "2"])
    assert exit_info.value.code == 2


@pytest.mark.slow
def test_the_trainer_trains_on_the_fraction_and_records_it(tmp_path, digits):
    from keras_cnns.export import read_manifest
    from keras_cnns.training import train

    config = RunConfig(
        model="lenet", image_size=16, epochs=1, warmup_epochs=0, train_fraction=0.05,
        run_dir=str(tmp_path / "runs"), output=str(tmp_path / "export"),
    )
    result = train(config, verbose=0)
    manifest = read_manifest(result.export_dir)
    assert manifest["config"]["train_fraction"] == 0.05
    sizes = manifest["dataset"]["split_sizes"]
    assert sizes["train"] == subset_size(digits.arrays("train")[1], 0.05)
    assert sizes["test"] == digits.info.split_sizes["test"]
