"""report.md: the per-cell table, then one sentence per seed claim computed from its numbers.

The sentences read cells by their names in the built-in grids (`alexnet`, `alexnet-sigmoid`,
`lenet-modern`, ...); a claim whose cells are missing or failed says so instead. A difference
counts as clear when it is larger than `CLEAR_POINTS` percentage points and larger than twice
the seeds' combined standard deviation; otherwise the sentence calls it too close to call.
"""

from __future__ import annotations

import math

from keras_cnns.ablation.results import BEST_SHARE, CellSummary

CLEAR_POINTS = 1.0
# A network whose best validation accuracy stays this close to chance never started learning.
CHANCE_MARGIN = 0.05
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


def render_report(
    grid_name: str,
    description: str,
    datasets: list[str],
    summaries: list[CellSummary],
    devices: list[str],
    machines: list[str],
    seed_budget_minutes: float,
) -> str:
    """The whole report.md; the same summaries always give the same text."""
    lines = [
        f"# Ablation `{grid_name}` on {', '.join(datasets)}",
        "",
        f"Device: {'; '.join(devices) or 'no finished run yet'}. "
        f"Machine: {'; '.join(machines) or 'no finished run yet'}.",
        "",
    ]
    if description:
        lines += [description, ""]
    lines += table(summaries, seed_budget_minutes)
    budget = (
        f"a cell runs its further seeds only when its first run took under "
        f"{seed_budget_minutes:g} minutes"
        if seed_budget_minutes
        else "every cell runs all its seeds"
    )
    lines += [
        "",
        "Test accuracy: mean ± sample standard deviation over the seeds (none for one seed), "
        "scored with each run's best checkpoint on validation accuracy. Train-test gap: "
        "accuracy on the run's training images in inference mode (no dropout, no "
        "augmentation) minus test accuracy, in percentage points. Epochs to 95%: the first "
        f"epoch whose validation accuracy reached {BEST_SHARE:.0%} of the run's best. Minutes "
        "and img/s: training through fit, validation included. Seeds: " + budget + ".",
        "",
        "## What the numbers say about the seed's claims",
        "",
    ]
    sentences = claim_sentences(
        {summary.name: summary for summary in summaries}, datasets[0] if datasets else "", devices
    )
    for number, (claim, sentence) in enumerate(zip(CLAIMS, sentences, strict=True), 1):
        lines.append(f"{number}. *{claim}.* {sentence}")
    return "\n".join(lines) + "\n"


