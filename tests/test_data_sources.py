"""Sources: the digits split, synthetic data, fingerprints, folders, load_source errors."""

import json
import re

import numpy as np
import pytest
from PIL import Image

from keras_cnns.data import DataError, SourceInfo, list_sources, load_source


def one_sentence(message: str) -> bool:
    return "\n" not in message and message.endswith(".") and not re.search(r"\.\s+[A-Z]", message)


@pytest.fixture(scope="module")
def digits():
    return load_source("digits")


def test_list_sources():
    names = list_sources()
    assert names[0] == "digits" and {"synthetic", "folder", "idx", "mnist"} <= set(names)


def test_digits_is_the_default_and_documented_split(digits):
    info = digits.info
    assert load_source().info == info  # the embedded default, identical on every load
    assert info.name == "digits" and info.class_names == tuple("0123456789")
    assert info.native_size == (8, 8) and info.channels == 1
    # 70 / 10 / 20 per class, rounded per class: the sizes documented in sources.py.
    assert info.split_sizes == {"train": 1259, "validation": 179, "test": 359}
    assert info.allow_horizontal_flip is False
    x, y = digits.arrays("train")
    assert x.dtype == np.uint8 and x.shape == (1259, 8, 8, 1) and y.dtype == np.int64
    assert x.max() == 255 and x.min() == 0
    assert not x.flags.writeable


def test_digits_split_is_stratified_and_disjoint(digits):
    from sklearn.datasets import load_digits

    totals = np.bincount(load_digits().target)
    seen = []
    for split, fraction in (("train", 0.7), ("validation", 0.1), ("test", 0.2)):
        x, y = digits.arrays(split)
        counts = np.bincount(y, minlength=10)
        assert np.all(np.abs(counts - fraction * totals) <= 1), split
        seen.append(x.reshape(len(x), -1))
    everything = np.concatenate(seen)
    assert len(everything) == 1797
    # Every image lands in exactly one split (the few duplicate digits aside).
    assert len({r.tobytes() for r in everything}) == len({r.tobytes() for r in
                                                          load_digits().images.reshape(1797, -1)})


def test_digits_split_ignores_the_run_seed_unless_asked(digits):
    a = load_source("digits", seed_independent_split=False, split_seed=1)
    b = load_source("digits", seed_independent_split=False, split_seed=1)
    assert a.info.fingerprint == b.info.fingerprint != digits.info.fingerprint
    assert a.info.split_sizes == digits.info.split_sizes
    with pytest.raises(DataError, match="seed_independent_split"):
        load_source("digits", split_seed=1)


def test_info_to_dict_is_json_ready(digits):
    d = digits.info.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert set(d) == set(SourceInfo.__dataclass_fields__)
    assert re.fullmatch(r"[0-9a-f]{64}", d["fingerprint"])
    assert 0 < d["mean"][0] < 1 and 0 < d["std"][0] < 1


def test_mean_std_come_from_train_on_the_unit_scale(digits):
    x = digits.arrays("train")[0] / 255.0
    assert digits.info.mean[0] == pytest.approx(x.mean(), abs=1e-9)
    assert digits.info.std[0] == pytest.approx(x.std(), abs=1e-9)


def test_synthetic_is_deterministic_and_configurable():
    a = load_source("synthetic", num_classes=4, image_size=(12, 10), channels=3, train_size=40,
                    validation_size=8, test_size=12)
    b = load_source("synthetic", num_classes=4, image_size=(12, 10), channels=3, train_size=40,
                    validation_size=8, test_size=12)
    c = load_source("synthetic", num_classes=4, image_size=(12, 10), channels=3, train_size=40,
                    validation_size=8, test_size=12, seed=1)
    assert a.info == b.info and a.info.fingerprint != c.info.fingerprint
    assert a.info.native_size == (12, 10) and a.info.channels == 3 and a.info.num_classes == 4
    assert a.info.split_sizes == {"train": 40, "validation": 8, "test": 12}
    np.testing.assert_array_equal(a.arrays("test")[0], b.arrays("test")[0])
    assert np.bincount(a.arrays("train")[1]).tolist() == [10] * 4


def test_unknown_options_and_splits_are_data_errors(digits):
    with pytest.raises(DataError, match="does not take") as err:
        load_source("synthetic", colour=True)
    assert one_sentence(str(err.value))
    with pytest.raises(DataError, match="Unknown split"):
        digits.arrays("holdout")
    with pytest.raises(DataError, match="Unknown dataset") as err:
        load_source("no_such_dataset_anywhere")
    assert one_sentence(str(err.value))


def write_png_tree(root, classes, per_class, *, size=(9, 7), mode="L", seed=0):
    """PNG images under root/<class>/; returns {class: [arrays in file-name order]}."""
    rng = np.random.default_rng(seed)
    written = {}
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        written[name] = []
        for i in range(per_class):
            shape = size if mode == "L" else (*size, 3)
            pixels = rng.integers(0, 256, shape, dtype=np.uint8)
            Image.fromarray(pixels, mode).save(root / name / f"img_{i:03d}.png")
            written[name].append(pixels)
    return written


