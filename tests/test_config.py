"""RunConfig: validation, recipes, JSON round trip and the flags built from it."""

import dataclasses
import json

import pytest

from keras_cnns.commands.flags import build_parser, config_from_args, parse_config
from keras_cnns.config import PLACEMENT_FIELDS, ConfigError, RunConfig
from keras_cnns.models import get_model_entry


def test_defaults_resolve_to_each_models_recipe():
    for model in ("alexnet", "lenet"):
        config = RunConfig(model=model).resolve()
        recipe = get_model_entry(model).recipe_for("digits")  # the default data set
        assert config.image_size == recipe["image_size"]
        assert config.lr == recipe["lr"]
        assert config.epochs == recipe["epochs"]
        assert config.dropout == get_model_entry(model).options["dropout"]
        assert None not in (config.batch_size, config.optimizer, config.width, config.augment)


def test_a_data_sets_recipe_changes_only_its_fields_and_yields_to_flags(monkeypatch):
    from keras_cnns.models import registry

    entry = get_model_entry("lenet")
    changed = dataclasses.replace(entry, dataset_recipes={"fashion_mnist": {"epochs": 7}})
    monkeypatch.setitem(registry._REGISTRY, "lenet", changed)
    on_fashion = RunConfig(model="lenet", dataset="fashion_mnist").resolve()
    on_digits = RunConfig(model="lenet").resolve()
    assert on_fashion.epochs == 7 and on_digits.epochs == entry.recipe["epochs"]
    assert dataclasses.replace(on_fashion, dataset="digits", epochs=on_digits.epochs) == on_digits
    assert RunConfig(model="lenet", dataset="fashion_mnist", epochs=3).resolve().epochs == 3
    assert "lenet: 40 (fashion_mnist: 7)" in " ".join(build_parser().format_help().split())


def test_label_smoothing_comes_from_the_recipe_else_zero_and_yields_to_the_flag():
    alexnet_digits = RunConfig(model="alexnet", dataset="digits").resolve()
    assert alexnet_digits.label_smoothing == 0.2 and alexnet_digits.augment == "medium"
    assert RunConfig(model="alexnet", dataset="fashion_mnist").resolve().label_smoothing == 0.0
    assert RunConfig(model="lenet", dataset="digits").resolve().label_smoothing == 0.0
    flag = RunConfig(model="alexnet", dataset="digits", label_smoothing=0.0).resolve()
    assert flag.label_smoothing == 0.0 and flag.is_resolved()
    assert "alexnet: 0.0 (digits: 0.2)" in " ".join(build_parser().format_help().split())


def test_mixed_precision_comes_from_the_recipe_else_off_and_yields_to_the_flag():
    fashion = RunConfig(model="alexnet", dataset="fashion_mnist").resolve()
    assert (fashion.mixed_precision, fashion.image_size, fashion.augment) == (
        "auto", 128, "erase")
    assert RunConfig(model="alexnet", dataset="digits").resolve().mixed_precision == "off"
    assert RunConfig(model="lenet", dataset="fashion_mnist").resolve().mixed_precision == "off"
    flag = RunConfig(model="alexnet", dataset="fashion_mnist", mixed_precision="off").resolve()
    assert flag.mixed_precision == "off" and flag.is_resolved()
    assert "alexnet: off (fashion_mnist: auto)" in " ".join(build_parser().format_help().split())


def test_json_round_trip(tmp_path):
    config = RunConfig(model="lenet", lr=0.01, model_kwargs={"activation": "relu"}).resolve()
    path = tmp_path / "run.json"
    config.to_json(path)
    assert RunConfig.from_json(path) == config


def test_manifest_style_file_is_read_from_its_config_key(tmp_path):
    config = RunConfig(model="lenet", dropout=0.2).resolve()
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"config": config.to_dict(), "metrics": {}}))
    assert RunConfig.from_json(path) == config


def test_identity_ignores_every_placement_field():
    config = RunConfig(model="lenet").resolve()
    moved = dataclasses.replace(config, run_dir="elsewhere", output="x", resume="runs/r",
                                onnx=True, tflite=True, tflite_quantize="int8")
    assert {name for name in PLACEMENT_FIELDS if getattr(moved, name) != getattr(config, name)
            } == set(PLACEMENT_FIELDS)
    assert moved.identity() == config.identity()
    assert dataclasses.replace(config, lr=0.5).identity() != config.identity()


def test_identity_of_a_fixed_config_never_changes():
    """An unfinished run is found by this hash: a change to it strands every one."""
    config = RunConfig(model="lenet", dataset="synthetic", image_size=16, epochs=2,
                       batch_size=32, optimizer="sgd", lr=0.1, warmup_epochs=0.0,
                       weight_decay=0.0, augment="none", dropout=0.1, width=0.5,
                       label_smoothing=0.0, mixed_precision="off",
                       model_kwargs={"activation": "relu"})
    assert config.identity() == "e9fd6f7f3ddee86d"
    # A recipe may set label smoothing and mixed precision; where none does, the resolved
    # config holds the 0 and "off" that every config held before, so runs from before resume.
    resolved = RunConfig(model="lenet", dataset="synthetic").resolve()
    assert resolved == dataclasses.replace(resolved, label_smoothing=0.0, mixed_precision="off")


