"""How the report reads two cells against each other, and how it writes their numbers.

One rule for every sentence of report.md, the seed's claims and a grid's own comparisons
alike: a difference in test accuracy is clear when it is larger than `CLEAR_POINTS`
percentage points and larger than twice the seeds' combined standard deviation; otherwise it
is within the seeds' noise. With one seed per cell there is no spread, and the 1-point floor
stands alone. A cell whose best validation accuracy stays within `CHANCE_MARGIN` of chance
never started learning, and is named instead of compared.
"""

from __future__ import annotations

import math

from keras_cnns.ablation.results import CellSummary

CLEAR_POINTS = 1.0
# A network whose best validation accuracy stays this close to chance never started learning.
CHANCE_MARGIN = 0.05

Accuracy = tuple[float, float | None]  # (mean, sample standard deviation or None)


def diff_points(a: Accuracy, b: Accuracy) -> float:
    """a - b in percentage points."""
    return (a[0] - b[0]) * 100


def noise_points(a: Accuracy, b: Accuracy) -> float:
    """The smallest difference between a and b that counts as clear, in percentage points."""
    spread = math.hypot(a[1] or 0.0, b[1] or 0.0) * 100
    return max(CLEAR_POINTS, 2 * spread)


def is_clear(a: Accuracy, b: Accuracy) -> bool:
    """Whether a and b differ by more than `CLEAR_POINTS` and twice their combined spread."""
    return abs(diff_points(a, b)) > noise_points(a, b)


def chance(cell: CellSummary) -> float:
    return 1.0 / cell.num_classes if cell.num_classes else 0.0


def at_chance(cell: CellSummary) -> bool:
    return cell.best_val_accuracy is not None and (
        cell.best_val_accuracy < chance(cell) + CHANCE_MARGIN
    )


def never_learned(*compared: CellSummary, what: str = "the claim") -> str | None:
    """A sentence when a compared cell never rose above chance: comparing it measures nothing."""
    stuck = [cell for cell in compared if at_chance(cell)]
    if not stuck:
        return None
    names = " and ".join(
        f"{cell.name} (best validation accuracy {cell.best_val_accuracy:.3f} after "
        f"{cell.epochs} epochs)"
        for cell in stuck
    )
    return (
        f"{names} never left chance ({chance(stuck[0]):.3f}), so this budget does not test "
        f"{what}."
    )


def measured(cells: dict[str, CellSummary], name: str) -> bool:
    return name in cells and cells[name].measured


def missing_sentence(cells: dict[str, CellSummary], names: list[str], what: str) -> str | None:
    """None when every cell in `names` has a result, else a sentence saying which has none."""
    for name in names:
        if name not in cells:
            return f"{what}: not measured (no cell {name!r}: not in the grid, or not in --cells)."
        if not cells[name].measured:
            if cells[name].failed:
                return f"{what}: not measured (cell {name!r} failed: {cells[name].failed[0]})."
            return f"{what}: not measured yet (cell {name!r} has no finished run)."
    return None


# -- numbers as text ------------------------------------------------------------------------
def mean_std_text(value: Accuracy, digits: int) -> str:
    mean, std = value
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def accuracy_text(cell: CellSummary, digits: int = 3) -> str:
    return mean_std_text(cell.test_accuracy, digits)


def epochs_text(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def minutes_text(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds / 60:.1f}"
