"""Train a model and export it: `python scripts/train.py --model NAME` (`--help` lists them).

Flags map one to one onto RunConfig fields (`--help` lists them with their
defaults); `--config run.json` loads a config, an export's manifest or a
tuner's best.json, and flags beside it override it. Given an export's
manifest, the run retrains it and reports whether the result reproduces it
(exit status 1 when it does not).
"""

from keras_cnns.commands.cli import user_errors

PROG = "train.py"


def main(argv=None, prog: str = PROG) -> int:
    from keras_cnns.commands.flags import parse_config

    config, args = parse_config(argv, prog=prog, description=__doc__.splitlines()[0])
    with user_errors(prog):
        from keras_cnns.export import read_manifest
        from keras_cnns.training import train
        from keras_cnns.training.reproduction import judge, recorded_manifest

        reference = recorded_manifest(getattr(args, "config", None))
        result = train(config)
        metrics = result.metrics
        print()
        top5 = metrics.get("test_top5_accuracy")
        print(
            f"test accuracy  {metrics['test_accuracy']:.4f}  "
            + (f"top-5 {top5:.4f}  " if top5 is not None else "")
            + f"(loss {metrics['test_loss']:.4f}, {metrics['test_examples']} images)"
        )
        print(f"run directory  {result.run_dir}")
        print(f"export         {result.export_dir}")
        if reference is not None and result.export_dir is not None:
            status, verdict = judge(reference, result.config.to_dict(),
                                    read_manifest(result.export_dir))
            print(f"reproduction   {verdict}")
            return status
    return 0
