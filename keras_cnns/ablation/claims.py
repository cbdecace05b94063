"""The seed's six claims, one sentence each, computed from the cells' numbers.

The sentences read cells by their names in the built-in grids (`alexnet`, `alexnet-sigmoid`,
`lenet-modern`, ...); a claim whose cells are missing or failed says so instead. A difference
counts as clear by `compare.py`'s rule (more than 1 percentage point and more than twice the
seeds' combined standard deviation); otherwise the sentence calls it too close to call.
"""

from __future__ import annotations

from keras_cnns.ablation.compare import (
    CLEAR_POINTS,
    accuracy_text,
    at_chance,
    chance,
    diff_points,
    epochs_text,
    is_clear,
    measured,
    minutes_text,
    missing_sentence,
    never_learned,
)
from keras_cnns.ablation.results import CellSummary

# Data sets the seed calls "small, clean, centred" (claim 1).
SIMPLE_DATASETS = ("digits", "mnist")

SUPPORTS = "as the seed says"
AGAINST = "which goes against the seed"

CLAIMS = (
    "LeNet is enough for small, clean, centred data, not for harder images",
    "ReLU made optimisation far easier than sigmoid",
    "Dropout reduced over-fitting in the large classifier head",
    "Data augmentation helped the model generalise",
    "GPU training made the recipe feasible",
    "Data scale was part of the win: a bigger network needs more data to pay off",
)


# -- the sentences --------------------------------------------------------------------------
def claim_sentences(cells: dict[str, CellSummary], dataset: str, devices: list[str]) -> list[str]:
    """One sentence per claim in `CLAIMS`, from the cells' numbers."""
    return [
        lenet_enough(cells, dataset),
        relu_sentence(cells),
        dropout_sentence(cells),
        augment_sentence(cells),
        compute_sentence(cells, devices),
        data_scale_sentence(cells),
    ]


def lenet_enough(cells: dict[str, CellSummary], dataset: str) -> str:
    missing = missing_sentence(cells, ["alexnet"], "LeNet against AlexNet")
    lenets = [cells[n] for n in ("lenet-classic", "lenet-modern") if measured(cells, n)]
    if missing or not lenets:
        return missing or missing_sentence(cells, ["lenet-modern"], "LeNet against AlexNet")
    alexnet = cells["alexnet"]
    lenet = max(lenets, key=lambda cell: cell.test_accuracy[0])
    stuck = never_learned(alexnet, lenet)
    if stuck:
        return stuck
    lead = diff_points(alexnet.test_accuracy, lenet.test_accuracy)
    clear = is_clear(alexnet.test_accuracy, lenet.test_accuracy)
    head = (
        f"On {dataset}, AlexNet scored {accuracy_text(alexnet)} against "
        f"{accuracy_text(lenet)} for LeNet-5's best ({lenet.name}), a difference of "
        f"{lead:+.1f} points"
    )
    if dataset in SIMPLE_DATASETS:
        if not clear:
            return f"{head}, too small to matter, {SUPPORTS}: LeNet is enough for these images."
        if lead > 0:
            return f"{head}: AlexNet pulled clearly ahead, {AGAINST}, even on these images."
        return f"{head}: LeNet-5 did better, {SUPPORTS}: LeNet is enough for these images."
    if clear and lead > 0:
        return f"{head}, {SUPPORTS}: on harder images AlexNet pulls ahead."
    if not clear:
        return f"{head}, too close to call, {AGAINST}: LeNet-5 was about as good here."
    return f"{head}: LeNet-5 did better, {AGAINST}."


def relu_sentence(cells: dict[str, CellSummary]) -> str:
    missing = missing_sentence(cells, ["alexnet", "alexnet-sigmoid"], "ReLU against sigmoid")
    if missing:
        return missing
    relu, sigmoid = cells["alexnet"], cells["alexnet-sigmoid"]
    chance_level = chance(relu)
    stuck = [cell for cell in (relu, sigmoid) if at_chance(cell)]
    if len(stuck) == 2:
        return (
            f"Neither ReLU nor sigmoid AlexNet left chance in {relu.epochs} epochs (best "
            f"validation accuracy {relu.best_val_accuracy:.3f} and "
            f"{sigmoid.best_val_accuracy:.3f}, chance {chance_level:.3f}), so this budget does not "
            "test the claim."
        )
    if stuck == [sigmoid]:
        return (
            f"AlexNet with ReLU reached 95% of its best validation accuracy in "
            f"{epochs_text(relu.epochs_to_best_share)} epochs and scored "
            f"{accuracy_text(relu)}; with sigmoid it never left chance (best validation "
            f"accuracy {sigmoid.best_val_accuracy:.3f}, chance {chance_level:.3f}), {SUPPORTS}."
        )
    if stuck == [relu]:
        return (
            f"AlexNet with ReLU never left chance (best validation accuracy "
            f"{relu.best_val_accuracy:.3f}) while sigmoid scored {accuracy_text(sigmoid)}, "
            f"{AGAINST}."
        )
    diff = diff_points(relu.test_accuracy, sigmoid.test_accuracy)
    clear = is_clear(relu.test_accuracy, sigmoid.test_accuracy)
    faster = relu.epochs_to_best_share < sigmoid.epochs_to_best_share
    head = (
        f"AlexNet reached 95% of its best validation accuracy in "
        f"{epochs_text(relu.epochs_to_best_share)} epochs with ReLU against "
        f"{epochs_text(sigmoid.epochs_to_best_share)} with sigmoid, and scored "
        f"{accuracy_text(relu)} against {accuracy_text(sigmoid)} ({diff:+.1f} points)"
    )
    if clear and diff < 0:
        return f"{head}, {AGAINST}: sigmoid trained better here."
    if (clear and diff > 0) or faster:
        return f"{head}, {SUPPORTS}."
    return f"{head}: no faster and no clearly better with ReLU, {AGAINST} at this budget."


