"""`loop bench noise`: how far the student's test metric moves when only its seed changes.

Every fit sees the same splits (loaded once); a variant is a set of `student.*` overrides
(today's training vs steadier settings), fitted once per student seed on the training
split and evaluated on the stopping and test splits. Per variant the report gives the
mean, standard deviation and min-max range of the test metric over the seeds, and the
seconds per fit: a benchmark arm's effect smaller than that spread cannot be told apart
from a reseeded student.

Each fit is written to the JSON as it finishes, keyed by everything that decides its
result (task, data, student settings with the seed): a rerun skips the fits it holds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import statistics
import time
from pathlib import Path

from loop.config import Config
from loop.errors import ConfigError

log = logging.getLogger(__name__)

# what `loop bench noise` compares when no --variant is given ("baseline": the config as it is; warmup 0 is
# the schedule before warmup became the default)
DEFAULT_VARIANTS = ("baseline", "student.warmup=0", "student.average_last=3", "student.select_epoch=true")
OPERATIONAL = ("threads",)  # how the student runs, not what it learns: not part of a fit's key


def check_variants(variants: dict[str, dict]) -> None:
    """Only student settings may differ between variants: the data must stay identical."""
    for name, overrides in variants.items():
        for key in overrides:
            if not key.startswith("student."):
                raise ConfigError(f"--variant {name}: {key}: only student.* settings may vary (the data "
                                  f"stays identical across variants)")


def reseeded(cfg: Config, seed: int) -> Config:
    """The config of one fit: the student's seed moved by `seed`, nothing else."""
    return dataclasses.replace(cfg, student=dataclasses.replace(cfg.student, seed=cfg.student.seed + seed))


def fit_key(cfg: Config) -> str:
    """A fit's result depends on the task, the data and the student settings (seed included)."""
    student = {k: v for k, v in dataclasses.asdict(cfg.student).items() if k not in OPERATIONAL}
    blob = json.dumps([dataclasses.asdict(cfg.task), dataclasses.asdict(cfg.data), student, cfg.loop.metric],
                      sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def fit_one(cfg: Config, task, splits: dict) -> dict:
    """Train a fresh student on the training split; its stop and test metric and the seconds the fit took."""
    from loop.components import build_student
    from loop.stages import evaluate

    student = build_student(cfg)
    start = time.perf_counter()
    student.fit(splits["train"])
    fit_s = time.perf_counter() - start
    metrics, _ = evaluate(student, task, splits, ("dev_stop", "test"))
    metric = cfg.loop.metric
    return {"test": metrics[f"test_{metric}"], "stop": metrics[f"stop_{metric}"], "fit_s": round(fit_s, 2)}


def _spread(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "range": max(values) - min(values)}


def summarise(runs: list[dict], keys: dict[str, list[str]]) -> dict:
    """Per variant: the spread of the test (and stop) metric over its fits (`keys`: the variant's fit keys,
    one per seed), and the mean seconds per fit."""
    table = {}
    for name, wanted in keys.items():
        rows = sorted((r for r in runs if r["variant"] == name and r["key"] in wanted),
                      key=lambda r: r["seed"])
        if rows:
            table[name] = {**_spread([r["test"] for r in rows]), "stop": _spread([r["stop"] for r in rows]),
                           "fit_s": statistics.fmean(r["fit_s"] for r in rows),
                           "seeds": [r["seed"] for r in rows], "values": [r["test"] for r in rows]}
    return table


def _load_runs(out: Path) -> list[dict]:
    if not out.is_file():
        return []
    return json.loads(out.read_text()).get("runs", [])


def run_bench(cfgs: dict[str, Config], overrides: dict[str, dict], seeds: list[int], out: Path) -> dict:
    """Fit every (variant, seed) not in `out` yet, writing the JSON after each fit; then summarise."""
    from loop.components import build_task

    base = next(iter(cfgs.values()))
    task = build_task(base)
    splits = task.load_splits()  # once: every variant and seed sees the same examples
    keys = {name: [fit_key(reseeded(cfg, seed)) for seed in seeds] for name, cfg in cfgs.items()}
    runs = _load_runs(out)
    result = {"task": base.task.name, "metric": base.loop.metric, "train": len(splits["train"]),
              "test": len(splits["test"]), "seeds": seeds, "variants": overrides, "keys": keys, "runs": runs}
    todo = [(name, seed, key) for name in cfgs for seed, key in zip(seeds, keys[name])]
    for i, (name, seed, key) in enumerate(todo, 1):
        if any(r["variant"] == name and r["key"] == key for r in runs):
            continue
        same = next((r for r in runs if r["key"] == key), None)
        if same is not None:  # the same settings under another name: reuse, not refit
            runs.append({**same, "variant": name})
            continue
        log.info("bench noise: %s seed %d (%d of %d)", name, seed, i, len(todo))
        row = {"variant": name, "seed": seed, "key": key, **fit_one(reseeded(cfgs[name], seed), task, splits)}
        log.info("bench noise: %s seed %d: test %s %.4f, fit %.0f s", name, seed, base.loop.metric,
                 row["test"], row["fit_s"])
        runs.append(row)
        _save(result, out)  # an interrupted benchmark keeps what it has fitted
    _save(result, out)
    return result


def _save(result: dict, out: Path) -> None:
    result["summary"] = summarise(result["runs"], result["keys"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
