"""The probe study's report: probes.json with verdicts, report.md and probes.png, from numbers.

Every sentence is computed from the results (`probe_study.collect`), the ablation report's way
(`keras_cnns/ablation/claims.py`): the same results always give the same text. A difference is
clear when it is larger than `CLEAR_POINTS` percentage points and larger than twice the seeds'
combined standard deviation (the ablation's rule); otherwise it is too close to call. With one
seed there is no spread to compare against, so only the floor applies, and the report says so.

The claim, per model: "edges, then parts, then categories" holds where
  1. the probe's accuracy rises with depth: the last probed layer beats the first clearly, and
     no layer falls clearly below the one before it; and
  2. the trained network beats its untrained control clearly at every probed layer.
Edges: the trained first layer's mean edge score beats the control's clearly (the same rule,
on the score's 0-1 scale read as points).
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from keras_cnns import files

RESULTS_FILE = "probes.json"
REPORT_FILE = "report.md"
FIGURE_FILE = "probes.png"
CLEAR_POINTS = 1.0
# A run whose test accuracy stays this close to chance never started learning.
CHANCE_MARGIN = 0.05
HOLDS, FAILS = "holds", "does not hold"


def write_report(results: dict, output: Path) -> dict:
    """probes.json (the results with their verdicts), report.md and probes.png in `output`."""
    results = {**results, "verdicts": verdicts(results)}
    files.write_text(output / RESULTS_FILE, json.dumps(results, indent=1) + "\n")
    files.write_text(output / REPORT_FILE, render_report(results))
    with files.replacing(output / FIGURE_FILE) as temporary:
        plot_probes(results, temporary)
    return results


# -- numbers -------------------------------------------------------------------------------------
def mean_std(values) -> tuple[float, float | None] | None:
    """(mean, sample standard deviation) of the values given (None: no values; std None: one)."""
    values = [float(value) for value in values if value is not None]
    if not values:
        return None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def difference(a, b) -> float:
    """a - b in percentage points."""
    return (a[0] - b[0]) * 100


def is_clear(a, b) -> bool:
    """Whether a and b differ by more than CLEAR_POINTS and twice their combined spread."""
    spread = math.hypot(a[1] or 0.0, b[1] or 0.0) * 100
    return abs(difference(a, b)) > max(CLEAR_POINTS, 2 * spread)


def _finished(cell: dict) -> list[dict]:
    return [row for row in cell["runs"] if row["status"] == "finished" and row["edges"]]


def _recipe(model: dict) -> dict:
    return next(cell for cell in model["cells"] if cell["label"] == "recipe")


def probe_table(model: dict) -> list[dict]:
    """Per probed layer: trained and untrained accuracy over the seeds, and the lead."""
    rows = [row for row in _finished(_recipe(model)) if row["probes"]]
    table = []
    for layer in model["layers"]:
        name = layer["name"]
        trained = mean_std(row["probes"].get(name) for row in rows)
        control = mean_std((row["control_probes"] or {}).get(name) for row in rows)
        entry = {**layer, "trained": trained, "control": control, "seeds": len(rows)}
        if trained and control:
            entry["lead"] = difference(trained, control)
            entry["clear"] = is_clear(trained, control)
        table.append(entry)
    return table


def edge_summary(model: dict) -> dict:
    """Per cell (and the control): mean edge score over seeds and share of edge-like filters."""
    bar = model["random_edge_95th"]

    def summary(score_lists, accuracies=()):
        return {
            "score": mean_std(statistics.fmean(scores) for scores in score_lists),
            "edge_like": mean_std(sum(s > bar for s in scores) / len(scores)
                                  for scores in score_lists),
            "test_accuracy": mean_std(accuracies),
            "seeds": len(score_lists),
        }

    recipe_rows = _finished(_recipe(model))
    cells = {"control": summary([row["control_edges"] for row in recipe_rows
                                 if row["control_edges"]])}
    for cell in model["cells"]:
        rows = _finished(cell)
        cells[cell["label"]] = summary([row["edges"] for row in rows],
                                       [row["test_accuracy"] for row in rows])
    return cells


def _chance(results: dict) -> float:
    return 1.0 / results["num_classes"]


def _left_chance(results: dict, accuracy) -> bool:
    return accuracy is not None and accuracy[0] >= _chance(results) + CHANCE_MARGIN


# -- verdicts and sentences ------------------------------------------------------------------------
def verdicts(results: dict) -> dict:
    """Per model: the probe claim's verdict and sentence, the edge verdict and sentences."""
    return {model["model"]: {**probe_verdict(results, model), **edge_verdict(results, model)}
            for model in results["models"]}


