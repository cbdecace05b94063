"""Hyperparameter search over the registry's models with keras-tuner.

    from keras_cnns.config import RunConfig
    from keras_cnns.tuning import default_space, run_search, write_reports

    config = RunConfig(model=NAME).resolve()     # NAME: any of models.list_models()
    result = run_search(config, default_space(NAME),
                        directory=f"tuning/runs/{NAME}-digits", tuner="random", max_trials=10)
    write_reports(result)          # best.json, results.csv, results.png

Search spaces are data (each model's registry entry, or a JSON file; see `space.py`); the
hypermodel builds, compiles and trains through the trainer's own functions (`hypermodel.py`);
`search.py` runs, resumes and distributes the search; `report.py` writes what it found.
"""

from keras_cnns.tuning.hypermodel import OBJECTIVE, CNNHyperModel
from keras_cnns.tuning.results_table import (
    format_table,
    plot_results,
    summary,
    write_best,
    write_csv,
    write_reports,
)
from keras_cnns.tuning.search import (
    TUNERS,
    SearchResult,
    TrialRecord,
    TuningError,
    best_trial,
    hyperband_trials,
    make_tuner,
    role,
    run_search,
    search_epochs,
)
from keras_cnns.tuning.space import (
    HYPERPARAMETERS,
    Choices,
    Range,
    SearchSpace,
    default_space,
    load_space,
    space_from_dict,
)

__all__ = [
    "HYPERPARAMETERS",
    "OBJECTIVE",
    "TUNERS",
    "CNNHyperModel",
    "Choices",
    "Range",
    "SearchResult",
    "SearchSpace",
    "TrialRecord",
    "TuningError",
    "best_trial",
    "default_space",
    "format_table",
    "hyperband_trials",
    "load_space",
    "make_tuner",
    "plot_results",
    "role",
    "run_search",
    "search_epochs",
    "space_from_dict",
    "summary",
    "write_best",
    "write_csv",
    "write_reports",
]
