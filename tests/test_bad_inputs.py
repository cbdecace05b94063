"""The bad-input corpus of issue 13 as a table: every bad input ends in one sentence.

Each row is a command tried as a careless or hostile user would (its id is the row of the
corpus in `shared/reliability/bad-inputs.tsv`, new ones are marked `new`). Every row runs
the script's `main(argv)` in this process and asserts: the exit status (2 for usage and
configuration errors, 1 for data and artefact errors), exactly one line on stderr with no
traceback, that line naming the bad value, and that no file appeared or changed in the scratch
folders, the current directory or the fixtures. A few rows also run as real subprocesses.
Rows of the corpus that are not here are listed in `NOT_IN_TABLE` with the reason.
"""

from __future__ import annotations

import dataclasses

import pytest
from bad_inputs import EXPORT_ROWS, NOT_IN_TABLE, TSV, run_case, write_fixtures


# -- the table ----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    script: str  # train, tune, evaluate, verify, convert
    args: str  # placeholders: {tmp} scratch, {fx} fixtures, {file} a regular file
    code: int
    says: str  # what the one stderr line must contain (same placeholders)
    setup: str = ""  # a function of SETUPS that prepares {tmp}/s


TRAIN = "--run-dir {tmp}/runs --output {tmp}/out --model lenet "
ONE = TRAIN + "--epochs 1 --warmup-epochs 0 "
TUNE = "--run-dir {tmp}/runs --model lenet --epochs 1 --warmup-epochs 0 --max-trials 1 "