def probe_verdict(results: dict, model: dict) -> dict:
    table = probe_table(model)
    name = model["model"]
    measured = [row for row in table if row["trained"] and row["control"]]
    if len(measured) < len(table) or not table:
        return {"probes": "not measured",
                "probe_sentence": f"{name}: not measured yet (no probed run has finished)."}
    accuracy = mean_std(row["test_accuracy"] for row in _finished(_recipe(model)))
    if not _left_chance(results, accuracy):
        return {"probes": "not tested",
                "probe_sentence": f"{name} never left chance (test accuracy {accuracy[0]:.3f}, "
                                  f"chance {_chance(results):.3f}) on this schedule, so its "
                                  "layers cannot test the claim."}
    first, last = table[0], table[-1]
    rise = difference(last["trained"], first["trained"])
    rises = rise > 0 and is_clear(last["trained"], first["trained"])
    drops = [(before["name"], after["name"])
             for before, after in zip(table, table[1:], strict=False)
             if after["trained"][0] < before["trained"][0]
             and is_clear(after["trained"], before["trained"])]
    behind = [row["name"] for row in table if not (row["lead"] > 0 and row["clear"])]
    leads = [row["lead"] for row in table]
    seeds = table[0]["seeds"]
    head = (
        f"{name} (test accuracy {_pm(accuracy, 3)}, {seeds} seed{'s' if seeds > 1 else ''}): "
        f"the probe's accuracy went from {first['trained'][0]:.3f} at {first['name']} to "
        f"{last['trained'][0]:.3f} at {last['name']} ({rise:+.1f} points, "
        f"{'a clear rise' if rises else 'not a clear rise'}), "
    )
    if drops:
        head += "falling clearly from " + ", ".join(f"{a} to {b}" for a, b in drops)
    else:
        head += "with no clear fall between neighbouring layers"
    control_rise = difference(last["control"], first["control"])
    beaten = (f"not clearly at {', '.join(behind)}" if behind else "clearly at every layer")
    holds = rises and not drops and not behind
    sentence = (
        f"{head}; the trained network led its untrained control by {min(leads):+.1f} to "
        f"{max(leads):+.1f} points, {beaten} (the control itself went {control_rise:+.1f} "
        f"points from {first['name']} to {last['name']}). The claim "
        f"{HOLDS if holds else FAILS} for {name}"
        + (":" + _reasons(rises, drops, behind) if not holds else "") + "."
    )
    if seeds < 2:
        sentence += " (One seed: no seed noise to compare with, only the 1-point floor.)"
    return {"probes": HOLDS if holds else FAILS, "probe_sentence": sentence}


def _reasons(rises, drops, behind) -> str:
    reasons = []
    if not rises:
        reasons.append(" the deepest layer is not clearly above the first")
    if drops:
        reasons.append(" accuracy falls with depth somewhere")
    if behind:
        reasons.append(" training did not clearly beat the untrained network at every layer")
    return ";".join(reasons)