def test_resolved_means_resolve_has_nothing_left_to_fill():
    raw = RunConfig(model="lenet", epochs=3)
    assert not raw.is_resolved()
    resolved = raw.resolve()
    assert resolved.is_resolved() and resolved.resolve() == resolved
    assert not dataclasses.replace(resolved, lr=None).is_resolved()
    from keras_cnns.preflight import check_run

    with pytest.raises(ValueError, match="resolved RunConfig"):
        check_run(raw, write_places=False)


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("model", "vgg", "Unknown model 'vgg'"),
        ("image_size", 40, "needs image_size >= 63"),
        ("epochs", 0, "epochs must be at least 1"),
        ("batch_size", 2.5, "batch_size must be an integer"),
        ("lr", float("nan"), "lr must be a finite number"),
        ("lr", 0.0, "lr must be in (0.0, inf)"),
        ("dropout", 1.0, "dropout must be in [0.0, 1.0)"),
        ("width", 0.0, "width must be in (0.0, inf)"),
        ("optimizer", "lamb", "optimizer must be one of"),
        ("strategy", "tpu", "strategy must be one of"),
        ("label_smoothing", -0.1, "label_smoothing must be in"),
        ("model_kwargs", {"pooling": "max"}, "has no option 'pooling'"),
        ("model_kwargs", {"width": 2}, "Set width with its own flag"),
        # Every numeric field's range, checked before any work starts.
        ("seed", 2**32, "seed must be at most 4294967295, got 4294967296"),
        ("seed", 2**64, "seed must be at most 4294967295"),
        ("epochs", 100_001, "epochs must be at most 100000"),
        ("image_size", -1, "image_size must be at least 1"),
        ("batch_size", 0, "batch_size must be at least 1"),
        ("lr", float("inf"), "lr must be a finite number, got inf"),
        ("momentum", 1.0, "momentum must be in [0.0, 1.0)"),
        ("momentum", float("nan"), "momentum must be a finite number"),
        ("weight_decay", -1e-4, "weight_decay must be in [0.0, inf)"),
        ("label_smoothing", 1.0, "label_smoothing must be in [0.0, 1.0)"),
        ("dropout", -0.1, "dropout must be in [0.0, 1.0)"),
        ("width", float("inf"), "width must be a finite number"),
        ("warmup_epochs", -1.0, "warmup_epochs must be in [0.0, inf)"),
        ("train_fraction", 0.0, "train_fraction must be in (0.0, 1.0]"),
        ("train_fraction", 1.5, "train_fraction must be in (0.0, 1.0]"),
        ("steps_per_execution", -1, "steps_per_execution must be at least 0"),
        ("batch_shards", -2, "batch_shards must be at least 0"),
        ("early_stopping", -1, "early_stopping must be at least 0"),
    ],
)
def test_bad_values_are_one_sentence(field, value, fragment):
    with pytest.raises(ConfigError) as info:
        RunConfig(**{field: value})
    assert fragment in str(info.value)
    assert str(info.value).endswith(".")


def test_unknown_field_in_a_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"model": "lenet", "learning_rate": 0.1}')
    with pytest.raises(ConfigError, match="Unknown config field 'learning_rate'"):
        RunConfig.from_json(path)


def test_flags_carry_field_names_and_override_a_config_file(tmp_path):
    base = RunConfig(model="lenet", lr=0.01, epochs=3, dropout=0.1).resolve()
    path = tmp_path / "base.json"
    base.to_json(path)
    config, _ = parse_config(
        [
            "--config",
            str(path),
            "--lr",
            "0.05",
            "--batch-size",
            "32",
            "--model-kwargs",
            "activation=relu",
            "pooling=max",
            "--jit-compile",
        ]
    )
    assert config.lr == 0.05 and config.batch_size == 32 and config.epochs == 3
    assert config.dropout == 0.1
    assert config.model_kwargs == {"activation": "relu", "pooling": "max"}
    assert config.jit_compile is True


def test_switching_model_on_top_of_a_config_takes_the_new_models_recipe(tmp_path):
    path = tmp_path / "lenet.json"
    RunConfig(model="lenet").resolve().to_json(path)
    args = build_parser().parse_args(["--config", str(path), "--model", "alexnet"])
    assert config_from_args(args).resolve().image_size == 64


