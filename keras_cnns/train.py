"""`python -m keras_cnns.train`: scripts/train.py in an installed copy (commands/train.py)."""

if __name__ == "__main__":
    from keras_cnns.commands.train import run

    raise SystemExit(run())