def edge_verdict(results: dict, model: dict) -> dict:
    name, summary = model["model"], edge_summary(model)
    first = model["first_layer"]
    height, width, channels, count = first["kernel"]
    what = f"{first['name']}, {count} filters of {height}x{width}x{channels}"
    recipe, control = summary["recipe"], summary["control"]
    if not recipe["score"] or not control["score"]:
        return {"edges": "not measured",
                "edge_sentences": [f"{name}: not measured yet (no recipe run has finished)."]}
    if not _left_chance(results, recipe["test_accuracy"]):
        return {"edges": "not tested",
                "edge_sentences": [f"{name} never left chance on this schedule (test accuracy "
                                   f"{recipe['test_accuracy'][0]:.3f}), so its filters cannot "
                                   "test the claim."]}
    lead = difference(recipe["score"], control["score"])
    clear = is_clear(recipe["score"], control["score"])
    holds = clear and lead > 0
    bar = model["random_edge_95th"]
    sentences = [
        f"{name} ({what}): mean edge score {_pm(recipe['score'], 3)} trained against "
        f"{_pm(control['score'], 3)} untrained ({lead / 100:+.3f}, "
        f"{'clear' if clear else 'too close to call'}); "
        f"{_share(recipe['edge_like'])} of the trained filters score above {bar:.3f}, the "
        f"95th percentile of freshly initialised ones ({_share(control['edge_like'])} of the "
        f"control's). The first layer {'is' if holds else 'is not'} clearly more edge-like "
        f"after training: {HOLDS if holds else FAILS}."
    ]
    for cell in model["cells"]:
        if cell["label"] == "recipe":
            continue
        variant = summary[cell["label"]]
        if not variant["score"]:
            sentences.append(f"{name} {cell['label']}: not measured yet.")
            continue
        change = difference(variant["score"], recipe["score"])
        head = (f"{name} {cell['label']}: {_pm(variant['score'], 3)} against the recipe's "
                f"{_pm(recipe['score'], 3)} ({change / 100:+.3f}), test accuracy "
                f"{_pm(variant['test_accuracy'], 3)} against {_pm(recipe['test_accuracy'], 3)}")
        if not _left_chance(results, variant["test_accuracy"]):
            sentences.append(f"{head}: it never left chance on this schedule, so its filters "
                             "say how little it moved, not what it learned.")
        elif not is_clear(variant["score"], recipe["score"]):
            sentences.append(f"{head}: too close to call.")
        else:
            sentences.append(f"{head}: clearly {'more' if change > 0 else 'less'} edge-like.")
    return {"edges": HOLDS if holds else FAILS, "edge_sentences": sentences}


def _pm(value, digits: int) -> str:
    if value is None:
        return "n/a"
    mean, std = value
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def _share(value) -> str:
    return "n/a" if value is None else f"{value[0]:.0%}"


# -- report.md -------------------------------------------------------------------------------------
def render_report(results: dict) -> str:
    probe = results["probe"]
    pixels = probe.get("pixels") or {}
    lines = [
        f"# Layer probes on {results['dataset']} (preset `{results['preset']}`)",
        "",
        f"Machine: {results['machine']}. Time: {results['train_seconds'] / 60:.1f} min in "
        f"training (fit, validation included), {results['measure_seconds'] / 60:.1f} min in "
        "probes and edge scores; loading data, building models and scoring the test split come "
        "on top.",
        "",
        results["description"],
        "",
        f"Probe: {probe['classifier']}, trained on {probe['train_images']:,} training images "
        f"and scored on {probe['test_images']:,} test images (the same images for every "
        f"network), reading each layer's activations, {probe['pooling']}.",
        "",
        "## Linear probes, layer by layer",
        "",
    ]
    for model in results["models"]:
        lines += _probe_lines(model, pixels)
    lines += [
        "Receptive field: the side of the input window one cell of the layer sees (from the "
        "layers' kernels, strides and dilations; larger than the image where padding lets it "
        "reach past the border). Accuracy: mean ± sample standard deviation over the seeds. "
        "Lead: trained minus untrained, in points; clear: larger than 1 point and than twice "
        "the combined spread of the seeds.",
        "",
        "## Edges in the first layer",
        "",
        "| model | cell | seeds | test accuracy | mean edge score | filters above the random "
        "95th percentile |",
        "|---|---|---:|---|---|---:|",
    ]
    for model in results["models"]:
        summary = edge_summary(model)
        for label, cell in summary.items():
            name = "untrained (control)" if label == "control" else label
            accuracy = "" if label == "control" else _pm(cell["test_accuracy"], 3)
            lines.append(f"| {model['model']} | {name} | {cell['seeds']} | {accuracy} | "
                         f"{_pm(cell['score'], 3)} | {_share(cell['edge_like'])} |")
    lines += [
        "",
        "Edge score: orientation selectivity of each filter's power spectrum (1 - circular "
        "variance over orientation, Ringach et al. 2002), 0 for no preferred orientation, 1 for "
        "all power on one orientation; mean over the layer's filters, then over the seeds. The "
        "random 95th percentile is that of 2,000 kernels drawn from the layer's own "
        "initializer: " + "; ".join(
            f"{model['model']} {model['random_edge_95th']:.3f}" for model in results["models"])
        + ".",
        "",
        "## Verdicts",
        "",
    ]
    for name, verdict in results["verdicts"].items():
        lines.append(f"- **{name}, probes: {verdict['probes']}.** {verdict['probe_sentence']}")
        lines.append(f"- **{name}, edges: {verdict['edges']}.** "
                     + " ".join(verdict["edge_sentences"]))
    return "\n".join(lines) + "\n"


