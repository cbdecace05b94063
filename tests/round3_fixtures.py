"""The inputs of round 3 of the bad-input corpus (`shared/reliability/round3.tsv`), small: what
`round3-fixtures/make_fixtures.py` and `make_checkpoints.py` write (the pytest fixtures
`round3_inputs` and `round3_checkpoints` of tests/conftest.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from extras import require
from PIL import Image

CONFIGS = {  # round3-fixtures/cfg, as they were
    "bs_float": '{"model": "lenet", "epochs": 1, "batch_size": 12.5}',
    "dataset_int": '{"model": "lenet", "epochs": 1, "dataset": 5}',
    "det_str": '{"model": "lenet", "epochs": 1, "deterministic": "yes"}',
    "dup_keys": '{"model":"lenet","epochs":1,"epochs":0}',
    "epochs_true": '{"model": "lenet", "epochs": true}',
    "kw_nested": '{"model": "lenet", "epochs": 1, "model_kwargs": {"activation": {"a": 1}}}',
    "lr_list": '{"model": "lenet", "epochs": 1, "lr": [0.1]}',
    "mp_bool": '{"model": "lenet", "epochs": 1, "mixed_precision": true}',
    "nan_mom": '{"model":"lenet","epochs":1,"momentum":NaN}',
    "output_int": '{"model": "lenet", "epochs": 1, "output": 5}',
    "resume_int": '{"model": "lenet", "epochs": 1, "resume": 7}',
    "strategy_null": '{"model": "lenet", "epochs": 1, "strategy": null}',
    "tf_str": '{"model": "lenet", "epochs": 1, "train_fraction": "0.5"}',
    "ws_neg_bs": '{"model": "lenet", "epochs": 1, "batch_shards": -2}',
}
GRIDS = {  # round3-fixtures/grid, as they were
    "cells_obj": '{"name": "g5", "cells": {"a": {"model": "lenet"}}}',
    "defaults_list": '{"name": "g6", "defaults": [1], "cells": [{"name": "a", "model": "lenet"}]}',
    "dup": '{"name": "g8", "cells": [{"name": "a", "model": "lenet"}, '
           '{"name": "a", "model": "alexnet"}]}',
    "epochs_str": '{"name": "g7", "defaults": {"epochs": "2"}, '
                  '"cells": [{"name": "a", "model": "lenet"}]}',
    "seedstrue": '{"name": "g3", "seeds": true, "cells": [{"name": "a", "model": "lenet"}]}',
}
SEARCHES = {  # search.json of a --directory that holds another (or an unreadable) search
    "s_list": "[1, 2]",
    "s_badjson": '{"tuner": "random",',
    "s_nocfg": '{"tuner": "random", "space": {}}',
    "s_tuner_int": '{"tuner": 5, "space": {}, "config": {}}',
    "s_space_str": '{"tuner": "random", "space": "abc", "config": {}}',
    "s_lenet": '{"tuner": "random", "space": {}, "config": {"model": "lenet"}}',
}
# trials/ of a --directory whose keras-tuner state is damaged (the round's fixture was not
# recorded): a cut oracle.json, or a cut trial.json beside a sound oracle. keras-tuner reloads
# only where its tuner file (tuner0.json) is.
TUNER_STATES = {
    "s_oracle_bad": {"oracle.json": '{"ongoing_trials": {}, "tried_so_far": [',
                     "tuner0.json": "{}"},
    "s_trial_bad": {"oracle.json": "{}", "tuner0.json": "{}",
                    "trial_0/trial.json": '{"trial_id": "0", "hyperparameters": '},
}


def _grey(path: Path, size=(8, 8), value=9, mode="L", **save) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value).save(path, **save)


def write_round3_fixtures(fx: Path) -> Path:
    """The configs, grids, searches, images and folders of round3.tsv under `fx`."""
    for folder, files in (("cfg", CONFIGS), ("grid", GRIDS)):
        (fx / folder).mkdir(parents=True)
        for name, text in files.items():
            (fx / folder / f"{name}.json").write_text(text)
    for name, text in SEARCHES.items():
        (fx / name).mkdir()
        (fx / name / "search.json").write_text(text)
    for name, state in TUNER_STATES.items():
        for relative, text in state.items():
            (fx / name / "trials" / relative).parent.mkdir(parents=True, exist_ok=True)
            (fx / name / "trials" / relative).write_text(text)
    img = fx / "img"
    _grey(img / "one.png", (1, 1), 128)
    _grey(img / "wide.png", (100000, 1), 128)
    _grey(img / "tall.png", (1, 60000), 128)
    _grey(img / "cmyk.jpg", (16, 16), (0, 50, 100, 0), "CMYK")
    _grey(img / "g16.png", (16, 16), 40000, "I;16")
    _grey(img / "pal.png", (16, 16), 3, "P")
    _grey(img / "la.png", (16, 16), (100, 0), "LA")
    _grey(img / "realjpeg.png", (20, 20), 200, format="JPEG")
    (img / "script.png").write_text("#!/bin/sh\necho hi\n")
    _grey(img / "[1].png")
    _grey(fx / "loopdir" / "sub" / "a.png")
    os.symlink(fx / "loopdir", fx / "loopdir" / "sub" / "loop")
    _grey(fx / "badpng_dir" / "ok.png")
    (fx / "badpng_dir" / "x.png").write_text("not a png")
    (fx / "emptydir").mkdir()
    os.symlink("/nonexistent/x.png", fx / "img_dangling.png")
    _grey(fx / "cls" / "cat" / "a.png")
    _grey(fx / "cls" / "3" / "a.png")
    (fx / "names.txt").write_text("".join(f"{n}\n" for n in range(10)))
    (fx / "names2.txt").write_text("a\nb\n")
    np.savez(fx / "strlabels.npz", images=np.zeros((10, 16, 16, 1), np.uint8),
             labels=np.array(["a"] * 10))
    return fx


def write_checkpoints(pt: Path) -> Path:
    """round3-fixtures/make_checkpoints.py: PyTorch checkpoints and their sidecar files."""
    require("torch")  # skips without the extra, fails under CI
    import torch

    from keras_cnns.reference import build_reference

    pt.mkdir()
    torch.save([1, 2, 3], pt / "list.pt")
    torch.save(torch.zeros(3), pt / "tensor.pt")
    torch.save({"a": 1, "b": "x"}, pt / "dict_nontensor.pt")
    torch.save({"state_dict": {"conv1.weight": [1, 2]}}, pt / "wrapped_lists.pt")
    torch.save(build_reference("alexnet2012", input_shape=(224, 224, 3),
                               num_classes=5).state_dict(), pt / "tv5.pt")
    lenet = build_reference("lenet", input_shape=(28, 28, 1), num_classes=10).state_dict()

    def spec(name, shape):
        return json.dumps({"reference": {"name": name, "input_shape": shape, "num_classes": 10,
                                         "options": {}}})

    for name, sidecar in [("badside", "{oops"), ("resnet", spec("resnet", [28, 28, 1])),
                          ("shape0", spec("lenet", [0, 0, 1])), ("ok", None)]:
        torch.save(lenet, pt / f"lenet_{name}.pt")
        if sidecar:
            (pt / f"lenet_{name}.json").write_text(sidecar)
    torch.save({k: v.clone().fill_(float("nan")) for k, v in lenet.items()}, pt / "lenet_nan.pt")
    (pt / "zero.pt").write_bytes(b"")
    return pt
