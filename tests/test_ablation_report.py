"""Ablation report: each claim's sentence is computed from the numbers, and says so."""

import dataclasses

import pytest

from keras_cnns.ablation import claims as report
from keras_cnns.ablation.results import CellSummary


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
    assert dropout == "Dropout: not measured (the grid has no cell 'alexnet-no-dropout')."
    assert augment == (
        "Augmentation: not measured yet (cell 'alexnet-no-augment' has no finished run)."
    )


def test_the_report_is_a_function_of_its_numbers(cells):
    def render(values):
        return report.render_report("default", "", ["fashion_mnist"], list(values.values()),
                                    ["CPU"], ["a machine"], 10)

    text = render(cells)
    assert text == render(cells)
    assert text.startswith("# Ablation `default` on fashion_mnist\n\nDevice: CPU. Machine: a "
                           "machine.")
    assert "| alexnet |  | 3 | 0.9250 ± 0.0020 | +1.0 ± 0.2 | 3 | 15.0 | 450 | 1 |" in text
    assert text.count("\n1. ") == 1 and "\n6. *Data scale" in text
