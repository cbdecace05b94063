"""Ablation report: each claim's sentence, and each verdict a grid declares (a cell against its
baseline, a goal), is computed from the numbers, and says so."""

import dataclasses

import pytest

from keras_cnns.ablation import claims as report
from keras_cnns.ablation import grid as grid_lib
from keras_cnns.ablation import verdicts
from keras_cnns.ablation.grid import Goal
from keras_cnns.ablation.report import render_report
from keras_cnns.ablation.results import CellSummary, mean_std


# -- the sentences --------------------------------------------------------------------------
def summary(name, accuracy, *, std=0.002, gap=0.01, epochs_to=3, best_val=None, ips=500.0,
            model=None, fraction=1.0, scale_of=None):
    return CellSummary(
        name=name, note="", model=model or name.split("-")[0], train_fraction=fraction,
        data_scale_of=scale_of, planned_seeds=3, runs=3, failed=[],
        test_accuracy=(accuracy, std), gap=(gap, 0.002), epochs_to_best_share=epochs_to,
        best_val_accuracy=best_val if best_val is not None else accuracy + 0.005,
        images_per_second=ips, wall_seconds=900.0, train_images=54_000, epochs=8,
        params=1, num_classes=10,
    )


@pytest.fixture
def cells():
    made = [
        summary("lenet-classic", 0.880, gap=0.02, ips=9000),
        summary("lenet-modern", 0.900, gap=0.03, ips=8000),
        summary("alexnet-sigmoid", 0.850, epochs_to=7),
        summary("alexnet-no-dropout", 0.915, gap=0.06),
        summary("alexnet-no-augment", 0.905, gap=0.04),
        summary("alexnet", 0.925, gap=0.01, epochs_to=3, ips=450),
        summary("lenet-modern-5pct", 0.80, fraction=0.05, scale_of="lenet-modern",
                model="lenet"),
        summary("alexnet-5pct", 0.79, fraction=0.05, scale_of="alexnet", model="alexnet"),
    ]
    return {cell.name: cell for cell in made}


def sentences(cells, dataset="fashion_mnist", devices=("CPU",)):
    return report.claim_sentences(cells, dataset, list(devices))


def test_each_claim_sentence_states_its_numbers(cells):
    lenet, relu, dropout, augment, compute, scale = sentences(cells)
    assert lenet == (
        "On fashion_mnist, AlexNet scored 0.925 ± 0.002 against 0.900 ± 0.002 for LeNet-5's "
        "best (lenet-modern), a difference of +2.5 points, as the seed says: on harder images "
        "AlexNet pulls ahead."
    )
    assert relu.startswith("AlexNet reached 95% of its best validation accuracy in 3 epochs "
                           "with ReLU against 7 with sigmoid")
    assert "(+7.5 points), as the seed says." in relu
    assert dropout.startswith("The train-test gap was 1.0 points with dropout against 6.0 ")
    assert dropout.endswith("as the seed says: dropout reduced over-fitting.")
    assert "(+2.0 points)" in augment and "augmentation helped it generalise" in augment
    assert "AlexNet trained at 450 img/s against LeNet-5's 8,000 (17.8x" in compute
    assert "on a GPU" in compute
    assert scale == (
        "AlexNet's lead over LeNet-5 (lenet-modern) was -1.0 points at 5%, +2.5 points at 100% "
        "of the training data: it grew with data, as the seed says."
    )


def test_changing_a_number_changes_the_sentence(cells):
    before = sentences(cells)
    cells["alexnet-sigmoid"] = summary("alexnet-sigmoid", 0.850, epochs_to=5)
    assert "against 5 with sigmoid" in sentences(cells)[1] and sentences(cells)[1] != before[1]
    # Without augmentation now clearly better: the sentence turns against the seed.
    cells["alexnet-no-augment"] = summary("alexnet-no-augment", 0.945)
    assert sentences(cells)[3].endswith("augmentation cost accuracy, which goes against the "
                                        "seed.")
    # Within the seeds' noise: too close to call.
    cells["alexnet-no-augment"] = summary("alexnet-no-augment", 0.921, std=0.004)
    assert "too close to call" in sentences(cells)[3]
    # A lead that shrinks with data contradicts claim 6.
    cells["alexnet-5pct"] = summary("alexnet-5pct", 0.84, fraction=0.05, scale_of="alexnet")
    assert sentences(cells)[5].endswith("it shrank with data, which goes against the seed.")