def test_grey_folder(tmp_path):
    written = write_png_tree(tmp_path / "shapes", ["circle", "square", "triangle"], 10)
    source = load_source("folder", data_dir=str(tmp_path / "shapes"))
    info = source.info
    assert info.name == "folder:shapes" and info.class_names == ("circle", "square", "triangle")
    assert info.channels == 1 and info.native_size == (9, 7)
    assert info.split_sizes == {"train": 21, "validation": 3, "test": 6}
    assert info.allow_horizontal_flip is False
    x, y = source.arrays("test")
    assert x.shape == (6, 9, 7, 1) and np.bincount(y).tolist() == [2, 2, 2]
    pool = {a.tobytes() for images in written.values() for a in images}
    assert all(img[..., 0].tobytes() in pool for img in x)
    again = load_source("folder", data_dir=str(tmp_path / "shapes"))
    assert again.info.fingerprint == info.fingerprint


def test_colour_folder_with_split_subfolders(tmp_path):
    write_png_tree(tmp_path / "train", ["cat", "dog"], 10, mode="RGB", size=(6, 6))
    test = write_png_tree(tmp_path / "test", ["cat", "dog"], 3, mode="RGB", size=(6, 6), seed=1)
    # One grey image among colour ones: the folder is colour, the grey image is converted.
    Image.fromarray(np.full((6, 6), 77, np.uint8), "L").save(tmp_path / "test" / "dog" / "g.png")
    source = load_source("folder", data_dir=str(tmp_path))
    info = source.info
    assert info.channels == 3 and info.allow_horizontal_flip is True
    assert info.split_sizes == {"train": 18, "validation": 2, "test": 7}
    x, y = source.arrays("test")
    np.testing.assert_array_equal(x[0], test["cat"][0])
    np.testing.assert_array_equal(x[3], np.full((6, 6, 3), 77, np.uint8))  # dog/g.png sorts first
    assert y.tolist() == [0, 0, 0, 1, 1, 1, 1]


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match="needs --data-dir"):
        load_source("folder")
    write_png_tree(tmp_path / "a", ["x", "y"], 5)
    (tmp_path / "a" / "z").mkdir()
    with pytest.raises(DataError, match="holds no PNG or JPEG") as err:
        load_source("folder", str(tmp_path / "a"))
    assert one_sentence(str(err.value))
    write_png_tree(tmp_path / "b", ["x", "y"], 5)
    write_png_tree(tmp_path / "b", ["y"], 1, size=(4, 4), seed=3)
    (tmp_path / "b" / "y" / "img_000.png").unlink()
    write_png_tree(tmp_path / "b2", ["y"], 1, size=(4, 4))
    (tmp_path / "b2" / "y" / "img_000.png").rename(tmp_path / "b" / "y" / "small.png")
    # Mixed sizes: resized to the most common one (the pipeline resizes to the model's anyway).
    assert load_source("folder", str(tmp_path / "b")).info.native_size == (9, 7)
    resized = load_source("folder", str(tmp_path / "b"), image_size=5)
    assert resized.info.native_size == (5, 5)
    write_png_tree(tmp_path / "c", ["x", "y"], 5)
    (tmp_path / "c" / "x" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="not a readable") as err:
        load_source("folder", str(tmp_path / "c"))
    assert one_sentence(str(err.value))


@pytest.mark.parametrize("name, folder", [("cifar10", "."), ("cifar10", "cifar10"),
                                          ("cifar100/coarse", "."), ("my_tfds_set", ".")])
def test_idx_files_do_not_train_under_a_name_they_are_not(tmp_path, name, folder):
    """The IDX files in --data-dir (directly or in a <name> subfolder) once trained as
    Fashion-MNIST under whatever --dataset said."""
    from test_data_idx import write_mnist_like

    from keras_cnns.data.sources import check_source

    write_mnist_like(tmp_path / folder, gz=False)
    with pytest.raises(DataError, match="is not an IDX data set") as refused:
        load_source(name, data_dir=str(tmp_path))
    assert one_sentence(str(refused.value)), refused.value
    if folder == ".":
        for idx_name in ("idx", "mnist", "fashion-mnist", "emnist"):
            assert check_source(idx_name, str(tmp_path)) == idx_name.replace("-", "_")


def test_sources_that_need_files_are_refused_before_any_is_read(tmp_path):
    from keras_cnns.data.sources import check_source

    for name, says in (("folder", "class subfolders"), ("idx", "IDX files")):
        with pytest.raises(DataError, match=says):
            check_source(name, None)
    with pytest.raises(DataError, match="IDX files"):
        check_source("idx", str(tmp_path))