def _probe_lines(model: dict, pixels: dict) -> list[str]:
    side = model["input"][0]
    lines = [
        f"### {model['model']} ({model['params']:,} parameters, input {side}x{side})",
        "",
        f"| layer | receptive field (px, of {side}) | features probed | trained | untrained "
        "| lead (pts) | clear |",
        "|---|---:|---:|---|---|---:|---|",
    ]
    if pixels:
        lines.append(f"| pixels (flattened, no network) | 1 | {pixels['features']} | "
                     f"{pixels['accuracy']:.3f} | | | |")
    for row in probe_table(model):
        field = "whole image" if row["receptive_field"] is None else str(row["receptive_field"])
        kind = "GAP of " if row["map"] else ""
        lead = "| |" if "lead" not in row else (
            f"{row['lead']:+.1f} | {'yes' if row['clear'] else 'no'} |")
        lines.append(f"| {row['name']} ({row['kind']}) | {field} | {kind}{row['features']} | "
                     f"{_pm(row['trained'], 3)} | {_pm(row['control'], 3)} | {lead}")
    return [*lines, ""]


# -- probes.png ------------------------------------------------------------------------------------
def plot_probes(results: dict, path) -> None:
    """Per model: probe accuracy by layer (trained, untrained, pixels) over its edge scores."""
    import matplotlib

    matplotlib.use("Agg")  # write PNG files; never open a window
    import matplotlib.pyplot as plt

    models = results["models"]
    figure, axes = plt.subplots(2, len(models), figsize=(6 * len(models), 8), squeeze=False)
    pixels = (results["probe"].get("pixels") or {}).get("accuracy")
    for column, model in enumerate(models):
        top, bottom = axes[0][column], axes[1][column]
        table = probe_table(model)
        positions = list(range(len(table)))  # one tick per probed layer
        labels = [row["name"] + "\nRF " + ("all" if row["receptive_field"] is None
                                           else str(row["receptive_field"])) for row in table]
        for key, label, colour in (("trained", "trained", "tab:blue"),
                                   ("control", "untrained", "tab:gray")):
            points = [(x, row[key]) for x, row in enumerate(table) if row[key]]
            if points:
                top.errorbar([x for x, _ in points], [v[0] for _, v in points],
                             yerr=[v[1] or 0.0 for _, v in points], marker="o", capsize=4,
                             color=colour, label=label)
        if pixels is not None:
            top.axhline(pixels, color="tab:green", linestyle="--", label="pixels (no network)")
        top.axhline(_chance(results), color="black", linewidth=0.8, linestyle=":",
                    label="chance")
        top.set_xticks(positions, labels, fontsize=8)
        top.set_ylim(0.0, 1.0)
        top.set_ylabel("linear probe test accuracy")
        top.set_title(f"{model['model']}: what each layer separates linearly")
        top.grid(alpha=0.3)
        top.legend(loc="lower right", fontsize=8)

        groups, names = [], []
        recipe_rows = _finished(_recipe(model))
        control = [s for row in recipe_rows for s in (row["control_edges"] or [])]
        if control:
            groups.append(control)
            names.append("untrained")
        for cell in model["cells"]:
            scores = [s for row in _finished(cell) for s in row["edges"]]
            if scores:
                groups.append(scores)
                names.append(cell["label"])
        if groups:
            bottom.boxplot(groups)
            bottom.set_xticks(range(1, len(names) + 1), names, fontsize=8)
        bottom.axhline(model["random_edge_95th"], color="tab:red", linestyle="--",
                       label="random 95th percentile")
        bottom.set_ylim(0.0, 1.0)
        bottom.set_ylabel(f"{model['first_layer']['name']} edge score per filter")
        bottom.set_title(f"{model['model']}: how edge-like the first layer's filters are")
        bottom.grid(axis="y", alpha=0.3)
        bottom.legend(loc="upper right", fontsize=8)
    figure.suptitle(f"Layer probes on {results['dataset']} (preset {results['preset']})")
    figure.tight_layout()
    figure.savefig(path, dpi=100, format="png")
    plt.close(figure)
