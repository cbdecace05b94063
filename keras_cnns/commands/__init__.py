"""The command lines' bodies, so that an installed copy runs them without the source tree.

`scripts/train.py` and `scripts/tune.py` are thin shims over `train.main` and `tune.main`;
`python -m keras_cnns.train` / `keras_cnns.tune` and the console scripts `keras-cnns-train` /
`keras-cnns-tune` (pyproject `[project.scripts]`) call `run()`. Only this package and
`scripts/` import the command-line helper `keras_cnns.runner`; the library never does
(tests/test_packaging.py checks).
"""
