"""`loop bench efficiency`: student quality per teacher token, targeted vs random vs none.

Every (strategy, seed) is a full `run_loop` with the same student, teacher, prompts,
filters and budget; only the selection differs. A seed moves every random choice of a
run: the data split (`data.seed`), the student's initialisation and order, the planner
and the teacher's sampling. Each run spends up to the largest budget; after every round
the cumulative tokens and the test metric are recorded, so the figure at a budget B is
the run's student after the last round that fitted within B (a run capped at B would stop
there, or add one partial round with what is left).

Runs are written to the JSON as they finish: an interrupted benchmark resumes where it
stopped (same settings) instead of paying again. The teacher is loaded once, and a
seed's round-0 student (same data, same initialisation) is trained once and reused by
its other strategies (`FitCache`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from pathlib import Path

from loop.config import Config
from loop.errors import ConfigError

log = logging.getLogger(__name__)


# arm -> (generation.strategy, mining.source); `real` and `active` buy gold labels instead
# (loop/bench/oracle.py)
ARMS = {"none": ("none", "dev"), "all_labels": ("none", "crossval"), "targeted": ("targeted", "dev"),
        "random": ("random", "dev"), "real": ("none", "dev"), "active": ("none", "dev"),
        "crossval": ("targeted", "crossval")}


def seeded(cfg: Config, arm: str, seed: int, budget: int, rounds: int) -> Config:
    """The config of one benchmark run. `all_labels` is `none` with the mining split in training (what
    mining.source crossval does to the splits); `crossval` is `targeted` mining out-of-fold errors there."""
    strategy, source = ARMS[arm]
    return dataclasses.replace(
        cfg,
        data=dataclasses.replace(cfg.data, seed=cfg.data.seed + seed),
        mining=dataclasses.replace(cfg.mining, source=source),
        student=dataclasses.replace(cfg.student, seed=cfg.student.seed + seed),
        # no response cache: a resumed benchmark pays again rather than counting free tokens
        teacher=dataclasses.replace(cfg.teacher, seed=cfg.teacher.seed + seed, cache=False),
        generation=dataclasses.replace(cfg.generation, strategy=strategy, seed=cfg.generation.seed + seed),
        budget=dataclasses.replace(cfg.budget, tokens=budget),
        # the curve is the point: no plateau stop, the run spends its budget
        loop=dataclasses.replace(cfg.loop, rounds=0 if strategy == "none" else rounds, patience=rounds + 1),
        run=dataclasses.replace(cfg.run, name=None),
    )


# how the teacher is reached, not what it answers: these do not enter the results' key
OPERATIONAL = {"teacher": ("concurrency", "timeout_s", "max_retries", "backoff_s", "down_after",
                           "api_key_env"),
               "tracking": ("uri", "experiment"), "run": ("dir", "name")}


def settings_key(cfg: Config, budgets: list[int], rounds: int) -> str:
    """Results are reused only under the same config (operational settings aside), budgets, rounds and
    prompt templates."""
    from loop.prompts import Prompts

    prompts = Prompts(cfg.prompts_folder()).version
    settings = cfg.to_dict()
    for section, keys in OPERATIONAL.items():
        settings[section] = {k: v for k, v in settings[section].items() if k not in keys}
    blob = json.dumps([settings, budgets, rounds, prompts], sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


class FitCache:
    """Weights after a fit on seed data only (a round 0), keyed by the student's config and its exact
    training list: the same seed's round 0 under another strategy loads them instead of training. Training
    is deterministic given both (every fit starts from the pretrained weights with the student's seed), so
    the loaded student is the one training would give. Only for students whose whole state is torch
    modules (encoder, lines)."""

    STUDENTS = ("encoder", "lines")

    def __init__(self, keep: int = 3):
        self.keep = keep
        self.states: dict[str, dict] = {}
        self.hits = 0

    def wrap(self, student, cfg: Config):
        if cfg.student.name not in self.STUDENTS:
            return student
        import copy

        import torch

        fit, settings = student.fit, json.dumps(dataclasses.asdict(cfg.student), sort_keys=True, default=str)

        def modules():
            return {k: v for k, v in vars(student).items() if isinstance(v, torch.nn.Module)}

        def cached_fit(examples):
            if any(e.source != "gold" for e in examples):
                return fit(examples)
            blob = json.dumps([settings, [(e.text, e.label) for e in examples]])
            key = hashlib.sha1(blob.encode()).hexdigest()
            if key in self.states:
                for name, module in modules().items():
                    module.load_state_dict(self.states[key][name])
                    module.eval()
                self.hits += 1
                log.info("student: same config and training set as an earlier run: its weights reused")
                return
            fit(examples)
            self.states[key] = {name: copy.deepcopy(m.state_dict()) for name, m in modules().items()}
            while len(self.states) > self.keep:
                self.states.pop(next(iter(self.states)))

        student.fit = cached_fit
        return student


def run_oracle_arm(cfg: Config, arm: str, targeted: dict, fits: FitCache | None = None) -> dict:
    """A `real` or `active` run, after the `targeted` run of the same seed."""
    from loop.bench.oracle import run_oracle
    from loop.components import build_student, build_task

    task, student = build_task(cfg), build_student(cfg)
    if fits is not None:
        student = fits.wrap(student, cfg)
    return run_oracle(cfg, arm, targeted["rounds"], task, student, task.load_splits())


def run_one(cfg: Config, teacher, embedder, run_dir: Path, run_id: str, fits: FitCache | None = None) -> dict:
    """One benchmark run; returns its per-round curve."""
    from loop.components import build_student, build_task
    from loop.controller import run_loop
    from loop.parts import Parts
    from loop.store import RunStore
    from loop.tracking import Tracker

    store = RunStore(run_dir / "store.sqlite")
    resume = store.run_info(run_id) is not None  # an interrupted benchmark run goes on where it stopped
    store.start_run(run_id, cfg.to_dict())
    tracker = Tracker(cfg.tracking.uri, cfg.tracking.experiment, cfg.base_dir)

    task, student = build_task(cfg), build_student(cfg)
    if fits is not None:
        student = fits.wrap(student, cfg)
    parts = Parts(task=task, student=student, teacher=teacher, embedder=embedder, splits=task.load_splits(),
                  store=store, tracker=tracker, reviser=task.self_reviser(student))
    try:
        summary = run_loop(cfg, parts, run_id, run_dir / run_id, resume=resume)
        rows = store.round_rows(run_id)
    finally:
        store.close()
    metric = cfg.loop.metric
    return {"rounds": [{"round": r["round"], "tokens": int(r["metrics"]["tokens_spent_total"]),
                        "accepted": int(r["metrics"]["accepted_total"]),
                        "test": r["metrics"][f"test_{metric}"], "stop": r["metrics"][f"stop_{metric}"]}
                       for r in rows],
            "stop_reason": summary["stop_reason"], "mlflow_run_id": summary["mlflow_run_id"]}


def run_bench(cfg: Config, strategies: list[str], seeds: list[int], budgets: list[int], rounds: int,
              out: Path, work_dir: Path) -> dict:
    """Run every missing (strategy, seed), writing the JSON after each; then summarise and plot."""
    from loop.components import build_teacher
    from loop.embedder import SentenceEmbedder

    key = settings_key(cfg, budgets, rounds)
    result = {"task": cfg.task.name, "config": out.stem.removeprefix("efficiency-"),
              "metric": cfg.loop.metric, "budgets": budgets, "rounds": rounds,
              "settings": key, "runs": []}
    if out.is_file():
        old = json.loads(out.read_text())
        if old.get("settings") == key:
            result["runs"] = old["runs"]
        else:
            log.info("%s holds results of other settings: starting afresh", out)
    unknown = [s for s in strategies if s not in ARMS]
    if unknown:
        raise ConfigError(f"--strategies: unknown arm(s) {', '.join(unknown)} (arms: {', '.join(ARMS)})")
    if {"real", "active"} & set(strategies) and "targeted" not in strategies:
        raise ConfigError("--strategies: real and active buy as many labels as targeted accepted: "
                          "add targeted")
    done = {(r["strategy"], r["seed"]) for r in result["runs"]}
    order = sorted(strategies, key=list(ARMS).index)  # targeted before the arms that follow its counts
    todo = [(s, seed) for seed in seeds for s in order if (s, seed) not in done]
    teacher = build_teacher(cfg) if any(ARMS[s][0] != "none" for s, _ in todo) else None
    embedder = SentenceEmbedder(cfg.filters.embedder)
    fits = FitCache()
    try:
        for strategy, seed in todo:
            run_cfg = seeded(cfg, strategy, seed, max(budgets), rounds)
            run_id = f"bench-{key}-{strategy}-s{seed}"
            log.info("bench efficiency: %s seed %d (%d of %d to do)", strategy, seed,
                     todo.index((strategy, seed)) + 1, len(todo))
            started = time.monotonic()
            if strategy in ("real", "active"):
                targeted = next(r for r in result["runs"]
                                if r["strategy"] == "targeted" and r["seed"] == seed)
                row = run_oracle_arm(run_cfg, strategy, targeted, fits)
            else:
                row = run_one(run_cfg, teacher, embedder, work_dir, run_id, fits)
            result["runs"].append({"strategy": strategy, "seed": seed, **row,
                                   "seconds": round(time.monotonic() - started, 1)})
            _save(result, out)  # an interrupted benchmark keeps its table and plot so far
    finally:
        if teacher is not None:
            teacher.unload()
    _save(result, out)
    return result


def _save(result: dict, out: Path) -> None:
    from loop.bench.paired import plot, summary

    result["summary"] = summary(result)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    plot(result, out.with_suffix(".png"))
