"""TFDS: an unprepared data_dir fails fast and clearly; a prepared tree is read offline."""

import re
import shutil
import threading

import numpy as np
import pytest

from keras_cnns.data import DataError, load_source, tfds_source

tfds = pytest.importorskip("tensorflow_datasets")


def one_sentence(message: str) -> bool:
    return "\n" not in message and message.endswith(".") and not re.search(r"\.\s+[A-Z]", message)


class KerasCnnsTinyShapes(tfds.core.GeneratorBasedBuilder):
    """A 2-class, 6x6 grey dataset with train and test splits, built offline by the test."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(6, 6, 1)),
                "label": tfds.features.ClassLabel(names=["dark", "light"]),
            }),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(0, 40), "test": self._generate_examples(1, 10)}

    def _generate_examples(self, seed, n):
        for i, (image, label) in enumerate(zip(*tiny_examples(seed, n), strict=True)):
            yield i, {"image": image, "label": int(label)}


def tiny_examples(seed, n):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = rng.integers(0, 128, (n, 6, 6, 1), dtype=np.uint8) + (labels * 127)[:, None, None,
                                                                                  None]
    return images.astype(np.uint8), labels


@pytest.fixture
def download_attempts(monkeypatch):
    """Every attempt to reach the network or to download, recorded and refused: offline, each of
    them retries for minutes."""
    attempts = []

    def refuse(what):
        def attempt(*args, **kwargs):
            attempts.append(what)
            raise OSError(f"{what} attempted in a test")
        return attempt

    monkeypatch.setattr(tfds, "load", refuse("tfds.load"))
    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare",
                        refuse("download_and_prepare"))
    monkeypatch.setattr(tfds.download.DownloadManager, "download", refuse("download"))
    monkeypatch.setattr(tfds_source, "network_available", refuse("network probe"))
    return attempts


@pytest.mark.parametrize("name", ["mnist", "cifar10", "fashion_mnist"])
def test_unprepared_data_dir_fails_fast_and_clearly(tmp_path, name, download_attempts):
    with pytest.raises(DataError) as err:
        load_source(name, data_dir=str(tmp_path))
    assert download_attempts == []
    message = str(err.value)
    assert one_sentence(message)
    assert f"tfds build {name}" in message and str(tmp_path) in message and "IDX" in message


def test_download_without_network_fails_fast(tmp_path, monkeypatch, download_attempts):
    # Never probe the real network from a test: pretend it is down.
    monkeypatch.setattr(tfds_source, "network_available", lambda *a, **k: False)
    with pytest.raises(DataError, match="no network") as err:
        load_source("mnist", data_dir=str(tmp_path), download=True)
    assert download_attempts == [] and one_sentence(str(err.value))


def test_network_probe_does_not_wait_for_a_hanging_connection(monkeypatch):
    """DNS ignores socket timeouts: the probe must give up on a connection that never ends."""
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def hanging_connection(address, timeout=None):
        started.set()
        release.wait(10)
        finished.set()
        raise OSError("timed out")

    monkeypatch.setattr(tfds_source.socket, "create_connection", hanging_connection)
    try:
        assert tfds_source.network_available("unresolvable.invalid", timeout=0.1) is False
        assert started.wait(5) and not finished.is_set()  # it returned while the attempt hung
    finally:
        release.set()

    class Connection:
        def close(self):
            pass

    monkeypatch.setattr(tfds_source.socket, "create_connection", lambda *a, **k: Connection())
    assert tfds_source.network_available("reachable.invalid", timeout=5) is True


def test_namespaced_and_non_classification_names_are_refused(tmp_path):
    with pytest.raises(DataError, match="Namespaced"):
        load_source("huggingface:mnist", data_dir=str(tmp_path))
    with pytest.raises(DataError, match="not image classification"):
        load_source("glue/cola", data_dir=str(tmp_path))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A prepared TFDS tree, built offline once for this module."""
    root = tmp_path_factory.mktemp("tfds")
    KerasCnnsTinyShapes(data_dir=str(root)).download_and_prepare()
    return root


def test_prepared_tfds_tree_is_read_offline(prepared):
    tmp_path = prepared
    source = load_source("keras_cnns_tiny_shapes", data_dir=str(tmp_path))
    info = source.info
    assert info.name == "keras_cnns_tiny_shapes" and info.class_names == ("dark", "light")
    assert info.native_size == (6, 6) and info.channels == 1
    assert info.split_sizes == {"train": 36, "validation": 4, "test": 10}
    # TFDS stores examples in its own order: compare the test split as a multiset.
    x, y = source.arrays("test")
    want_x, want_y = tiny_examples(1, 10)
    got = sorted((img.tobytes(), int(label)) for img, label in zip(x, y, strict=True))
    want = sorted((img.tobytes(), int(label)) for img, label in zip(want_x, want_y, strict=True))
    assert got == want
    again = load_source("keras_cnns_tiny_shapes", data_dir=str(tmp_path))
    assert again.info.fingerprint == info.fingerprint


def test_damaged_tfds_tree_is_a_data_error(prepared, tmp_path):
    shutil.copytree(prepared, tmp_path / "copy")
    records = sorted((tmp_path / "copy").rglob("*test.tfrecord*"))
    assert records
    for record in records:
        record.write_bytes(record.read_bytes()[:40])
    with pytest.raises(DataError, match="could not be read") as err:
        load_source("keras_cnns_tiny_shapes", data_dir=str(tmp_path / "copy"))
    assert one_sentence(str(err.value))
