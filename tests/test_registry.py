"""A model is one file: nothing outside keras_cnns/models/ and keras_cnns/reference/ names one.

Every tool (training, tuning, export, parity, benchmark, profile, conversion) takes model names
from `list_models()` and what it needs to know from the registry entry, so registering an
architecture in its own module is all it takes. This test greps the package and scripts/ for
registered names as whole words (`alexnet` does not match inside `alexnet2012`).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from extras import require

from keras_cnns.models import default_model, get_model_entry, list_models

ROOT = Path(__file__).resolve().parents[1]
ALLOWED_DIRS = ("keras_cnns/models/", "keras_cnns/reference/")
# Files that still name a model, with why; each should go (then delete its line here).
PENDING: dict[str, str] = {}
# The ablation study compares named networks by design (the seed's LeNet against AlexNet):
# its built-in grid is data about registered models, like a recipe. It could move into the
# model modules or a data file; until then the folder is exempt.
PENDING_DIRS = ("keras_cnns/ablation/",)


def _pattern(names):
    words = "|".join(sorted(map(re.escape, names), key=len, reverse=True))
    return re.compile(rf"(?<![\w.])({words})(?!\w)")


def _files():
    for folder in ("keras_cnns", "scripts"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), path


def test_pattern_tells_names_apart():
    pattern = _pattern(["alexnet", "alexnet2012", "lenet"])
    assert pattern.findall("alexnet2012 alexnet, --model lenet") == [
        "alexnet2012", "alexnet", "lenet"]
    assert not pattern.findall("alexnet_feature_size lenet5 keras_cnns.models.alexnet")


def test_no_tool_names_a_model():
    pattern = _pattern(list_models())
    found = {}
    for relative, path in _files():
        if relative.startswith(ALLOWED_DIRS + PENDING_DIRS) or relative in PENDING:
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if pattern.search(line):
                found.setdefault(relative, []).append(f"{number}: {line.strip()}")
    assert not found, (
        "model names outside keras_cnns/models/ and keras_cnns/reference/ (ask the registry "
        f"instead): {found}"
    )


def test_every_model_has_what_the_tools_need():
    for name in list_models():
        entry = get_model_entry(name)
        assert entry.torch_reference.startswith("keras_cnns.reference."), name
        assert entry.layer_units and entry.parity_cases and entry.search_space, name
        assert set(entry.recipe) >= {"image_size", "epochs", "batch_size", "optimizer", "lr"}
        assert set(entry.search_space) <= {"dropout", "width", "lr", "augment", "weight_decay"}
    assert default_model() in list_models()


def test_data_set_recipes_name_real_data_sets_and_fields():
    import dataclasses

    from keras_cnns.config import RunConfig
    from keras_cnns.data.sources import list_sources

    fields = {field.name for field in dataclasses.fields(RunConfig)}
    for name in list_models():
        entry = get_model_entry(name)
        for dataset, changes in entry.dataset_recipes.items():
            assert dataset in list_sources() and set(changes) <= fields, (name, dataset)
            config = RunConfig(model=name, dataset=dataset).resolve()
            assert all(getattr(config, key) == value for key, value in changes.items())


def test_a_registered_model_reaches_the_converters():
    """Register a new architecture at run time; the reference spec and layer map follow."""
    require("torch")
    from keras_cnns.models import ModelEntry, build_model, register_model
    from keras_cnns.models.registry import _REGISTRY
    from keras_cnns.reference import reference_spec

    base = get_model_entry("alexnet2012")
    entry = ModelEntry(**{**base.__dict__, "name": "alexnet2012_copy"})
    register_model(entry)
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_model(entry)
        model = build_model("alexnet2012_copy", input_shape=(64, 64, 3), num_classes=4,
                            width=0.25)
        # The first registered architecture that rebuilds the layers wins: the original.
        assert reference_spec(model)["name"] == "alexnet2012"
    finally:
        del _REGISTRY["alexnet2012_copy"]
