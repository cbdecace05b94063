"""What the tuning tests share: tiny trial configs, a search run in this process, the commands'
environment, and the reading of a search directory's trials."""

import json
import os
import re
import sys
from pathlib import Path

from keras_cnns import tuning
from keras_cnns.config import RunConfig

ROOT = Path(__file__).resolve().parent.parent
TUNE = [sys.executable, str(ROOT / "scripts" / "tune.py")]
TRAIN = [sys.executable, str(ROOT / "scripts" / "train.py")]
# Small images, one epoch, no XLA: each trial costs seconds, not the recipe's minutes.
TINY = {"lenet": dict(image_size=16), "alexnet": dict(image_size=64)}
TINY_FLAGS = ["--model", "lenet", "--image-size", "16", "--epochs", "1", "--warmup-epochs", "0",
              "--no-jit-compile"]
DONE = re.compile(r"\[(\S+)\] trial (\S+) done:")


def tiny_config(model: str, **overrides) -> RunConfig:
    values = dict(model=model, epochs=1, warmup_epochs=0, jit_compile=False, **TINY[model])
    values.update(overrides)
    return RunConfig(**values).resolve()


def search(directory, model="lenet", max_trials=2, space=None, epochs=1, **kwargs):
    config = kwargs.pop("config", None) or tiny_config(model)
    space = space or tuning.default_space(model)
    return tuning.run_search(config, space, directory=directory, max_trials=max_trials,
                             epochs=epochs, log=lambda line: None, **kwargs)


def trial_files(directory: Path) -> dict[str, str]:
    return {p.parent.name: p.read_text() for p in (directory / "trials").glob("trial_*/trial.json")}


def env(**extra) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KERASTUNER_")}
    return {**clean, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


def completed(directory: Path) -> dict[str, str]:
    return {name: text for name, text in trial_files(directory).items()
            if json.loads(text)["status"] == "COMPLETED"}