def test_claim_one_reads_differently_on_digits(cells):
    cells["alexnet"] = summary("alexnet", 0.905)
    on_digits = sentences(cells, dataset="digits")[0]
    on_fashion = sentences(cells)[0]
    assert on_digits.endswith("too small to matter, as the seed says: LeNet is enough for these "
                              "images.")
    assert on_fashion.endswith("too close to call, which goes against the seed: LeNet-5 was "
                               "about as good here.")


def test_a_network_stuck_at_chance_is_named_not_compared(cells):
    cells["alexnet-sigmoid"] = summary("alexnet-sigmoid", 0.10, best_val=0.101, epochs_to=1)
    relu = sentences(cells)[1]
    assert "with sigmoid it never left chance (best validation accuracy 0.101" in relu
    assert relu.endswith("as the seed says.")
    cells["alexnet"] = summary("alexnet", 0.10, best_val=0.11)
    assert sentences(cells)[2] == (
        "alexnet (best validation accuracy 0.110 after 8 epochs) never left chance (0.100), "
        "so this budget does not test the claim."
    )


def test_missing_cells_are_said_not_guessed(cells):
    del cells["alexnet-no-dropout"]
    cells["alexnet-no-augment"] = dataclasses.replace(
        cells["alexnet-no-augment"], test_accuracy=None, runs=0
    )
    _, _, dropout, augment, _, _ = sentences(cells)
    assert dropout == ("Dropout: not measured (no cell 'alexnet-no-dropout': not in the grid, or "
                       "not in --cells).")
    assert augment == (
        "Augmentation: not measured yet (cell 'alexnet-no-augment' has no finished run)."
    )


def test_the_report_is_a_function_of_its_numbers(cells):
    def render(values):
        return render_report("default", "", ["fashion_mnist"], list(values.values()),
                             ["CPU"], ["a machine"], 10, declares_verdicts=False)

    text = render(cells)
    assert text == render(cells)
    assert text.startswith("# Ablation `default` on fashion_mnist\n\nDevice: CPU. Machine: a "
                           "machine.")
    assert "| alexnet |  | 3 | 0.9250 ± 0.0020 | +1.0 ± 0.2 | 3 | 15.0 | 450 | 1 |" in text
    assert text.count("\n1. ") == 1 and "\n6. *Data scale" in text


# -- a grid's own comparisons and goals -----------------------------------------------------
def judged(cell_accuracy, cell_std, base_accuracy=0.900, base_std=0.002):
    """The verdict of a cell with `cell_accuracy` against a baseline, both over 3 seeds."""
    base = summary("alexnet", base_accuracy, std=base_std)
    cell = dataclasses.replace(summary("alexnet-trick", cell_accuracy, std=cell_std),
                               compare_to=("alexnet",))
    (comparison,) = verdicts.comparisons([base, cell])
    return comparison


def test_a_cell_helps_hurts_or_is_within_seed_noise():
    helps = judged(0.920, 0.002)
    assert (helps.verdict, helps.difference_points, helps.noise_points) == ("helps", 2.0, 1.0)
    assert helps.sentence == (
        "**alexnet-trick** against alexnet: 0.9200 ± 0.0020 against 0.9000 ± 0.0020, "
        "+2.00 points, **helps** (noise band ±1.00 points); train-test gap +1.0 against +1.0 "
        "points.")
    assert judged(0.880, 0.002).verdict == "hurts"
    assert judged(0.905, 0.002).verdict == "within seed noise"
    # Seeds that spread by 1 point widen the band to twice their combined spread: 2.83 points.
    wide = judged(0.925, 0.010, base_std=0.010)
    assert (wide.verdict, wide.noise_points) == ("within seed noise", 2.8284)
    assert judged(0.930, 0.010, base_std=0.010).verdict == "helps"
    # One seed: no spread, the 1-point floor alone, and the sentence says so.
    single = judged(0.911, None, base_std=None)
    assert single.verdict == "helps" and single.sentence.startswith(
        "**alexnet-trick** against alexnet: 0.9110 against 0.9000, +1.10 points, **helps** "
        "(noise band ±1.00 points; one seed, no spread measured); train-test gap")