def _with_and_without(cells: dict[str, CellSummary], without: str, what: str):
    """AlexNet's cell and the one `without` a piece of the stack; or the sentence saying why
    they cannot be compared."""
    missing = missing_sentence(cells, ["alexnet", without], what)
    if missing:
        return missing
    pair = cells["alexnet"], cells[without]
    return never_learned(*pair) or pair


def dropout_sentence(cells: dict[str, CellSummary]) -> str:
    pair = _with_and_without(cells, "alexnet-no-dropout", "Dropout")
    if isinstance(pair, str):
        return pair
    with_, without = pair
    if with_.gap is None or without.gap is None:
        return "Dropout: not measured (no train accuracy was recorded for these runs)."
    head = (
        f"The train-test gap was {with_.gap[0] * 100:.1f} points with dropout against "
        f"{without.gap[0] * 100:.1f} without, and test accuracy {accuracy_text(with_)} against "
        f"{accuracy_text(without)}"
    )
    if is_clear(without.gap, with_.gap):
        if without.gap[0] > with_.gap[0]:
            return f"{head}, {SUPPORTS}: dropout reduced over-fitting."
        return f"{head}: the gap was wider with dropout, {AGAINST}."
    return f"{head}: no clear difference in over-fitting, {AGAINST} at this budget."


def augment_sentence(cells: dict[str, CellSummary]) -> str:
    pair = _with_and_without(cells, "alexnet-no-augment", "Augmentation")
    if isinstance(pair, str):
        return pair
    with_, without = pair
    diff = diff_points(with_.test_accuracy, without.test_accuracy)
    head = (
        f"AlexNet scored {accuracy_text(with_)} with augmentation against "
        f"{accuracy_text(without)} without ({diff:+.1f} points)"
    )
    if with_.gap is not None and without.gap is not None:
        head += (
            f", with a train-test gap of {with_.gap[0] * 100:.1f} against "
            f"{without.gap[0] * 100:.1f} points"
        )
    if not is_clear(with_.test_accuracy, without.test_accuracy):
        return f"{head}: too close to call, {AGAINST} at this budget."
    if diff > 0:
        return f"{head}, {SUPPORTS}: augmentation helped it generalise."
    return f"{head}: augmentation cost accuracy, {AGAINST}."


def compute_sentence(cells: dict[str, CellSummary], devices: list[str]) -> str:
    lenet_name = next((n for n in ("lenet-modern", "lenet-classic") if measured(cells, n)), None)
    missing = missing_sentence(cells, ["alexnet", lenet_name or "lenet-modern"], "Compute")
    if missing:
        return missing
    alexnet, lenet = cells["alexnet"], cells[lenet_name]
    if not alexnet.images_per_second or not lenet.images_per_second:
        return "Compute: not measured (no training time was recorded)."
    ratio = lenet.images_per_second / alexnet.images_per_second
    where = "; ".join(devices) or "this machine"
    head = (
        f"On {where}, AlexNet trained at {alexnet.images_per_second:,.0f} img/s against "
        f"LeNet-5's {lenet.images_per_second:,.0f} ({ratio:.1f}x the time per image), so one "
        f"{alexnet.epochs}-epoch AlexNet run on {alexnet.train_images:,} images took "
        f"{minutes_text(alexnet.wall_seconds)} min"
    )
    if any(device.startswith("GPU") for device in devices):
        return f"{head}: this is the GPU figure the seed's claim is about."
    return (
        f"{head}; the claim is about GPUs, so compare this img/s column with the same command "
        "on a GPU (README: --strategy mirrored)."
    )


def data_scale_sentence(cells: dict[str, CellSummary]) -> str:
    missing = missing_sentence(cells, ["alexnet", "lenet-modern"], "Data scale")
    if missing:
        return missing
    curves = {base: _by_fraction(cells, base) for base in ("alexnet", "lenet-modern")}
    fractions = sorted(set(curves["alexnet"]) & set(curves["lenet-modern"]))
    if len(fractions) < 2:
        return (
            "Data scale: not measured (the grid has no smaller-data cells of both alexnet and "
            "lenet-modern, such as alexnet-5pct and lenet-modern-5pct)."
        )
    stuck = never_learned(*(curves[base][f] for base in curves for f in fractions))
    if stuck:
        return stuck
    leads = {
        f: diff_points(curves["alexnet"][f].test_accuracy, curves["lenet-modern"][f].test_accuracy)
        for f in fractions
    }
    steps = ", ".join(f"{leads[f]:+.1f} points at {_percent(f)}" for f in fractions)
    head = f"AlexNet's lead over LeNet-5 (lenet-modern) was {steps} of the training data"
    change = leads[fractions[-1]] - leads[fractions[0]]
    if change >= CLEAR_POINTS:
        return f"{head}: it grew with data, {SUPPORTS}."
    if change <= -CLEAR_POINTS:
        return f"{head}: it shrank with data, {AGAINST}."
    return f"{head}: flat within {CLEAR_POINTS:g} point, {AGAINST} at this scale."


def _by_fraction(cells: dict[str, CellSummary], base: str) -> dict[float, CellSummary]:
    found = {1.0: cells[base]} if measured(cells, base) else {}
    for cell in cells.values():
        if cell.data_scale_of == base and cell.measured:
            found[cell.train_fraction] = cell
    return found


def _percent(fraction: float) -> str:
    return f"{fraction * 100:g}%"
