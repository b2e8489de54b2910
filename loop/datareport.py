"""What the data is, said before anything trains (`loop config`, `--dry-run`, the start of `loop run`, and
the run's MLflow parent as data_report.json): rows read, empty and duplicate rows dropped, texts whose rows
disagree on the label and the label kept, rows of data.drop_labels left out, counts per label per split, and
a warning for each label a scored split lacks (its macro averages are over the labels present)."""

from __future__ import annotations

from collections import Counter

SPLITS = ("train", "dev_mine", "dev_stop", "test", "pool")
SCORED = {"dev_stop": "stopping", "test": "test"}


def data_report(task, splits: dict) -> dict:
    """The report of a task's loaded splits (`task.data_notes`: what reading found, kept by the task)."""
    notes = dict(getattr(task, "data_notes", {}) or {})
    labels = list(task.labels)
    counts = {name: Counter(e.label for e in splits.get(name, [])) for name in SPLITS if splits.get(name)}
    report = {**notes, "sizes": {name: len(splits[name]) for name in counts},
              "counts": {lab: {name: c.get(lab, 0) for name, c in counts.items() if name != "pool"}
                         for lab in labels}}
    report["missing"] = {name: [lab for lab in labels if not counts[name].get(lab)]
                         for name in SCORED if name in counts and len(labels) <= 1000}
    return report


def warnings(report: dict, examples: int = 5) -> list[str]:
    """Labels a scored split lacks; texts whose rows disagree on the label, with up to `examples` of them."""
    out = []
    for name, labels in report.get("missing", {}).items():
        if labels:
            shown = ", ".join(labels[:8]) + (f" and {len(labels) - 8} more" if len(labels) > 8 else "")
            present = len(report["counts"]) - len(labels)
            out.append(f"the {SCORED[name]} split ({name}) has no example of {len(labels)} label(s): "
                       f"{shown}; its macro averages are over the {present} labels present")
    conflicts = report.get("conflicts", [])
    if conflicts:
        out.append(f"{len(conflicts)} text(s) appear with different labels: the first row's label is kept "
                   "(a run lists them all in data_report.json on its MLflow parent run)")
    for c in conflicts[:examples]:
        out.append(f"{report.get('file', 'data')}:{c['line']}: the text '{c['text'][:60]}' also has label(s) "
                   f"{', '.join(c['others'])}: kept the first row's label '{c['kept']}'")
    return out


def summary(report: dict) -> str:
    """One line: what was read and what was dropped."""
    if "rows" not in report:
        return "data: " + ", ".join(f"{k} {v}" for k, v in report["sizes"].items())
    share = f" ({report['duplicates'] / report['rows']:.0%} of the rows)" if report["rows"] else ""
    parts = [f"{report['rows']:,} rows read", f"{report['duplicates']:,} duplicates dropped{share}",
             f"{report['empty']} empty", f"{len(report['conflicts'])} texts with conflicting labels"]
    if report.get("dropped_labels"):
        parts.append(f"{report['dropped_labels']} rows of data.drop_labels left out")
    kept = report["rows"] - report["empty"] - report["duplicates"]
    return f"data: {report.get('file')}: " + ", ".join(parts) + f"; {kept:,} distinct; splits " + \
        ", ".join(f"{k} {v}" for k, v in report["sizes"].items())


def table(report: dict) -> list[str]:
    """Counts per label (rows) per split (columns)."""
    names = [n for n in ("train", "dev_mine", "dev_stop", "test") if n in report["sizes"]]
    width = max([5] + [len(lab) for lab in report["counts"]])
    lines = [f"{'label':{width}} " + " ".join(f"{n:>8}" for n in names)]
    for lab, row in report["counts"].items():
        lines.append(f"{lab:{width}} " + " ".join(f"{row.get(n, 0):>8}" for n in names))
    return lines


def lines(report: dict) -> list[str]:
    """Everything, for a person: the summary, the table, the warnings."""
    return [summary(report), *table(report), *(f"warning: {w}" for w in warnings(report))]
