"""report.md: the per-cell table, then what the grid's numbers say.

A grid that declares comparisons or goals (`compare_to`, `goal`: grid.py) gets their verdicts
(verdicts.py); any other grid gets one sentence per seed claim (claims.py). The same summaries
always give the same text: every number comes from the results files, none from a clock.
"""

from __future__ import annotations

from keras_cnns.ablation.claims import CLAIMS, claim_sentences
from keras_cnns.ablation.compare import CLEAR_POINTS, epochs_text, mean_std_text, minutes_text
from keras_cnns.ablation.results import BEST_SHARE, CellSummary
from keras_cnns.ablation.verdicts import comparisons, goal_checks


def render_report(
    grid_name: str,
    description: str,
    datasets: list[str],
    summaries: list[CellSummary],
    devices: list[str],
    machines: list[str],
    seed_budget_minutes: float,
    declares_verdicts: bool,
) -> str:
    """The whole report.md; the same summaries always give the same text. A grid that
    `declares_verdicts` gets them; any other, the seed's claims."""
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
    ]
    if declares_verdicts:
        lines += declared_sections(summaries)
    else:
        lines += claim_section(summaries, datasets, devices)
    return "\n".join(lines) + "\n"


def claim_section(summaries: list[CellSummary], datasets: list[str],
                  devices: list[str]) -> list[str]:
    lines = ["", "## What the numbers say about the seed's claims", ""]
    sentences = claim_sentences(
        {summary.name: summary for summary in summaries}, datasets[0] if datasets else "", devices
    )
    for number, (claim, sentence) in enumerate(zip(CLAIMS, sentences, strict=True), 1):
        lines.append(f"{number}. *{claim}.* {sentence}")
    return lines


def declared_sections(summaries: list[CellSummary]) -> list[str]:
    """The grid's own verdicts: each cell against its baselines, then the goals."""
    lines = []
    judged = comparisons(summaries)
    if judged:
        lines += [
            "", "## Each cell against its baseline", "",
            f"A cell helps or hurts when its test accuracy differs from its baseline's by more "
            f"than the noise band: {CLEAR_POINTS:g} percentage point, or twice the two cells' "
            "combined standard deviation over seeds if that is larger; otherwise the difference "
            "is within seed noise. With one seed a cell has no measured spread, so the band is "
            "the floor alone and a verdict rests on one run.",
            "",
        ]
        lines += [f"- {comparison.sentence}" for comparison in judged]
    goals = goal_checks(summaries)
    if goals:
        lines += ["", "## Goals", ""]
        lines += [f"- {check.sentence}" for check in goals]
    return lines


def table(summaries: list[CellSummary], seed_budget_minutes: float) -> list[str]:
    lines = [
        "| cell | what it tests | seeds | test accuracy | train-test gap (pts) "
        "| epochs to 95% of best val | min per run | train img/s | parameters |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for cell in summaries:
        lines.append(
            f"| {cell.name} | {cell.note} | {_seeds(cell, seed_budget_minutes)} "
            f"| {_accuracy_cell(cell)} | {_gap_cell(cell)} "
            f"| {epochs_text(cell.epochs_to_best_share)} "
            f"| {minutes_text(cell.wall_seconds)} | {_rate(cell.images_per_second)} "
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
        text = mean_std_text(cell.test_accuracy, 4)
        return text + (f"; {len(cell.failed)} failed" if cell.failed else "")
    if cell.failed:
        return f"failed: {cell.failed[0]}".replace("|", "/")
    return "not run yet"


def _gap_cell(cell: CellSummary) -> str:
    if cell.gap is None:
        return ""
    mean, std = cell.gap
    return f"{mean * 100:+.1f}" + (f" ± {std * 100:.1f}" if std is not None else "")


def _rate(value: float | None) -> str:
    return "" if value is None else f"{value:,.0f}"