CASES = [
    Case("A01", "train", TRAIN + "--model resnet", 2, "'resnet'"),
    Case("A02", "train", TRAIN + "--foo 1", 2, "--foo 1"),
    Case("A03", "train", TRAIN + "--epochs -1", 2, "got -1"),
    Case("A04", "train", TRAIN + "--epochs 0", 2, "got 0"),
    Case("A05", "train", TRAIN + "--epochs 1000000000000 --warmup-epochs 0", 2, "1000000000000"),
    Case("A06", "train", TRAIN + "--batch-size 0", 2, "batch_size must be at least 1, got 0"),
    Case("A08", "train", TRAIN + "--lr -0.1", 2, "got -0.1"),
    Case("A09", "train", TRAIN + "--lr nan", 2, "got nan"),
    Case("A10", "train", TRAIN + "--lr abc", 2, "'abc'"),
    Case("A11", "train", TRAIN + "--lr inf", 2, "got inf"),
    Case("A12", "train", TRAIN + "--dropout 1.5", 2, "got 1.5"),
    Case("A13", "train", TRAIN + "--width 0", 2, "width must be in (0.0, inf), got 0.0"),
    Case("A14", "train", TRAIN + "--model alexnet --image-size 32", 2, "got 32"),
    Case("A16", "train", TRAIN + "--model-kwargs foo", 2, "'foo'"),
    Case("A17", "train", TRAIN + "--model-kwargs activation=nope", 2, "'nope'"),
    Case("A18", "train", TRAIN + "--model alexnet --model-kwargs pooling=max", 2, "'pooling'"),
    Case("A19", "train", TRAIN + "--strategy nonsense", 2, "'nonsense'"),
    Case("A20", "train", TRAIN + "--mixed-precision nonsense", 2, "'nonsense'"),
    Case("A21", "train", TRAIN + "--optimizer nope", 2, "'nope'"),
    Case("A22", "train", TRAIN + "--seed -1", 2, "got -1"),
    Case("A23", "train", TRAIN + "--label-smoothing 1.0", 2, "got 1.0"),
    Case("A24", "train", TRAIN + "--image-size 0", 2, "got 0"),
    Case("A25", "train", TRAIN + "--model-kwargs num_classes=3", 2, "'num_classes'"),
    Case("A26", "train", TRAIN + "--warmup-epochs 5 --epochs 2", 2, "(5.0)"),
    Case("A27", "train", TRAIN + "--model-kwargs dropout=0.3", 2, "--dropout"),
    Case("A28", "train", TRAIN + "--width -1", 2, "got -1.0"),
    Case("A29", "train", TRAIN + "--epochs 2.5", 2, "'2.5'"),
    Case("A30", "train", ONE + "--strategy multi_worker", 2, "TF_CONFIG"),
    Case("A31", "train", ONE + "--onnx", 2, "--onnx needs", "hide_onnx"),
    Case("A32", "train", ONE + "--resume {tmp}/none", 2, "{tmp}/none"),
    Case("A33", "train", "--model lenet --epochs 1 --warmup-epochs 0 --run-dir {file}/runs", 2,
         "{file}/runs"),
    Case("A34", "train", ONE + "--augment nope", 2, "'nope'"),
    Case("A35", "train", ONE + "--schedule nope", 2, "'nope'"),
    Case("A36", "train", ONE + "--image-size 100000", 2, "image_size 100000"),
    Case("A37", "train", ONE + "--width 100000", 2, "width 100000.0"),
    Case("A38", "train", "--run-dir {tmp}/runs --resume {tmp}/s", 2, "already finished",
         "finished_run"),
    Case("A39", "train", ONE + "--dataset digits --data-dir {fx}/idx_good", 2, "--data-dir"),
    Case("E01", "train", ONE.replace("{tmp}/out", "{tmp}/s"), 2, "{tmp}/s already exists",
         "empty_dir"),
    Case("E03", "train", ONE.replace("{tmp}/out", "{file}/x"), 2, "{file}/x"),
    Case("E03c", "train", ONE.replace("{tmp}/out", "''"), 2, "''"),
    Case("C_act_int", "train", "--config {fx}/cfg/act_int.json", 2, "got 5"),
    Case("C_aug_int", "train", "--config {fx}/cfg/aug_int.json", 2, "got 7"),
    Case("C_best_edit", "train", "--config {fx}/cfg/best_alex.json --epochs 1", 2, "got 28"),
    Case("C_binary", "train", "--config {fx}/cfg/binary.json", 2, "binary.json is not valid"),
    Case("C_booltype", "train", "--config {fx}/cfg/booltype.json", 2, "got True"),
    Case("C_datadir_list", "train", "--config {fx}/cfg/datadir_list.json", 2, "['x']"),
    Case("C_dir", "train", "--config {fx}/cfg", 2, "{fx}/cfg is not valid JSON"),
    Case("C_empty", "train", "--config {fx}/cfg/empty.json", 2, "empty.json is not valid"),
    Case("C_floatint", "train", "--config {fx}/cfg/floatint.json", 2, "got 28.0"),
    Case("C_invalid", "train", "--config {fx}/cfg/invalid.json", 2, "invalid.json is not valid"),
    Case("C_kwlist", "train", "--config {fx}/cfg/kwlist.json", 2, "got [1]"),
    Case("C_list", "train", "--config {fx}/cfg/list.json", 2, "JSON object"),
    Case("C_missing", "train", "--config {fx}/cfg/missing.json", 2, "does not exist"),
    Case("C_model_list", "train", "--config {fx}/cfg/model_list.json", 2, "['lenet']"),
    Case("C_nestedbad", "train", "--config {fx}/cfg/nestedbad.json", 2, "'config'"),
    Case("C_nulldataset", "train", "--config {fx}/cfg/nulldataset.json", 2, "got None"),
    Case("C_rundir_int", "train", "--config {fx}/cfg/rundir_int.json --output {tmp}/o", 2,
         "run_dir (--run-dir) must be a non-empty path, got 5"),
    Case("C_strlr", "train", "--config {fx}/cfg/strlr.json", 2, "got '0.01'"),
    Case("C_unknown", "train", "--config {fx}/cfg/unknown.json", 2, "'colour'"),
    Case("C_wrongtype", "train", "--config {fx}/cfg/wrongtype.json", 2, "got 'ten'"),
    Case("D01", "train", ONE + "--dataset nonexistent_xyz", 1, "'nonexistent_xyz'", "no_tfds"),
    Case("D02", "train", ONE + "--dataset mnist --data-dir {tmp}/gone", 1, "{tmp}/gone"),
    Case("D_count", "train", ONE + "--dataset mnist --data-dir {fx}/idx_count", 1, "(25,)"),
    Case("D_datafile", "train", ONE + "--dataset mnist --data-dir {file}", 1, "is a file"),
    Case("D_gzbomb", "train", ONE + "--dataset mnist --data-dir {fx}/idx_bomb", 1,
         "more data than"),
    Case("new_gzbomb_header", "train", ONE + "--dataset mnist --data-dir {fx}/idx_bomb_header",
         1, "1000000 x 1000000 x 1000"),
    Case("D_huge", "train", ONE + "--dataset mnist --data-dir {fx}/idx_huge", 1,
         "784000000000 bytes"),
    Case("D_magic", "train", ONE + "--dataset mnist --data-dir {fx}/idx_magic", 1, "magic"),
    Case("D_missing", "train", ONE + "--dataset mnist --data-dir {fx}/idx_missing", 1,
         "t10k-labels-idx1-ubyte"),
    Case("D_neg", "train", ONE + "--dataset mnist --data-dir {fx}/idx_neg", 1, "label -1"),
    Case("D_oneclass", "train", ONE + "--dataset mnist --data-dir {fx}/idx_oneclass", 1,
         "only class 0"),
    Case("D_range", "train", ONE + "--dataset mnist --data-dir {fx}/idx_range", 1, "label 200"),
    Case("D_tfds", "train", ONE + "--dataset cifar10", 1, "'cifar10' is not prepared", "no_tfds"),
    Case("D_tfds2", "train", ONE + "--dataset kmnist --data-dir {tmp}/s", 1, "'kmnist'",
         "empty_dir"),
    Case("D_tfds3", "train", ONE + "--dataset mnist/../../etc", 1, "'mnist/../../etc'"),
    Case("D_trunc", "train", ONE + "--dataset mnist --data-dir {fx}/idx_trunc", 1, "truncated"),
    Case("D_trunc_gz", "train", ONE + "--dataset mnist --data-dir {fx}/idx_trunc_gz", 1,
         "damaged or truncated gzip"),
    Case("D_zero", "train", ONE + "--dataset mnist --data-dir {fx}/idx_zero", 1,
         "holds no images"),
    Case("Didx_neg", "train", ONE + "--dataset idx --data-dir {fx}/idx_neg", 1, "label -1"),
    Case("Didx_oneclass", "train", ONE + "--dataset idx --data-dir {fx}/idx_oneclass", 1,
         "only class 0"),
    Case("Didx_range", "train", ONE + "--dataset idx --data-dir {fx}/idx_range", 1,
         "label 200"),
    Case("F_bomb", "train", ONE + "--dataset folder --data-dir {fx}/f_bomb", 1,
         "bomb.png declares 3600000000 pixels"),
    Case("F_corrupt", "train", ONE + "--dataset folder --data-dir {fx}/f_corrupt", 1,
         "cut.png is not a readable"),
    Case("F_empty", "train", ONE + "--dataset folder --data-dir {fx}/f_empty", 1,
         "at least two class"),
    Case("F_emptyclass", "train", ONE + "--dataset folder --data-dir {fx}/f_emptyclass", 1,
         "f_emptyclass/eel holds no PNG"),
    Case("F_loop", "train", ONE + "--dataset folder --data-dir {fx}/f_loop", 1,
         "self.png is a symlink loop"),
    Case("F_loopdir", "train", ONE + "--dataset folder --data-dir {fx}/f_loopdir", 1,
         "f_loopdir/eel is a symlink loop"),
    Case("F_nodir", "train", ONE + "--dataset folder", 1, "--data-dir"),
    Case("F_one", "train", ONE + "--dataset folder --data-dir {fx}/f_one", 1, "at least two"),
    Case("F_text", "train", ONE + "--dataset folder --data-dir {fx}/f_text", 1,
         "notes.png is not a readable"),
    Case("T01", "tune", TUNE + "--tuner nope --directory {tmp}/t", 2, "'nope'"),
    Case("T02", "tune", TUNE + "--max-trials 0 --directory {tmp}/t", 2, "got 0"),
    Case("T02b", "tune", TUNE + "--max-trials -3 --directory {tmp}/t", 2, "got -3"),
    Case("T03", "tune", TUNE + "--space {fx}/space/reversed.json --directory {tmp}/t", 2,
         "[0.5, 0.1]"),
    Case("T04", "tune", TUNE + "--space {fx}/space/w.json --directory {tmp}/s", 2,
         "another search", "other_search"),
    Case("T05", "tune", TUNE + "--directory {file}/tune", 2, "{file}/tune"),
    Case("T06", "tune", TUNE + "--tuner hyperband --directory {tmp}/s", 2,
         "random there, hyperband here", "other_search"),
    Case("T07", "tune", TUNE + "--directory {tmp}/t --model-kwargs activation=nope", 2,
         "'nope'"),
    Case("new_tune_widest", "tune", TUNE + "--space {fx}/space/wide.json --directory {tmp}/t", 2,
         "width 100000.0"),
    Case("new_tune_epochs", "tune", TUNE.replace("--epochs 1", "--epochs 1000000") +
         "--directory {tmp}/t", 2, "got 1000000"),
    *[
        Case(f"TS_{name}", "tune", TUNE + f"--space {{fx}}/space/{name}.json --directory {{tmp}}/t",
             2, says)
        for name, says in [
            ("badaug", "'nope'"), ("badwidth", "got 0"), ("droplog", "got 0.0"),
            ("dupchoice", "[1.0, 1.0]"), ("empty_obj", "tunes nothing"),
            ("emptychoice", "got []"), ("lrzero", "min 0"), ("missing", "missing.json"),
            ("other_hp", "'epochs'"), ("reversed", "[0.5, 0.1]"),
            ("reversed_lr", "[0.05, 0.002]"), ("step0", "got 0"), ("strmin", "got 'a'"),
        ]
    ],
    Case("EV_badjson", "evaluate", "{tmp}/s", 1, "not valid JSON", "fake_export:{"),
    Case("EV_bs", "evaluate", "{tmp}/s --batch-size 0", 2, "got 0", "fake_export"),
    Case("EV_conf", "evaluate", "{tmp}/s --confusion {file}/cm.png", 2, "{file}/cm.png",
         "fake_export"),
    Case("new_ev_inexport", "evaluate", "{tmp}/s --confusion {tmp}/s/sub/cm.png", 2,
         "inside the export", "fake_export"),
    Case("EV_empty", "evaluate", "{tmp}/s", 2, "neither a run directory nor an export",
         "empty_dir"),
    Case("EV_file", "evaluate", "{file}", 2, "neither"),
    Case("EV_halfrun", "evaluate", "{tmp}/s", 2, "no checkpoint", "half_run"),
    Case("EV_listjson", "evaluate", "{tmp}/s", 1, "JSON object", "fake_export:[1]"),
    Case("new_tl_json_inside", "tflite_latency", "{tmp}/s --json {tmp}/s/rows.json", 2,
         "lies inside the export", "fake_export"),
    Case("EV_missing", "evaluate", "{tmp}/gone", 2, "{tmp}/gone does not exist"),
    Case("V_badjson", "verify", "{tmp}/s", 1, "not valid JSON", "fake_export:{"),
    Case("V_listjson", "verify", "{tmp}/s", 1, "JSON object", "fake_export:[1]"),
    Case("V_empty", "verify", "{tmp}/s", 1, "no manifest.json", "empty_dir"),
    Case("V_file", "verify", "{file}", 1, "{file} does not exist"),
    Case("V_missing", "verify", "{tmp}/gone", 1, "{tmp}/gone does not exist"),
    Case("new_verify_usage", "verify", "{tmp}/s --nope", 2, "--nope", "empty_dir"),
    Case("CV_onnxfile", "convert", "{fx}/cfg/list.json --to onnx", 2, "export directory"),
    Case("new_convert_usage", "convert", "{fx}/cfg/list.json --to nope", 2, "'nope'"),
    Case("new_profile_input", "profile_step", "--input bogus", 2, "'bogus'"),
    Case("new_profile_isa", "profile_step", "--isa sse2 --kernels", 2, "'sse2'"),
    # Issue 25 part A: the weights' moving average and gradient clipping (a decay of 0 or 1
    # would keep no average or never move it; a norm of 0 would zero every step).
    Case("new_ema_high", "train", ONE + "--ema-decay 1.5", 2,
         "ema_decay must be in [0.0, 1.0), got 1.5"),
    Case("new_ema_one", "train", ONE + "--ema-decay 1", 2, "ema_decay must be in [0.0, 1.0), "
         "got 1.0"),
    Case("new_ema_negative", "train", ONE + "--ema-decay -0.1", 2, "got -0.1"),
    Case("new_ema_nan", "train", ONE + "--ema-decay nan", 2, "ema_decay must be a finite "
         "number, got nan"),
    Case("new_clip_zero", "train", ONE + "--clip-norm 0", 2,
         "clip_norm must be in (0.0, inf), got 0.0"),
    Case("new_clip_negative", "train", ONE + "--clip-norm -1", 2, "got -1.0"),
    Case("new_clip_nan", "train", ONE + "--clip-norm nan", 2, "clip_norm must be a finite "
         "number, got nan"),
    Case("new_clip_inf", "train", ONE + "--clip-norm inf", 2, "got inf"),
    Case("new_shards_negative", "train", ONE + "--batch-shards -1", 2,
         "batch_shards must be at least 0, got -1"),
    Case("new_shards_divide", "train", ONE + "--batch-shards 3", 2,
         "batch_shards 3 does not divide the batch size 64"),
    Case("new_shards_mirrored", "train", ONE + "--batch-shards 2 --strategy mirrored", 2,
         "mirrored strategy"),
    Case("new_tune_shards", "tune", TUNE + "--batch-shards 5 --directory {tmp}/t", 2,
         "batch_shards 5"),
    Case("new_bench_shards", "benchmark", "--model lenet --image-size 28 --batch-shards 3", 2,
         "batch_shards 3 does not divide the batch size 128"),
    Case("new_profile_shards", "profile_step", "--batch-shards x", 2, "'x'"),
    Case("new_profile_shards_divide", "profile_step",
         "--model lenet --image-size 28 --batch-shards 3", 2,
         "batch_shards 3 does not divide the batch size 128"),
    # Issue 24: visualize (tests/test_visualize.py). {tmp}/s holds conv.keras (LeNet 16x16x1),
    # dense.keras, grey.png, lab.tif (a TIFF) and export/ (bad_inputs.visualize_inputs).
    Case("new_vis_layer", "visualize", "{tmp}/s/conv.keras --images {tmp}/s/grey.png "
         "--layers nope --output {tmp}/o", 2,
         "--layers nope is not a Conv2D layer of this model; its convolutions are conv1, conv2",
         "visualize"),
    Case("new_vis_unit", "visualize", "{tmp}/s/conv.keras --images {tmp}/s/grey.png "
         "--units 0 16 --output {tmp}/o", 2,
         "--units 16 is not a unit of layer conv2, which has 16 (0 to 15)", "visualize"),
    Case("new_vis_no_conv", "visualize", "{tmp}/s/dense.keras --images {tmp}/s/grey.png "
         "--output {tmp}/o", 1, "{tmp}/s/dense.keras has no Conv2D layer", "visualize"),
    # Other sizes and channel counts are converted as predict converts them; refused are an
    # image over the pixel limit and a file in no format predict reads.
    Case("new_vis_image_size", "visualize", "{tmp}/s/conv.keras --images "
         "{fx}/f_bomb/cat/bomb.png --output {tmp}/o", 1,
         "bomb.png is 60000x60000 pixels, over the limit of 89,478,485", "visualize"),
    Case("new_vis_image_format", "visualize", "{tmp}/s/conv.keras --images {tmp}/s/lab.tif "
         "--output {tmp}/o", 1, "lab.tif is not a PNG, JPEG, GIF or BMP file", "visualize"),
    Case("new_vis_hashes", "visualize", "{tmp}/s/export --output {tmp}/o", 1,
         "Export {tmp}/s/export does not verify: file model.keras does not match its sha256",
         "visualize:tamper"),
    Case("new_vis_runtime_file", "visualize", "{tmp}/s/export --runtime tflite --output {tmp}/o",
         2, "export {tmp}/s/export has no model.tflite", "visualize"),
    Case("new_vis_runtime_keras", "visualize", "{tmp}/s/conv.keras --images {tmp}/s/grey.png "
         "--runtime savedmodel --output {tmp}/o", 2, "--runtime savedmodel needs an export",
         "visualize"),
    # Round 3 (shared/reliability/round3.tsv): numeric ranges, outputs that are inputs, flags
    # a command cannot honour. Each is refused before anything is read or written.
    Case("CV2_tflite_output", "convert", "{tmp}/s --to tflite --output {tmp}/x.tflite", 2,
         "--output goes with --to torch, keras or export, not --to tflite", "fake_export"),
    Case("new_cv_replace", "convert", "{fx}/a_file.txt --to torch --replace", 2,
         "--replace goes with --to onnx or tflite, not --to torch"),
    Case("new_cv_kwargs_alone", "convert", "{tmp}/w.pt --to keras --num-classes 10", 2,
         "--num-classes goes with --model NAME"),
    Case("new_cv_model_of_keras", "convert",
         "{tmp}/s --to export --model lenet --mean 0.5 --std 0.2 --class-names {fx}/a_file.txt",
         2, "--model describes a .pt SOURCE", "fake_export"),
    Case("new_cv_out_in_source", "convert", "{tmp}/s --to export --mean 0.5 --std 0.2 "
         "--class-names {fx}/a_file.txt --output {tmp}/s/sub", 2,
         "--output {tmp}/s/sub would write into {tmp}/s, which this command reads",
         "fake_export"),
    Case("CV2_export_cn_dup", "convert", "{tmp}/s --to export --mean 0.5 --std 0.2 "
         "--class-names {fx}/names_dup.txt --output {tmp}/o", 2, "names 'a' twice", "fake_export"),
    Case("CV2_export_meannan", "convert", "{tmp}/s --to export --mean nan --std 0.2 "
         "--class-names {fx}/a_file.txt --output {tmp}/o", 2,
         "--mean must be a finite number from 0 to 1, got nan", "fake_export"),
    Case("new_cv_std_scale", "convert", "{tmp}/s --to export --mean 0.5 --std 58 "
         "--class-names {fx}/a_file.txt --output {tmp}/o", 2,
         "--std must be a finite number above 0 and at most 1, got 58", "fake_export"),
    Case("PV_seedneg", "preview_data", "--dataset digits --seed -1 --output {tmp}/o.png", 2,
         "--seed must be a whole number from 0 to 4294967295, got -1"),
    Case("new_pv_out_in_data", "preview_data", "--dataset folder --data-dir {fx}/f_good "
         "--output {fx}/f_good/cat/img_0.png --overwrite", 2,
         "would write into --data-dir {fx}/f_good"),
    Case("AB_selfscale", "ablate", "--grid {fx}/grid/selfscale.json --output {tmp}/o", 2,
         "data_scale_of must name another cell that trains on the whole split, got 'a'"),
    Case("AB_nanbudget", "ablate", "--grid {fx}/grid/nanbudget.json --output {tmp}/o", 2,
         "seed_budget_minutes must be a finite number >= 0, got nan"),
    Case("new_ab_budget_nan", "ablate", "--preset quick --seed-budget nan --output {tmp}/o", 2,
         "--seed-budget must be a finite number >= 0, got nan"),
    Case("new_ab_merge_missing", "ablate", "--preset quick --merge {tmp}/no.json --output {tmp}/o",
         2, "File {tmp}/no.json does not exist."),
    Case("new_ab_merge_accuracy", "ablate", "--preset quick --merge {fx}/results_bad.json "
         "--output {tmp}/o", 2,
         "{fx}/results_bad.json's runs[0]'s test_accuracy must be a number in [0, 1], got 1.5."),
    Case("AB_cells_empty", "ablate", "--preset quick --cells , --output {tmp}/o", 2,
         "--cells must be cell names separated by commas, got ','"),
    Case("TR_seed_2p64", "train", ONE + "--seed 18446744073709551616", 2,
         "seed must be at most 4294967295, got 18446744073709551616"),
    Case("CF_seed_huge", "train", "--config {fx}/cfg/seed_huge.json --run-dir {tmp}/runs "
         "--output {tmp}/out --warmup-epochs 0", 2, "seed must be at most 4294967295"),
    Case("new_momentum_one", "train", ONE + "--momentum 1", 2, "momentum must be in [0.0, 1.0)"),
    Case("new_weight_decay_inf", "train", ONE + "--weight-decay inf", 2,
         "weight_decay must be a finite number, got inf"),
    Case("new_fraction_zero", "train", ONE + "--train-fraction 0", 2,
         "train_fraction must be in (0.0, 1.0], got 0.0"),
    Case("new_spe_negative", "train", ONE + "--steps-per-execution -1", 2,
         "steps_per_execution must be at least 0, got -1"),
    Case("new_early_negative", "train", ONE + "--early-stopping -1", 2,
         "early_stopping must be at least 0, got -1"),
    Case("new_warmup_nan", "train", TRAIN + "--warmup-epochs nan", 2,
         "warmup_epochs must be a finite number, got nan"),
    Case("PS_steps0", "profile_step", "--model lenet --image-size 28 --batch-size 8 --steps 0 "
         "--json {tmp}/o.json", 2, "--steps must be a whole number >= 1, got 0"),
    Case("BM_repeats0", "benchmark", "--model lenet --image-size 28 --batch-size 8 --steps 1 "
         "--repeats 0 --cases pipeline --json {tmp}/o.json", 2,
         "--repeats must be a whole number >= 1, got 0"),
    Case("P1d_aug", "benchmark", "--model lenet --image-size 28 --steps 2 --epochs 1 --repeats 1 "
         "--cases ours_train,torch_cl --batch-size 16 --augment nope --json {tmp}/o.json", 2,
         "augment must be one of"),
    Case("P1d_ds", "benchmark", "--model lenet --image-size 28 --steps 2 --epochs 1 --repeats 1 "
         "--cases ours_train,pipeline --batch-size 16 --dataset folder --json {tmp}/o.json", 1,
         "The folder source needs --data-dir"),
    Case("new_idx_as_cifar10", "train", ONE + "--dataset cifar10 --data-dir {fx}/idx_good", 1,
         "--dataset cifar10 is not an IDX data set, but --data-dir {fx}/idx_good holds IDX"),
    Case("AB_out_file", "ablate", "--preset quick --cells lenet-classic --epochs 1 "
         "--output {file}", 2, "--output {file} must be a results directory"),
    # Issue 25 B: MixUp, CutMix and the augmentation policies (tests/test_mixing.py).
    Case("new_mixup_negative", "train", ONE + "--mixup-alpha -1", 2,
         "mixup_alpha must be in [0.0, inf), got -1.0"),
    Case("new_mixup_nan", "train", ONE + "--mixup-alpha nan", 2,
         "mixup_alpha must be a finite number, got nan"),
    Case("new_cutmix_inf", "train", ONE + "--cutmix-alpha inf", 2,
         "cutmix_alpha must be a finite number, got inf"),
    Case("new_mix_prob_high", "train", ONE + "--mixup-alpha 0.2 --mix-prob 1.5", 2,
         "mix_prob must be in [0.0, 1.0], got 1.5"),
    Case("new_mix_prob_alone", "train", ONE + "--mix-prob 0.5", 2,
         "--mix-prob 0.5 is the probability of mixing a batch, but nothing is mixed"),
    Case("new_erase_prob_high", "train", ONE + "--erase-prob 1.5", 2,
         "erase_prob must be in [0.0, 1.0], got 1.5"),
    Case("new_erase_prob_nan", "train", ONE + "--erase-prob nan", 2,
         "erase_prob must be a finite number, got nan"),
    Case("new_augment_policies", "train", ONE + "--augment randaug", 2,
         "erase, randaugment, got 'randaug'"),
    Case("new_mixup_oneclass", "train",
         ONE + "--mixup-alpha 0.2 --dataset mnist --data-dir {fx}/idx_oneclass", 1,
         "only class 0"),
]