def test_a_comparison_that_cannot_be_read_says_why():
    base = summary("alexnet", 0.10, best_val=0.105)
    cell = dataclasses.replace(summary("alexnet-ema", 0.90), compare_to=("alexnet",))
    (stuck,) = verdicts.comparisons([base, cell])
    assert stuck.verdict is None and stuck.sentence == (
        "alexnet-ema against alexnet: alexnet (best validation accuracy 0.105 after 8 epochs) "
        "never left chance (0.100), so this budget does not test this comparison.")
    pending = dataclasses.replace(base, test_accuracy=None, runs=0)
    (missing,) = verdicts.comparisons([pending, cell])
    assert missing.verdict is None and missing.sentence == (
        "Alexnet-ema against alexnet: not measured yet (cell 'alexnet' has no finished run).")


def goal_cell(accuracies, goal, planned=None, epochs=40):
    cell = summary("lenet", 0.0)
    return dataclasses.replace(
        cell, test_accuracies=list(accuracies), test_accuracy=mean_std(accuracies),
        runs=len(accuracies), planned_seeds=planned or len(accuracies), goal=goal,
        epochs=epochs)


def test_goals_are_judged_on_the_seeds_together():
    every = Goal(0.97, "min", max_epochs=40)
    met = verdicts.check_goal(goal_cell([0.9805, 0.9833, 0.9889, 0.9833, 0.9805], every))
    assert (met.verdict, met.value) == ("met", 0.9805)
    assert met.sentence == (
        "**lenet**: test accuracy >= 0.970 at every one of its 5 seeds in at most 40 epochs: "
        "the seeds gave 0.9805, 0.9833, 0.9889, 0.9833, 0.9805, min 0.9805 (+1.05 points) in "
        "40 epochs: **met**.")
    one_low = verdicts.check_goal(goal_cell([0.99, 0.965, 0.99, 0.99, 0.99], every))
    assert (one_low.verdict, one_low.value) == ("not met", 0.965)
    too_long = verdicts.check_goal(goal_cell([0.99] * 5, every, epochs=60))
    assert too_long.verdict == "not met" and "but in 60 epochs" in too_long.sentence
    median = verdicts.check_goal(goal_cell([0.9861, 0.9944, 0.9889], Goal(0.99, "median")))
    assert (median.verdict, median.value) == ("not met", 0.9889)
    assert "median 0.9889 (-0.11 points)" in median.sentence
    mean = verdicts.check_goal(goal_cell([0.9861, 0.9944, 0.9889], Goal(0.989, "mean")))
    assert mean.verdict == "met"  # 0.98980 on average
    partial = verdicts.check_goal(goal_cell([0.9861], Goal(0.99), planned=3))
    assert (partial.verdict, partial.value) == ("not judged", None)
    assert partial.sentence.endswith("not judged yet, 1 of 3 seeds finished (0.9861).")


def test_a_grid_with_verdicts_reports_them_instead_of_the_claims(cells):
    base = cells["alexnet"]
    trick = dataclasses.replace(summary("alexnet-ema", 0.940), compare_to=("alexnet",))
    goal = dataclasses.replace(goal_cell([0.95, 0.96, 0.97], Goal(0.93)), name="lenet")
    text = render_report("decade", "", ["fashion_mnist"], [base, trick, goal], ["CPU"], ["m"], 0,
                         declares_verdicts=True)
    assert "## Each cell against its baseline" in text and "## Goals" in text
    assert "\n- **alexnet-ema** against alexnet: 0.9400 ± 0.0020 against 0.9250 ± 0.0020, " \
        "+1.50 points, **helps**" in text
    assert "\n- **lenet**: test accuracy >= 0.930 at the median of its 3 seeds" in text
    assert "seed's claims" not in text
    claims_only = render_report("default", "", ["fashion_mnist"], list(cells.values()), ["CPU"],
                                ["m"], 10, declares_verdicts=False)
    assert "## Goals" not in claims_only and "against its baseline" not in claims_only
    # `--cells alexnet` keeps the decade grid's verdicts: no seed's claims for a baseline alone.
    assert grid_lib.load_grid(grid_lib.preset_path("decade"), cells=["alexnet"]).declares_verdicts
    assert not grid_lib.load_grid(grid_lib.preset_path("default")).declares_verdicts
    baseline_only = render_report("decade", "", ["fashion_mnist"], [base], ["CPU"], ["m"], 0,
                                  declares_verdicts=True)
    assert "seed's claims" not in baseline_only and "not measured" not in baseline_only