def table(summaries: list[CellSummary], seed_budget_minutes: float) -> list[str]:
    lines = [
        "| cell | what it tests | seeds | test accuracy | train-test gap (pts) "
        "| epochs to 95% of best val | min per run | train img/s | parameters |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for cell in summaries:
        lines.append(
            f"| {cell.name} | {cell.note} | {_seeds(cell, seed_budget_minutes)} "
            f"| {_accuracy_cell(cell)} | {_gap_cell(cell)} | {_epochs(cell.epochs_to_best_share)} "
            f"| {_minutes(cell.wall_seconds)} | {_rate(cell.images_per_second)} "
            f"| {cell.params:,} |"
        )
    return lines


def _seeds(cell: CellSummary, budget: float) -> str:
    planned = cell.planned_seeds
    if cell.runs == planned:
        return str(planned)
    # The runner keeps one seed for a cell whose first run took longer than the budget.
    over_budget = cell.runs == 1 and budget and (cell.wall_seconds or 0) >= budget * 60
    reason = f" (first run over {budget:g} min)" if over_budget else ""
    return f"{cell.runs} of {planned}{reason}"


def _accuracy_cell(cell: CellSummary) -> str:
    if cell.measured:
        text = _mean_std(cell.test_accuracy, 4)
        return text + (f"; {len(cell.failed)} failed" if cell.failed else "")
    if cell.failed:
        return f"failed: {cell.failed[0]}".replace("|", "/")
    return "not run yet"


def _gap_cell(cell: CellSummary) -> str:
    if cell.gap is None:
        return ""
    mean, std = cell.gap
    return f"{mean * 100:+.1f}" + (f" ± {std * 100:.1f}" if std is not None else "")


def _mean_std(value: tuple[float, float | None], digits: int) -> str:
    mean, std = value
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def _epochs(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def _minutes(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds / 60:.1f}"


def _rate(value: float | None) -> str:
    return "" if value is None else f"{value:,.0f}"


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
    missing = _missing(cells, ["alexnet"], "LeNet against AlexNet")
    lenets = [cells[n] for n in ("lenet-classic", "lenet-modern") if _ok(cells, n)]
    if missing or not lenets:
        return missing or _missing(cells, ["lenet-modern"], "LeNet against AlexNet")
    alexnet = cells["alexnet"]
    lenet = max(lenets, key=lambda cell: cell.test_accuracy[0])
    stuck = _never_learned(alexnet, lenet)
    if stuck:
        return stuck
    lead = _diff(alexnet.test_accuracy, lenet.test_accuracy)
    clear = _clear(alexnet.test_accuracy, lenet.test_accuracy)
    head = (
        f"On {dataset}, AlexNet scored {_acc(alexnet)} against {_acc(lenet)} for LeNet-5's best "
        f"({lenet.name}), a difference of {lead:+.1f} points"
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
    missing = _missing(cells, ["alexnet", "alexnet-sigmoid"], "ReLU against sigmoid")
    if missing:
        return missing
    relu, sigmoid = cells["alexnet"], cells["alexnet-sigmoid"]
    chance = _chance(relu)
    stuck = [cell for cell in (relu, sigmoid) if _at_chance(cell)]
    if len(stuck) == 2:
        return (
            f"Neither ReLU nor sigmoid AlexNet left chance in {relu.epochs} epochs (best "
            f"validation accuracy {relu.best_val_accuracy:.3f} and "
            f"{sigmoid.best_val_accuracy:.3f}, chance {chance:.3f}), so this budget does not "
            "test the claim."
        )
    if stuck == [sigmoid]:
        return (
            f"AlexNet with ReLU reached 95% of its best validation accuracy in "
            f"{_epochs(relu.epochs_to_best_share)} epochs and scored {_acc(relu)}; with sigmoid "
            f"it never left chance (best validation accuracy {sigmoid.best_val_accuracy:.3f}, "
            f"chance {chance:.3f}), {SUPPORTS}."
        )
    if stuck == [relu]:
        return (
            f"AlexNet with ReLU never left chance (best validation accuracy "
            f"{relu.best_val_accuracy:.3f}) while sigmoid scored {_acc(sigmoid)}, {AGAINST}."
        )
    diff = _diff(relu.test_accuracy, sigmoid.test_accuracy)
    clear = _clear(relu.test_accuracy, sigmoid.test_accuracy)
    faster = relu.epochs_to_best_share < sigmoid.epochs_to_best_share
    head = (
        f"AlexNet reached 95% of its best validation accuracy in "
        f"{_epochs(relu.epochs_to_best_share)} epochs with ReLU against "
        f"{_epochs(sigmoid.epochs_to_best_share)} with sigmoid, and scored {_acc(relu)} against "
        f"{_acc(sigmoid)} ({diff:+.1f} points)"
    )
    if clear and diff < 0:
        return f"{head}, {AGAINST}: sigmoid trained better here."
    if (clear and diff > 0) or faster:
        return f"{head}, {SUPPORTS}."
    return f"{head}: no faster and no clearly better with ReLU, {AGAINST} at this budget."


def _with_and_without(cells: dict[str, CellSummary], without: str, what: str):
    """AlexNet's cell and the one `without` a piece of the stack; or the sentence saying why
    they cannot be compared."""
    missing = _missing(cells, ["alexnet", without], what)
    if missing:
        return missing
    pair = cells["alexnet"], cells[without]
    return _never_learned(*pair) or pair


def dropout_sentence(cells: dict[str, CellSummary]) -> str:
    pair = _with_and_without(cells, "alexnet-no-dropout", "Dropout")
    if isinstance(pair, str):
        return pair
    with_, without = pair
    if with_.gap is None or without.gap is None:
        return "Dropout: not measured (no train accuracy was recorded for these runs)."
    head = (
        f"The train-test gap was {with_.gap[0] * 100:.1f} points with dropout against "
        f"{without.gap[0] * 100:.1f} without, and test accuracy {_acc(with_)} against "
        f"{_acc(without)}"
    )
    if _clear(without.gap, with_.gap):
        if without.gap[0] > with_.gap[0]:
            return f"{head}, {SUPPORTS}: dropout reduced over-fitting."
        return f"{head}: the gap was wider with dropout, {AGAINST}."
    return f"{head}: no clear difference in over-fitting, {AGAINST} at this budget."


def augment_sentence(cells: dict[str, CellSummary]) -> str:
    pair = _with_and_without(cells, "alexnet-no-augment", "Augmentation")
    if isinstance(pair, str):
        return pair
    with_, without = pair
    diff = _diff(with_.test_accuracy, without.test_accuracy)
    head = (
        f"AlexNet scored {_acc(with_)} with augmentation against {_acc(without)} without "
        f"({diff:+.1f} points)"
    )
    if with_.gap is not None and without.gap is not None:
        head += (
            f", with a train-test gap of {with_.gap[0] * 100:.1f} against "
            f"{without.gap[0] * 100:.1f} points"
        )
    if not _clear(with_.test_accuracy, without.test_accuracy):
        return f"{head}: too close to call, {AGAINST} at this budget."
    if diff > 0:
        return f"{head}, {SUPPORTS}: augmentation helped it generalise."
    return f"{head}: augmentation cost accuracy, {AGAINST}."


def compute_sentence(cells: dict[str, CellSummary], devices: list[str]) -> str:
    lenet_name = next((n for n in ("lenet-modern", "lenet-classic") if _ok(cells, n)), None)
    missing = _missing(cells, ["alexnet", lenet_name or "lenet-modern"], "Compute")
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
        f"{_minutes(alexnet.wall_seconds)} min"
    )
    if any(device.startswith("GPU") for device in devices):
        return f"{head}: this is the GPU figure the seed's claim is about."
    return (
        f"{head}; the claim is about GPUs, so compare this img/s column with the same command "
        "on a GPU (README: --strategy mirrored)."
    )


def data_scale_sentence(cells: dict[str, CellSummary]) -> str:
    missing = _missing(cells, ["alexnet", "lenet-modern"], "Data scale")
    if missing:
        return missing
    curves = {base: _by_fraction(cells, base) for base in ("alexnet", "lenet-modern")}
    fractions = sorted(set(curves["alexnet"]) & set(curves["lenet-modern"]))
    if len(fractions) < 2:
        return (
            "Data scale: not measured (the grid has no smaller-data cells of both alexnet and "
            "lenet-modern, such as alexnet-5pct and lenet-modern-5pct)."
        )
    stuck = _never_learned(*(curves[base][f] for base in curves for f in fractions))
    if stuck:
        return stuck
    leads = {
        f: _diff(curves["alexnet"][f].test_accuracy, curves["lenet-modern"][f].test_accuracy)
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
    found = {1.0: cells[base]} if _ok(cells, base) else {}
    for cell in cells.values():
        if cell.data_scale_of == base and cell.measured:
            found[cell.train_fraction] = cell
    return found


def _chance(cell: CellSummary) -> float:
    return 1.0 / cell.num_classes if cell.num_classes else 0.0


def _at_chance(cell: CellSummary) -> bool:
    return cell.best_val_accuracy is not None and (
        cell.best_val_accuracy < _chance(cell) + CHANCE_MARGIN
    )


def _never_learned(*compared: CellSummary) -> str | None:
    """A sentence when a compared cell never rose above chance: comparing it measures nothing."""
    stuck = [cell for cell in compared if _at_chance(cell)]
    if not stuck:
        return None
    names = " and ".join(
        f"{cell.name} (best validation accuracy {cell.best_val_accuracy:.3f} after "
        f"{cell.epochs} epochs)"
        for cell in stuck
    )
    return (
        f"{names} never left chance ({_chance(stuck[0]):.3f}), so this budget does not test "
        "the claim."
    )


def _ok(cells: dict[str, CellSummary], name: str) -> bool:
    return name in cells and cells[name].measured


def _missing(cells: dict[str, CellSummary], names: list[str], what: str) -> str | None:
    """None when every cell in `names` has a result, else a sentence saying which has none."""
    for name in names:
        if name not in cells:
            return f"{what}: not measured (the grid has no cell {name!r})."
        if not cells[name].measured:
            if cells[name].failed:
                return f"{what}: not measured (cell {name!r} failed: {cells[name].failed[0]})."
            return f"{what}: not measured yet (cell {name!r} has no finished run)."
    return None


def _diff(a: tuple[float, float | None], b: tuple[float, float | None]) -> float:
    """a - b in percentage points."""
    return (a[0] - b[0]) * 100


def _clear(a: tuple[float, float | None], b: tuple[float, float | None]) -> bool:
    """Whether a and b differ by more than `CLEAR_POINTS` and twice their combined spread."""
    spread = math.hypot(a[1] or 0.0, b[1] or 0.0) * 100
    return abs(_diff(a, b)) > max(CLEAR_POINTS, 2 * spread)


def _acc(cell: CellSummary) -> str:
    return _mean_std(cell.test_accuracy, 3)


def _percent(fraction: float) -> str:
    return f"{fraction * 100:g}%"
