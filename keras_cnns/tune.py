"""`python -m keras_cnns.tune`: scripts/tune.py in an installed copy (commands/tune.py)."""

if __name__ == "__main__":
    from keras_cnns.commands.tune import run

    raise SystemExit(run())