def test_every_field_has_a_flag_with_its_default_in_help():
    text = build_parser().format_help()
    for field in dataclasses.fields(RunConfig):
        assert "--" + field.name.replace("_", "-") in text
    flat = " ".join(text.split())
    recipe = flat[flat.index("--image-size"):].split("(default: from the model's recipe (")[1]
    image_sizes = recipe.split("--epochs")[0]
    assert "alexnet: 64 (fashion_mnist: 128)" in image_sizes and "lenet: 28" in image_sizes
    augment = flat[flat.rindex("--augment AUGMENT"):].split("(default")[0]
    assert all(policy in augment for policy in ("none", "light", "medium", "strong"))


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        parse_config(["--dropout", "1.5"], prog="train.py")
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["train.py: error: dropout must be in [0.0, 1.0), got 1.5."]


@pytest.mark.parametrize(
    ("gpu", "bfloat16_cpu", "expected"),
    [(True, True, "float16"), (False, True, "bfloat16"), (False, False, "off")],
)
def test_auto_precision_is_the_fast_one_this_machine_has(monkeypatch, gpu, bfloat16_cpu, expected):
    import tensorflow as tf

    from keras_cnns.models import precision

    gpus = ["/physical_device:GPU:0"] if gpu else []
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: gpus)
    monkeypatch.setattr(precision, "cpu_has_bfloat16", lambda: bfloat16_cpu)
    assert precision.precision_mode("auto") == expected
    for explicit in ("off", "float16", "bfloat16"):
        assert precision.precision_mode(explicit) == explicit


def test_preflight_counts_what_the_built_model_holds_without_allocating_it():
    from keras.src.backend.common import global_state

    from keras_cnns.models import build_model
    from keras_cnns.preflight import ESTIMATE_CHANNELS, ESTIMATE_CLASSES, estimate_memory

    pending = len(global_state.get_global_attribute("uninitialized_variables", [], True))
    for model, size in (("lenet", 28), ("alexnet", 64)):
        estimate = estimate_memory(RunConfig(model=model, width=0.5).resolve())
        built = build_model(model, input_shape=(size, size, ESTIMATE_CHANNELS),
                            num_classes=ESTIMATE_CLASSES, width=0.5)
        assert estimate.parameters == built.count_params()
        assert estimate.activations_per_image > size * size * ESTIMATE_CHANNELS
    assert len(global_state.get_global_attribute("uninitialized_variables", [], True)) == pending


def test_preflight_refuses_a_run_larger_than_memory_with_its_estimate(monkeypatch, tmp_path):
    import keras_cnns.preflight as preflight

    config = RunConfig(model="lenet", run_dir=str(tmp_path / "runs"),
                       output=str(tmp_path / "o")).resolve()
    needed = preflight.check_run(config).bytes
    monkeypatch.setattr(preflight, "machine_memory", lambda: needed - 1)
    with pytest.raises(ConfigError, match=r"needs about .* more than this machine's"):
        preflight.check_run(config)
    monkeypatch.setattr(preflight, "machine_memory", lambda: needed)
    preflight.check_run(config)
    assert not any(tmp_path.iterdir())  # the probes left nothing behind


def test_the_largest_seed_is_accepted():
    assert RunConfig(seed=2**32 - 1).seed == 2**32 - 1


def _best_json(tmp_path, model="lenet"):
    """A tuner's best.json: a resolved config, the recipe's warmup included."""
    path = tmp_path / "best.json"
    config = RunConfig(model=model, dropout=0.1).resolve()
    path.write_text(json.dumps({"config": config.to_dict(), "search": {"trial": "0"}}))
    return path, config


@pytest.mark.parametrize("extra", [[], ["--lr", "0.01"], ["--batch-size", "32"]])
def test_a_files_derived_warmup_follows_a_shorter_epochs_flag(tmp_path, extra):
    path, recorded = _best_json(tmp_path)
    assert recorded.derived_fields() == ("warmup_epochs",)
    args = build_parser().parse_args(["--config", str(path), "--epochs", "1", *extra])
    config = config_from_args(args).resolve()
    without_file = config_from_args(build_parser().parse_args(
        ["--model", "lenet", "--dropout", "0.1", "--epochs", "1", *extra])).resolve()
    assert config == without_file  # as --model does: the file's recipe values yield
    assert 0 < config.warmup_epochs < 1 and config.dropout == 0.1
    # Unchanged epochs re-derive the recorded value.
    args = build_parser().parse_args(["--config", str(path)])
    assert config_from_args(args).resolve() == dataclasses.replace(recorded, output=None)


def test_a_warmup_the_user_chose_is_kept_and_a_clash_names_the_flag(tmp_path):
    path = tmp_path / "run.json"
    RunConfig(model="lenet", epochs=10, warmup_epochs=3.0).resolve().to_json(path)
    assert RunConfig.from_json(path).derived_fields() == ()
    args = build_parser().parse_args(["--config", str(path), "--epochs", "5"])
    assert config_from_args(args).resolve().warmup_epochs == 3.0
    args = build_parser().parse_args(["--config", str(path), "--epochs", "2"])
    with pytest.raises(ConfigError, match=r"must be below epochs \(2\); lower --warmup-epochs"):
        config_from_args(args)
