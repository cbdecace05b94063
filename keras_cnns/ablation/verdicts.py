"""What a grid declares its report should judge: each cell against its baselines, and goals.

A cell with `compare_to` gets one verdict per baseline: it *helps* or *hurts* when its test
accuracy differs from the baseline's by more than the noise band of `compare.py` (1 percentage
point, or twice the seeds' combined standard deviation if that is larger), else it is *within
seed noise*. A cell with a `goal` is met when the goal's statistic over the cell's seeds (min:
every seed; median; mean) reaches the goal's test accuracy, within the epochs it allows. Each
verdict is a record (written to results.json) with the sentence report.md prints.
"""

from __future__ import annotations

import dataclasses
import statistics

from keras_cnns.ablation.compare import (
    diff_points,
    is_clear,
    mean_std_text,
    missing_sentence,
    never_learned,
    noise_points,
)
from keras_cnns.ablation.results import CellSummary

HELPS, HURTS, NOISE = "helps", "hurts", "within seed noise"
MET, NOT_MET, NOT_JUDGED = "met", "not met", "not judged"
_STATISTICS = {"min": min, "median": statistics.median, "mean": statistics.fmean}
_GOAL_WORDS = {"min": "at every one of its {} seeds", "median": "at the median of its {} seeds",
               "mean": "on average over its {} seeds"}


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One cell against one baseline: `verdict` is helps, hurts, within seed noise, or None
    when the pair was not measured (or never left chance)."""

    cell: str
    baseline: str
    verdict: str | None
    difference_points: float | None
    noise_points: float | None
    sentence: str


@dataclasses.dataclass(frozen=True)
class GoalCheck:
    """One cell's goal: `verdict` is met, not met or not judged (seeds missing or failed)."""

    cell: str
    test_accuracy: float
    over_seeds: str
    max_epochs: int | None
    value: float | None
    verdict: str
    sentence: str


def comparisons(summaries: list[CellSummary]) -> list[Comparison]:
    """Every declared (cell, baseline) pair, in grid order."""
    cells = {cell.name: cell for cell in summaries}
    return [compare(cell, baseline, cells) for cell in summaries for baseline in cell.compare_to]


def compare(cell: CellSummary, baseline_name: str, cells: dict[str, CellSummary]) -> Comparison:
    what = f"{cell.name} against {baseline_name}"
    unmeasured = missing_sentence(cells, [cell.name, baseline_name], what.capitalize())
    if unmeasured:
        return Comparison(cell.name, baseline_name, None, None, None, unmeasured)
    baseline = cells[baseline_name]
    stuck = never_learned(cell, baseline, what="this comparison")
    if stuck:
        return Comparison(cell.name, baseline_name, None, None, None, f"{what}: {stuck}")
    ours, theirs = cell.test_accuracy, baseline.test_accuracy
    difference, band = diff_points(ours, theirs), noise_points(ours, theirs)
    verdict = NOISE if not is_clear(ours, theirs) else HELPS if difference > 0 else HURTS
    one_seed = "; one seed, no spread measured" if None in (ours[1], theirs[1]) else ""
    sentence = (
        f"**{cell.name}** against {baseline_name}: {mean_std_text(ours, 4)} against "
        f"{mean_std_text(theirs, 4)}, {difference:+.2f} points, **{verdict}** (noise band "
        f"±{band:.2f} points{one_seed})"
    )
    if cell.gap is not None and baseline.gap is not None:
        sentence += (f"; train-test gap {cell.gap[0] * 100:+.1f} against "
                     f"{baseline.gap[0] * 100:+.1f} points")
    return Comparison(cell.name, baseline_name, verdict, round(difference, 4), round(band, 4),
                      sentence + ".")


def goal_checks(summaries: list[CellSummary]) -> list[GoalCheck]:
    """Every declared goal, in grid order."""
    return [check_goal(cell) for cell in summaries if cell.goal]


def check_goal(cell: CellSummary) -> GoalCheck:
    goal = cell.goal
    head = (f"**{cell.name}**: test accuracy >= {goal.test_accuracy:.3f} "
            + _GOAL_WORDS[goal.over_seeds].format(cell.planned_seeds))
    if goal.max_epochs is not None:
        head += f" in at most {goal.max_epochs} epochs"

    def result(value, verdict, why):
        return GoalCheck(cell.name, goal.test_accuracy, goal.over_seeds, goal.max_epochs,
                         value, verdict, f"{head}: {why}")

    seeds = ", ".join(f"{value:.4f}" for value in cell.test_accuracies)
    if cell.runs < cell.planned_seeds:
        failed = f", {len(cell.failed)} failed ({cell.failed[0]})" if cell.failed else ""
        finished = f" ({seeds})" if seeds else ""
        return result(None, NOT_JUDGED, f"not judged yet, {cell.runs} of "
                      f"{cell.planned_seeds} seeds finished{finished}{failed}.")
    value = _STATISTICS[goal.over_seeds](cell.test_accuracies)
    reached = value >= goal.test_accuracy
    measured = (f"the seeds gave {seeds}, {goal.over_seeds} {value:.4f} "
                f"({(value - goal.test_accuracy) * 100:+.2f} points)")
    if goal.max_epochs is not None and cell.epochs > goal.max_epochs:
        return result(value, NOT_MET, f"{measured}, but in {cell.epochs} epochs: **not met**.")
    return result(value, MET if reached else NOT_MET,
                  f"{measured} in {cell.epochs} epochs: **{MET if reached else NOT_MET}**.")
