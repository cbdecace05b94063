"""Round 3 of the bad-input corpus (`shared/reliability/round3.tsv`, issue "Trust, round 3"):
every row ends GOOD (non-zero exit, one sentence, nothing written) or OK (a valid input handled
right), checked row by row as the first corpus is.

A row id is either a table row somewhere in the tests (a `Case` of tests/test_bad_inputs.py or of
this file, a parametrize id, an export row) or in `ROUND3_ELSEWHERE` with the test that covers it.
The GOOD rows here run the command's `main(argv)` in this process and assert what
tests/test_bad_inputs.py asserts. Their inputs are tests/round3_fixtures.py's; the rows that
need a trained export are in tests/test_bad_inputs_round3_export.py.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest
from bad_inputs import ROOT, run_case
from test_bad_inputs import Case

ROUND3 = Path(os.environ.get("KERAS_CNNS_ROUND3",
                             ROOT.parent / "shared" / "reliability" / "round3.tsv"))

# Rows covered by a test that is not a row of a table with the row's id: "module::test, why".
ROUND3_ELSEWHERE = {
    "CV2_tv5_as10": "tests/test_convert.py::test_what_a_checkpoint_cannot_honour_is_one_sentence, "
                    "its first row (--num-classes against the checkpoint's last layer)",
    "CV2_listside": "tests/test_convert.py::test_what_a_checkpoint_cannot_honour_is_one_sentence, "
                    "its '[1, 2]' sidecar row",
    "PR_out_is_input": "tests/test_predict.py::test_output_is_never_an_input, --output an input",
    "TR_bs_big": "tests/test_sharding.py::test_more_shards_than_usable_cores_is_a_note_not_silence"
                 ", --batch-shards 64 on 2 cores trains and says so in one note",
    "P1a_kill": "tests/test_resume.py::test_a_killed_fit_run_resumes_bit_identical[exported:1], "
                "the SIGKILL after the export is written and before metrics.json",
    "P1a_rerun": "tests/test_resume.py::test_a_killed_fit_run_resumes_bit_identical[exported:1], "
                 "the identical command then resumes and keeps the export",
    "P3_tune_kill": "tests/test_tuning.py::"
                    "test_killed_search_resumes_without_repeating_trials_then_retrains, "
                    "a search killed in a trial, rerun identically, completes every trial",
    "F3_diskfull_tflite600k": "tests/test_resume.py::"
                              "test_a_full_disk_during_an_export_is_one_sentence_and_leaves_"
                              "nothing, ENOSPC while the export is written",
    "F3_diskfull_tflite": "tests/test_tflite.py::test_float_file_is_recorded_and_hashed, the "
                          "export train --tflite writes when the disk holds it",
    "PR_badpng_dir": "tests/test_bad_inputs_round3_export.py::"
                     "test_round3_a_folder_with_one_unreadable_image_classifies_the_rest, one "
                     "line names the unreadable file, exit 1, the readable one is classified",
    "CF_strategy_null": "tests/test_bad_inputs_round3.py::"
                        "test_round3_a_null_strategy_in_a_config_file_is_the_default, the field "
                        "left out",
    "P1b_repro": "tests/test_reproducibility.py::"
                 "test_a_run_on_one_core_reruns_on_two_with_its_shards_and_names_the_cores, "
                 "a taskset run re-run on all cores",
    "P1a_resume": "tests/test_resume.py::"
                  "test_a_run_killed_after_its_export_resumes_by_name_into_that_export_only, "
                  "--resume RUN --output X after the kill point exported: another X refused",
    "P3_ablate_kill": "tests/test_ablation.py::"
                      "test_an_ablation_killed_in_a_cell_is_finished_by_the_same_command, a "
                      "real ablate.py killed in its cell's second epoch, then rerun",
    "P3_diskfull_rerun": "tests/test_resume.py::"
                         "test_a_full_disk_at_the_export_then_the_same_command_finishes_the_run"
                         ", ENOSPC at the export, then the identical command",
}

# Rows no test covers yet (see the lead's report); each must leave this list once one does.
ROUND3_OPEN: dict[str, str] = {}

# -- GOOD rows without a trained export ------------------------------------------------------------
TRAIN = "--model lenet --epochs 1 --run-dir {tmp}/runs --output {tmp}/out "
CONFIG = "--run-dir {tmp}/runs --output {tmp}/out --warmup-epochs 0 --config {fx}/cfg/"
TUNE = "--model lenet --tuner random --max-trials 2 --epochs 1 --run-dir {tmp}/runs --directory "
PREDICT = "{tmp}/s {fx}/img/one.png "
PREVIEW = "--dataset digits --output "
ABLATE = "--preset quick --output {tmp}/o "

CASES = [
    Case("PR_bs0", "predict", PREDICT + "--batch-size 0", 2, "--batch-size", "fake_export"),
    Case("PR_bsneg", "predict", PREDICT + "--batch-size -3", 2, "got -3", "fake_export"),
    Case("PR_maxpix0", "predict", PREDICT + "--max-pixels 0", 2, "--max-pixels", "fake_export"),
    Case("PR_maxpix_neg", "predict", PREDICT + "--max-pixels -1", 2, "got -1", "fake_export"),
    Case("PR_topk_neg", "predict", PREDICT + "--top-k -2", 2, "--top-k", "fake_export"),
    Case("PR_export_is_img", "predict", "{fx}/img/one.png {fx}/img/one.png", 1,
         "Export {fx}/img/one.png does not exist"),
    Case("EV2_bsneg", "evaluate", "{tmp}/s --batch-size -5 --confusion {tmp}/o.png", 2,
         "got -5", "fake_export"),
    Case("EV2_conf_dir", "evaluate", "{tmp}/s --confusion {fx}/emptydir", 2,
         "must name a PNG file", "fake_export"),
    Case("TL_repeats0", "tflite_latency", "{tmp}/s --repeats 0", 2, "--repeats", "fake_export"),
    Case("TL_threads0", "tflite_latency", "{tmp}/s --threads 0 --repeats 2", 2, "--threads",
         "fake_export"),
    Case("TL_threadsneg", "tflite_latency", "{tmp}/s --threads -4 --repeats 2", 2, "--threads",
         "fake_export"),
    Case("TL_missing", "tflite_latency", "{tmp}/gone", 1, "Export {tmp}/gone does not exist"),
    Case("PV_size0", "preview_data", "--dataset digits --image-size 0 --output {tmp}/o.png", 2,
         "got 0"),
    Case("PV_sizeneg", "preview_data", "--dataset digits --image-size -8 --output {tmp}/o.png", 2,
         "got -8"),
    Case("PV_sizehuge", "preview_data",
         "--dataset digits --image-size 100000 --output {tmp}/o.png", 2, "got 100000"),
    Case("PV_size1", "preview_data", "--dataset digits --image-size 1 --output {tmp}/o.png", 2,
         "got 1"),
    Case("PV_out_jpg", "preview_data", PREVIEW + "{tmp}/o.jpg", 2, "must name a .png file"),
    Case("PV_out_noext", "preview_data", PREVIEW + "{tmp}/o", 2, "must name a .png file"),
    Case("PV_out_dir", "preview_data", PREVIEW + "{fx}/emptydir --overwrite", 2,
         "must name a .png file"),
    Case("PV_out_nodir", "preview_data", PREVIEW + "{tmp}/gone/o.png", 2,
         "The folder of --output {tmp}/gone/o.png does not exist"),
    Case("PV_folder_nodir", "preview_data", "--dataset folder --output {tmp}/o.png", 1,
         "needs --data-dir"),
    Case("PV_folder_loop", "preview_data",
         "--dataset folder --data-dir {fx}/loopdir --output {tmp}/o.png", 1,
         "at least two class subfolders"),
    Case("PV_unknown_ds", "preview_data", "--dataset nope_xyz --output {tmp}/o.png", 1,
         "Unknown dataset 'nope_xyz'"),
    Case("TR_mom_neg", "train", TRAIN + "--momentum -1 --optimizer sgd", 2,
         "momentum must be in [0.0, 1.0), got -1.0"),
    Case("TR_mom_big", "train", TRAIN + "--momentum 5 --optimizer sgd", 2,
         "momentum must be in [0.0, 1.0), got 5.0"),
    Case("TR_mom_nan", "train", TRAIN + "--momentum nan", 2,
         "momentum must be a finite number, got nan"),
    Case("TR_wd_neg", "train", TRAIN + "--weight-decay -0.5", 2,
         "weight_decay must be in [0.0, inf), got -0.5"),
    Case("TR_wd_inf", "train", TRAIN + "--weight-decay inf", 2,
         "weight_decay must be a finite number, got inf"),
    Case("TR_tf_zero", "train", TRAIN + "--train-fraction 0", 2,
         "train_fraction must be in (0.0, 1.0], got 0.0"),
    Case("TR_tf_big", "train", TRAIN + "--train-fraction 1.5", 2,
         "train_fraction must be in (0.0, 1.0], got 1.5"),
    Case("TR_es_neg", "train", TRAIN + "--early-stopping -1", 2,
         "early_stopping must be at least 0, got -1"),
    Case("TR_spe_neg", "train", TRAIN + "--steps-per-execution -1", 2,
         "steps_per_execution must be at least 0, got -1"),
    Case("TR_bs_neg", "train", TRAIN + "--batch-shards -1", 2,
         "batch_shards must be at least 0, got -1"),
    Case("TR_bs_nodiv", "train", TRAIN + "--batch-shards 3", 2,
         "batch_shards 3 does not divide the batch size 64"),
    Case("TR_tq_bogus", "train", TRAIN + "--tflite --tflite-quantize int4", 2, "got 'int4'"),
    Case("TR_tq_notflite", "train", TRAIN + "--tflite-quantize int8", 2, "add --tflite"),
    Case("TR_ls_neg", "train", TRAIN + "--label-smoothing -0.1", 2,
         "label_smoothing must be in [0.0, 1.0), got -0.1"),
    Case("TR_warm_neg", "train", TRAIN.replace("1", "2") + "--warmup-epochs -1", 2,
         "warmup_epochs must be in [0.0, inf), got -1.0"),
    Case("TR_warm_nan", "train", TRAIN.replace("1", "2") + "--warmup-epochs nan", 2,
         "warmup_epochs must be a finite number, got nan"),
    Case("TR_img11", "train", TRAIN + "--image-size 11", 2, "lenet needs image_size >= 12, got 11"),
    Case("CF_epochs_true", "train", CONFIG + "epochs_true.json", 2,
         "epochs must be an integer, got True"),
    Case("CF_bs_float", "train", CONFIG + "bs_float.json", 2,
         "batch_size must be an integer, got 12.5"),
    Case("CF_kw_nested", "train", CONFIG + "kw_nested.json", 2, "got {{'a': 1}}"),
    Case("CF_lr_list", "train", CONFIG + "lr_list.json", 2,
         "lr must be a finite number, got [0.1]"),
    Case("CF_dataset_int", "train", CONFIG + "dataset_int.json", 2,
         "dataset must be a non-empty name, got 5"),
    Case("CF_output_int", "train", CONFIG + "output_int.json", 2,
         "output (--output) must be a non-empty path, got 5"),
    Case("CF_tf_str", "train", CONFIG + "tf_str.json", 2,
         "train_fraction must be a finite number, got '0.5'"),
    Case("CF_det_str", "train", CONFIG + "det_str.json", 2,
         "deterministic must be true or false, got 'yes'"),
    Case("CF_nan_mom", "train", CONFIG + "nan_mom.json", 2,
         "momentum must be a finite number, got nan"),
    Case("CF_dup_keys", "train", CONFIG + "dup_keys.json", 2, "epochs must be at least 1, got 0"),
    Case("CF_resume_int", "train", CONFIG + "resume_int.json", 2,
         "resume (--resume) must be a non-empty path, got 7"),
    Case("CF_mp_bool", "train", CONFIG + "mp_bool.json", 2, "got True"),
    Case("CF_ws_neg_bs", "train", CONFIG + "ws_neg_bs.json", 2,
         "batch_shards must be at least 0, got -2"),
    Case("AB_seedstrue", "ablate", "--grid {fx}/grid/seedstrue.json --output {tmp}/o", 2,
         "seeds must be a whole number >= 1, got True"),
    Case("AB_cells_obj", "ablate", "--grid {fx}/grid/cells_obj.json --output {tmp}/o", 2,
         "needs a non-empty list of cells"),
    Case("AB_defaults_list", "ablate", "--grid {fx}/grid/defaults_list.json --output {tmp}/o", 2,
         "defaults must be an object of RunConfig fields"),
    Case("AB_epochs_str", "ablate", "--grid {fx}/grid/epochs_str.json --output {tmp}/o", 2,
         "epochs must be an integer, got '2'"),
    Case("AB_dup", "ablate", "--grid {fx}/grid/dup.json --output {tmp}/o", 2,
         "the cell name 'a' appears twice"),
    Case("AB_cells_unknown", "ablate", ABLATE + "--cells lenet-classic,nope", 2,
         "has no cell 'nope'"),
    Case("AB_seeds0", "ablate", ABLATE + "--seeds 0", 2, "got 0"),
    Case("AB_budget_neg", "ablate", ABLATE + "--seed-budget -1", 2, "got -1"),
    Case("AB_epochs0", "ablate", ABLATE + "--epochs 0", 2,
         "--epochs must be a whole number >= 1, got 0"),
    Case("AB_imgsize_small", "ablate", ABLATE + "--image-size 20", 2,
         "alexnet needs image_size >= 63, got 20"),
    Case("AB_grid_dir", "ablate", "--grid {fx}/emptydir --output {tmp}/o", 2,
         "is not valid JSON"),
    Case("TU_other_model", "tune", TUNE.replace("lenet", "alexnet") + "{fx}/s_lenet", 2,
         "holds another search"),
    Case("TU_s_list", "tune", TUNE + "{fx}/s_list", 2, "search.json must be an object, got [1, 2]"),
    Case("TU_s_badjson", "tune", TUNE + "{fx}/s_badjson", 2, "search.json is not valid JSON"),
    Case("TU_s_nocfg", "tune", TUNE + "{fx}/s_nocfg", 2, "search.json has no config"),
    Case("TU_s_tuner_int", "tune", TUNE + "{fx}/s_tuner_int", 2,
         "search.json's tuner must be a non-empty string, got 5"),
    Case("TU_s_space_str", "tune", TUNE + "{fx}/s_space_str", 2,
         "search.json's space must be an object, got 'abc'"),
    Case("TU_s_oracle_bad", "tune", TUNE + "{fx}/s_oracle_bad", 2,
         "keras-tuner's {fx}/s_oracle_bad/trials/oracle.json is not valid JSON"),
    Case("TU_s_oracle_bad3", "tune", TUNE.replace("--max-trials 2", "--max-trials 3")
         + "{fx}/s_oracle_bad", 2, "start over with --overwrite"),
    Case("new_TU_s_trial_bad", "tune", TUNE + "{fx}/s_trial_bad", 2,
         "keras-tuner's {fx}/s_trial_bad/trials/trial_0/trial.json is not valid JSON"),
    Case("TU_space_dir", "tune", "--model lenet --max-trials 1 --epochs 1 --run-dir {tmp}/runs "
         "--directory {tmp}/t --space {fx}/emptydir", 2, "is not valid JSON"),
    Case("F3_ro_rundir", "train", "--model lenet --epochs 1 --run-dir /sys/kernel/r3 "
         "--output {tmp}/out", 2, "--run-dir /sys/kernel/r3 is not writable"),
    Case("F3_ro_output", "train", "--model lenet --epochs 1 --run-dir {tmp}/runs "
         "--output /sys/kernel/r3", 2, "--output /sys/kernel/r3 is not writable"),
    Case("PA_bs0", "parity", "--model lenet --paths tensorflow --batch-size 0 --json {tmp}/o.json",
         2, "--batch-size"),
    Case("P1d_shards3", "benchmark", "--model lenet --image-size 28 --steps 2 --epochs 1 "
         "--repeats 1 --cases ours_train,torch_cl --batch-size 3 --batch-shards 2", 2,
         "batch_shards 2 does not divide the batch size 3"),
]
# Checkpoints for convert.py ({pt}: the folder write_checkpoints fills).
TO_KERAS = " --to keras --output {tmp}/o.keras"
CHECKPOINT_CASES = [
    Case("CV2_list", "convert", "{pt}/list.pt --model lenet" + TO_KERAS, 1,
         "list.pt holds a list, not a state_dict"),
    Case("CV2_tensor", "convert", "{pt}/tensor.pt --model lenet" + TO_KERAS, 1,
         "tensor.pt holds a Tensor, not a state_dict"),
    Case("CV2_dict_nontensor", "convert", "{pt}/dict_nontensor.pt --model lenet" + TO_KERAS, 1,
         "not a lenet checkpoint"),
    Case("CV2_wrapped_lists", "convert", "{pt}/wrapped_lists.pt --model lenet --input-shape 28 "
         "28 1 --num-classes 10" + TO_KERAS, 1, "conv1.weight"),
    Case("CV2_tv5_as_lenet", "convert", "{pt}/tv5.pt --model lenet" + TO_KERAS, 1,
         "not a lenet checkpoint"),
    Case("CV2_badside", "convert", "{pt}/lenet_badside.pt" + TO_KERAS, 1, "lenet_badside.json"),
    Case("CV2_resnetside", "convert", "{pt}/lenet_resnet.pt" + TO_KERAS, 1,
         "Unknown model 'resnet'"),
    Case("CV2_shape0side", "convert", "{pt}/lenet_shape0.pt" + TO_KERAS, 1, "got 0x0"),
    Case("CV2_nanweights", "convert", "{pt}/lenet_nan.pt --model lenet --input-shape 28 28 1"
         + TO_KERAS, 1, "nan"),
    Case("CV2_zero_pt", "convert", "{pt}/zero.pt --model lenet" + TO_KERAS, 1,
         "zero.pt is not a PyTorch state_dict"),
    Case("CV2_inshape0", "convert", "{pt}/lenet_ok.pt --model lenet --input-shape 0 0 1"
         + TO_KERAS, 2, "--input-shape must be a whole number from 1 to 1024, got 0"),
    Case("CV2_numcls0", "convert", "{pt}/lenet_ok.pt --model lenet --input-shape 28 28 1 "
         "--num-classes 0" + TO_KERAS, 2,
         "--num-classes must be a whole number from 2 to 100000, got 0"),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_round3_bad_input_ends_in_one_sentence(case, round3_inputs, tmp_path, capsys, monkeypatch):
    def fill(text):
        return text.format(tmp=tmp_path, fx=round3_inputs)

    run_case(case, fill, tmp_path, [round3_inputs], capsys, monkeypatch)


@pytest.mark.parametrize("case", CHECKPOINT_CASES, ids=[case.id for case in CHECKPOINT_CASES])
def test_round3_bad_checkpoint_ends_in_one_sentence(case, round3_checkpoints, tmp_path, capsys,
                                                    monkeypatch):
    def fill(text):
        return text.format(tmp=tmp_path, pt=round3_checkpoints)

    run_case(case, fill, tmp_path, [round3_checkpoints], capsys, monkeypatch)



def test_round3_a_null_strategy_in_a_config_file_is_the_default(round3_inputs, capsys):
    """CF_strategy_null: `"strategy": null` is the field left out, not an error."""
    from keras_cnns.commands.flags import parse_config

    config, _ = parse_config(["--config", str(round3_inputs / "cfg" / "strategy_null.json"),
                              "--warmup-epochs", "0"], prog="train.py")
    assert config.strategy in (None, "auto") and config.model == "lenet"
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("row, flags", [
    ("P1c_epochs1", []), ("P1c_lr", ["--lr", "0.01"]), ("P1c_bs", ["--batch-size", "32"]),
    ("P1c_alex", ["--model", "alexnet", "--image-size", "64"]),
], ids=["P1c_epochs1", "P1c_lr", "P1c_bs", "P1c_alex"])
def test_round3_a_best_json_retrains_for_one_epoch(row, flags, tmp_path, capsys):
    """`--config best.json --epochs 1` (with another flag): the file's derived warmup is derived
    again for one epoch, not refused (tests/test_tuning.py runs it end to end)."""
    from keras_cnns.commands.flags import parse_config
    from keras_cnns.config import RunConfig

    best = tmp_path / "best.json"
    RunConfig(model="lenet").resolve().to_json(best)
    config, _ = parse_config(["--config", str(best), "--epochs", "1", *flags], prog="train.py")
    assert config.epochs == 1 and 0 <= config.warmup_epochs < 1
    note = capsys.readouterr().err
    assert ("replaces" in note) == (row == "P1c_alex") and "error" not in note
    if row == "P1c_alex":
        assert (config.model, config.image_size) == ("alexnet", 64)

# -- the accounting -----------------------------------------------------------------------------
TEST_MODULES = ["test_bad_inputs", "test_bad_inputs_export", "test_bad_inputs_round3",
                "test_bad_inputs_round3_export",
                "test_predict", "test_convert", "test_manifest_schema", "test_tflite"]


def _parametrize_ids(function) -> set[str]:
    """The ids pytest gives the rows of `function`'s parametrize marks that name a row: explicit
    ids, string values, and objects with an `id` (a Case)."""
    ids = set()
    for mark in getattr(function, "pytestmark", []):
        if mark.name != "parametrize":
            continue
        given = mark.kwargs.get("ids", mark.args[2] if len(mark.args) > 2 else None)
        values = mark.kwargs.get("argvalues", mark.args[1] if len(mark.args) > 1 else [])
        if isinstance(given, (list, tuple)):
            ids.update(str(i) for i in given)
        for value in values:
            value = getattr(value, "values", (value,))[0] if hasattr(value, "marks") else value
            if isinstance(value, str):
                ids.add(value)
            elif isinstance(getattr(value, "id", None), str):
                ids.add(value.id)
    return ids


def _module(name: str):
    """The test module, or None where it skips itself here (an extra such as torch missing)."""
    try:
        return importlib.import_module(name)
    except pytest.skip.Exception:
        return None


def table_ids() -> set[str]:
    """Every row id of the bad-input tables, imported from the test modules."""
    import bad_inputs

    ids = set(bad_inputs.EXPORT_ROWS)
    for name in TEST_MODULES:
        for attr in vars(_module(name) or object()).values():
            if callable(attr) and getattr(attr, "__name__", "").startswith("test_"):
                ids |= _parametrize_ids(attr)
    return ids


def _resolves(node: str) -> bool:
    path, _, function = node.partition("::")
    function = function.partition("[")[0]
    if not (ROOT / path).is_file():
        return False
    module = _module(Path(path).stem)
    if module is None:  # skipped here: the test is at least defined in its file
        return f"def {function}(" in (ROOT / path).read_text()
    return callable(getattr(module, function, None))


def test_every_round3_row_is_accounted_for():
    elsewhere = {row: text.split(",")[0] for row, text in ROUND3_ELSEWHERE.items()}
    assert [row for row, node in elsewhere.items() if not _resolves(node)] == []
    if not ROUND3.is_file():
        pytest.skip(f"{ROUND3} is not on this machine")
    corpus = [line.split("\t")[0] for line in ROUND3.read_text().splitlines()[1:] if line.strip()]
    covered = table_ids() | set(elsewhere)
    assert sorted(set(ROUND3_OPEN) & covered) == []  # covered now: take it off ROUND3_OPEN
    assert sorted(set(corpus) - covered - set(ROUND3_OPEN)) == []
