"""`loop bench compare`: one change measured against its baseline, paired by seed.

Two efficiency results (a baseline and a variant: the same arm run with and without a change, e.g. the
label check or several completions per prompt) are paired seed by seed. Per budget: the variant's test
metric minus the baseline's, with a 95% bootstrap interval over seeds, the same for the stopping split, and
what the teacher's tokens bought: accepted samples per 1,000 tokens and tokens per accepted sample at the
run's last round within the budget.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from loop.bench.paired import at_budget, bootstrap_ci
from loop.errors import ConfigError


def _runs(result: dict, arm: str, path: Path) -> dict[int, dict]:
    runs = {r["seed"]: r for r in result["runs"] if r["strategy"] == arm}
    if not runs:
        raise ConfigError(f"{path}: no '{arm}' runs")
    return runs


def _ci(values: np.ndarray) -> dict:
    low, high = bootstrap_ci(values)
    return {"mean": float(values.mean()), "low": low, "high": high}


def _yield(points: list[dict]) -> dict:
    tokens = np.array([p["tokens"] for p in points], float)
    accepted = np.array([p["accepted"] for p in points], float)
    return {"accepted_per_1k_tokens": float(accepted.sum() / tokens.sum() * 1000) if tokens.sum() else 0.0,
            "tokens_per_accepted": float(tokens.sum() / accepted.sum()) if accepted.sum() else None,
            "accepted": float(accepted.mean()), "tokens": float(tokens.mean())}


def compare(baseline: Path, variant: Path, arm: str = "targeted", baseline_arm: str | None = None) -> dict:
    """Paired per-budget differences variant − baseline over the seeds both ran (the baseline's
    `baseline_arm`, by default the same arm)."""
    base, var = json.loads(baseline.read_text()), json.loads(variant.read_text())
    a, b = _runs(base, baseline_arm or arm, baseline), _runs(var, arm, variant)
    seeds = sorted(set(a) & set(b))
    budgets = sorted(set(base["budgets"]) & set(var["budgets"]))
    if not seeds or not budgets:
        raise ConfigError(f"{baseline} and {variant} share no seed or budget for '{arm}'")
    out = {"baseline": str(baseline), "variant": str(variant), "arm": arm,
           "baseline_arm": baseline_arm or arm, "seeds": seeds, "budgets": {}}
    for budget in budgets:
        pa = [at_budget(a[s]["rounds"], budget) | _last(a[s]["rounds"], budget) for s in seeds]
        pb = [at_budget(b[s]["rounds"], budget) | _last(b[s]["rounds"], budget) for s in seeds]
        out["budgets"][str(budget)] = {
            "test": _ci(np.array([q["test"] - p["test"] for p, q in zip(pa, pb)])),
            "stop": _ci(np.array([q["stop"] - p["stop"] for p, q in zip(pa, pb)])),
            "baseline": _yield(pa), "variant": _yield(pb)}
    return out


def _last(curve: list[dict], budget: int) -> dict:
    """The stopping-split figure and accepted count of the last round within `budget`."""
    last = [r for r in curve if r["tokens"] <= budget][-1]
    return {"stop": last["stop"], "accepted": last["accepted"]}


def table_lines(report: dict) -> list[str]:
    lines = [f"`{report['arm']}` of {report['variant']} − `{report['baseline_arm']}` of "
             f"{report['baseline']}, paired over seeds {', '.join(map(str, report['seeds']))}",
             "| budget | test Δ (95% CI) | stopping split Δ | accepted / 1k tokens (baseline → variant) "
             "| tokens per accepted |",
             "| --- | --- | --- | --- | --- |"]
    for budget, row in report["budgets"].items():
        t, s, yb, yv = row["test"], row["stop"], row["baseline"], row["variant"]
        per = " → ".join("–" if y["tokens_per_accepted"] is None else f"{y['tokens_per_accepted']:.0f}"
                         for y in (yb, yv))
        lines.append(f"| {int(budget):,} | {t['mean']:+.4f} [{t['low']:+.4f}, {t['high']:+.4f}] "
                     f"| {s['mean']:+.4f} [{s['low']:+.4f}, {s['high']:+.4f}] "
                     f"| {yb['accepted_per_1k_tokens']:.2f} → {yv['accepted_per_1k_tokens']:.2f} | {per} |")
    return lines
