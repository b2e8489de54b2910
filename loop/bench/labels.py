"""`loop bench labels`: are the accepted samples' labels right? Label precision of an efficiency benchmark.

A reference classifier (the `probe` student: frozen sentence encoder + logistic regression) is trained once on
every labelled row the benchmark's task has outside its test split (the seed, both dev splits and the
labelled reserve: for Banking77, all of train.tsv). Its agreement with the label of each sample a run accepted
is that sample's `label_precision`, reported per arm and round and split by the kind of request that made it
(targeted or self_revise). The same agreement on the test split's real labels is the figure to read it
against: how often the reference agrees with a label that is right.

It reads the efficiency benchmark's run store (nothing is generated again).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
from pathlib import Path

import numpy as np

from loop.config import Config, rebuilt
from loop.records import Example

log = logging.getLogger(__name__)
ARMS = ("random", "targeted", "crossval")  # the arms whose runs accept generated samples


def reference(cfg: Config, splits: dict[str, list[Example]], probe_c: float = 100.0):
    """The probe trained on every labelled example outside test."""
    from loop.students.probe import ProbeStudent

    student = rebuilt("student", cfg.student, name="probe", probe_c=probe_c)
    probe = ProbeStudent(student, cfg.task.labels)
    probe.fit([e for name in ("train", "dev_mine", "dev_stop", "oracle") for e in splits.get(name, [])])
    return probe


def agreement(probe, examples: list[Example]) -> float | None:
    """Share of `examples` whose label the reference gives too (None for no examples)."""
    if not examples:
        return None
    return float(np.mean([p == e.label for p, e in zip(probe.predict(examples).labels, examples)]))


def accepted_by_round(store: Path, run_id: str) -> dict[int, dict[str, list[Example]]]:
    """round -> request kind -> the samples a run accepted (read-only)."""
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT round, kind, text, label FROM candidates "
                          "WHERE run_id=? AND verdict='accepted' ORDER BY id", (run_id,)).fetchall()
    finally:
        db.close()
    out: dict[int, dict[str, list[Example]]] = {}
    for rnd, kind, text, label in rows:
        out.setdefault(rnd, {}).setdefault(kind, []).append(Example(text, label, source="generated"))
    return out


def run_precision(probe, by_round: dict[int, dict[str, list[Example]]]) -> list[dict]:
    """Per round: accepted count and label precision, overall and by request kind."""
    rows = []
    for rnd in sorted(by_round):
        kinds = by_round[rnd]
        every = [e for group in kinds.values() for e in group]
        rows.append({"round": rnd, "accepted": len(every), "label_precision": agreement(probe, every),
                     **{f"label_precision_{k}": agreement(probe, v) for k, v in sorted(kinds.items())},
                     **{f"accepted_{k}": len(v) for k, v in sorted(kinds.items())}})
    return rows


def summarise(runs: list[dict]) -> dict:
    """Per arm: mean label precision (all rounds pooled per run, then over seeds), overall and by kind."""
    out = {}
    for arm in sorted({r["strategy"] for r in runs}):
        mine = [r for r in runs if r["strategy"] == arm]
        entry = {"seeds": [r["seed"] for r in mine]}
        kinds = {k for r in mine for rnd in r["rounds"] for k in rnd if k.startswith("label_precision_")}
        kinds |= {"label_precision_targeted", "label_precision_self_revise"}
        for key in ["label_precision"] + sorted(kinds):
            pooled = [_pooled(r["rounds"], key) for r in mine]
            values = [v for v in pooled if v is not None]
            entry[key] = {"mean": float(np.mean(values)) if values else None,
                          "std": float(np.std(values)) if values else None, "values": values}
        out[arm] = entry
    return out


def _pooled(rounds: list[dict], key: str) -> float | None:
    """A run's precision over all its rounds, weighted by the samples each round accepted."""
    count = "accepted" if key == "label_precision" else "accepted_" + key.removeprefix("label_precision_")
    pairs = [(r[key], r.get(count, 0)) for r in rounds if r.get(key) is not None]
    total = sum(n for _, n in pairs)
    return sum(p * n for p, n in pairs) / total if total else None


def run_bench(cfg: Config, result_path: Path, store: Path, out: Path) -> dict:
    """Label precision of every generating run in the efficiency result at `result_path`."""
    from loop.components import build_task

    result = json.loads(result_path.read_text())
    splits = build_task(cfg).load_splits()
    probe = reference(cfg, splits)
    real = agreement(probe, splits["test"])
    runs = []
    for run in result["runs"]:
        if run["strategy"] not in ARMS:
            continue
        run_id = f"bench-{result['settings']}-{run['strategy']}-s{run['seed']}"
        rounds = run_precision(probe, accepted_by_round(store, run_id))
        runs.append({"strategy": run["strategy"], "seed": run["seed"], "run_id": run_id, "rounds": rounds})
        done = [f"round {r['round']} {r['label_precision']:.3f} of {r['accepted']}"
                for r in rounds if r["label_precision"] is not None]
        log.info("%s: %s", run_id, ", ".join(done))
    trained = sum(len(splits.get(n, [])) for n in ("train", "dev_mine", "dev_stop", "oracle"))
    report = {"config": result.get("config"), "result": str(result_path), "reference": {
        "student": dataclasses.asdict(probe.cfg), "trained_on": trained, "test_agreement": real},
        "runs": runs, "summary": summarise(runs)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    return report


def table_lines(report: dict) -> list[str]:
    ref = report["reference"]
    kinds = sorted({k.removeprefix("label_precision_") for s in report["summary"].values() for k in s
                    if k.startswith("label_precision_")})
    lines = [f"reference: probe on {ref['trained_on']} labelled examples; agreement with the test split's "
             f"real labels {ref['test_agreement']:.3f}",
             "| arm | label precision | " + " | ".join(f"from {k} requests" for k in kinds) + " | seeds |",
             "| --- " * (len(kinds) + 3) + "|"]
    for arm, s in report["summary"].items():
        cells = [_cell(s["label_precision"])] + [_cell(s.get(f"label_precision_{k}", _NONE)) for k in kinds]
        lines.append(f"| `{arm}` | " + " | ".join(cells) + f" | {len(s['seeds'])} |")
    return lines


_NONE = {"mean": None}


def _cell(stat: dict) -> str:
    return "–" if stat["mean"] is None else f"{stat['mean']:.3f} ± {stat['std']:.3f}"
