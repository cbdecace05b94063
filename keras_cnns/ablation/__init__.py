"""The seed's thesis, measured: a grid of training runs, one piece of the stack at a time.

    grid = load_grid(preset_path("quick"), overrides={"epochs": 2})
    rows = run_grid(grid, Path("runs/ablation-digits"), on_progress=...)
    write_outputs(Path("runs/ablation-digits"), grid, rows)

`grid` reads grids (JSON, shipped in `grids/`), `runs` trains them through
`keras_cnns.training.train`, `results` reads each run back from its files, `report` writes
report.md: the table, then either the seed's claims (`claims`) or the comparisons and goals the
grid declares (`verdicts`), both read by the one rule of `compare`; `figure` draws
ablation.png, `outputs` writes them all.
"""

from keras_cnns.ablation.grid import PRESETS, Cell, Grid, load_grid, preset_path
from keras_cnns.ablation.outputs import write_outputs
from keras_cnns.ablation.runs import default_output, run_grid, stored_runs

__all__ = [
    "PRESETS",
    "Cell",
    "Grid",
    "default_output",
    "load_grid",
    "preset_path",
    "run_grid",
    "stored_runs",
    "write_outputs",
]