def test_every_row_of_the_corpus_is_accounted_for():
    ids = [case.id for case in CASES] + EXPORT_ROWS + list(NOT_IN_TABLE)
    assert len(ids) == len(set(ids))
    if not TSV.is_file():
        pytest.skip(f"{TSV} is not on this machine")
    corpus = [line.split("\t")[0] for line in TSV.read_text().splitlines()[1:] if line.strip()]
    assert sorted(set(corpus) - set(ids)) == []


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    return write_fixtures(tmp_path_factory.mktemp("bad-input-fixtures"))


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_ends_in_one_sentence_and_writes_nothing(case, fixtures, tmp_path, capsys,
                                                           monkeypatch):
    def fill(text):
        return text.format(tmp=tmp_path, fx=fixtures, file=fixtures / "a_file.txt")

    run_case(case, fill, tmp_path, [fixtures], capsys, monkeypatch)


def test_number_flags_keep_to_their_range():
    """The `type=` of every numeric flag: bounds inclusive, `above` exclusive, NaN never."""
    import argparse

    from keras_cnns.commands.cli import SEEDS, integer, number

    seed, std = integer(*SEEDS), number(high=1, above=0)
    assert (seed("0"), seed(str(2**32 - 1)), std("1"), std("1e-9")) == (0, 2**32 - 1, 1.0, 1e-9)
    assert number(finite=False)("inf") == float("inf")
    for parse, text, says in [(seed, "-1", "from 0 to 4294967295, got -1"),
                              (seed, str(2**32), "got 4294967296"), (seed, "1.5", "got '1.5'"),
                              (std, "0", "above 0 and at most 1, got 0"), (std, "1.01", "got 1"),
                              (std, "nan", "finite number above 0"), (number(), "inf", "got inf"),
                              (number(finite=False), "nan", "got nan")]:
        with pytest.raises(argparse.ArgumentTypeError, match=says):
            parse(text)
