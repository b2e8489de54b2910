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
import statistics
from pathlib import Path

from loop.config import Config

log = logging.getLogger(__name__)


def seeded(cfg: Config, strategy: str, seed: int, budget: int, rounds: int) -> Config:
    """The config of one benchmark run."""
    return dataclasses.replace(
        cfg,
        data=dataclasses.replace(cfg.data, seed=cfg.data.seed + seed),
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
OPERATIONAL = {"teacher": ("concurrency", "timeout_s", "max_retries", "backoff_s", "down_after", "api_key_env"),
               "tracking": ("uri", "experiment"), "run": ("dir", "name")}


def settings_key(cfg: Config, budgets: list[int], rounds: int) -> str:
    """Results are reused only under the same config (operational settings aside), budgets, rounds and
    prompt templates."""
    from loop.prompts import Prompts

    prompts = Prompts(cfg.resolve(cfg.task.prompts)).version
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


def run_one(cfg: Config, teacher, embedder, run_dir: Path, run_id: str, fits: FitCache | None = None) -> dict:
    """One benchmark run; returns its per-round curve."""
    from loop.components import build_student, build_task
    from loop.controller import Parts, run_loop
    from loop.store import RunStore
    from loop.tracking import Tracker

    store = RunStore(run_dir / "store.sqlite")
    store.start_run(run_id, cfg.to_dict())
    tracker = Tracker(cfg.tracking.uri, cfg.tracking.experiment, cfg.base_dir)
    from loop.teachers.student import StudentReviser

    task, student = build_task(cfg), build_student(cfg)
    if fits is not None:
        student = fits.wrap(student, cfg)
    parts = Parts(task=task, student=student, teacher=teacher, embedder=embedder, splits=task.load_splits(),
                  store=store, tracker=tracker, reviser=StudentReviser(student) if cfg.task.reviser == "student" else None)
    try:
        summary = run_loop(cfg, parts, run_id, run_dir / run_id)
        rows = store.round_rows(run_id)
    finally:
        store.close()
    metric = cfg.loop.metric
    return {"rounds": [{"round": r["round"], "tokens": int(r["metrics"]["tokens_spent_total"]),
                        "accepted": int(r["metrics"]["accepted_total"]),
                        "test": r["metrics"][f"test_{metric}"], "stop": r["metrics"][f"stop_{metric}"]}
                       for r in rows],
            "stop_reason": summary["stop_reason"], "mlflow_run_id": summary["mlflow_run_id"]}


def at_budget(curve: list[dict], budget: int) -> dict:
    """The student a run had after its last round within `budget` tokens, and the one the loop would
    keep (best stop-split metric so far)."""
    within = [r for r in curve if r["tokens"] <= budget]
    last = within[-1]
    best = max(within, key=lambda r: (r["stop"], -r["round"]))
    return {"test": last["test"], "tokens": last["tokens"], "round": last["round"], "selected_test": best["test"]}


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def tokens_to_reach(runs: list[dict], target: float, step: int, limit: int) -> int | None:
    """Fewest tokens (on a grid of `step`) at which the seeds' mean test metric reaches `target`."""
    for tokens in range(0, limit + 1, step):
        if statistics.fmean(at_budget(r["rounds"], tokens)["test"] for r in runs) >= target - 1e-12:
            return tokens
    return None


def summarise(runs: list[dict], budgets: list[int]) -> dict:
    """Mean ± std per strategy and budget, and the token ratios the claim is about."""
    by = {s: [r for r in runs if r["strategy"] == s] for s in ("none", "random", "targeted")}
    table = {}
    for strategy, rs in by.items():
        if not rs:
            continue
        table[strategy] = {}
        for b in budgets:
            points = [at_budget(r["rounds"], b) for r in rs]
            mean, std = _mean_std([p["test"] for p in points])
            smean, sstd = _mean_std([p["selected_test"] for p in points])
            table[strategy][str(b)] = {"mean": mean, "std": std, "selected_mean": smean, "selected_std": sstd,
                                       "tokens_mean": statistics.fmean(p["tokens"] for p in points),
                                       "seeds": len(points)}
    out = {"table": table}
    if by["random"] and by["targeted"]:
        top, step = max(budgets), max(1, min(budgets) // 16)
        targeted_final = table["targeted"][str(top)]["mean"]
        random_best = max(v["mean"] for v in table["random"].values())
        need_r = tokens_to_reach(by["random"], targeted_final, step, top)
        need_t = tokens_to_reach(by["targeted"], random_best, step, top)
        have_r = tokens_to_reach(by["random"], random_best, step, top)
        out.update({
            "targeted_final": targeted_final, "random_best": random_best,
            "random_tokens_to_targeted_final": need_r,
            "random_over_targeted_tokens": (need_r / top) if need_r else None,  # None: not reached within budget
            "targeted_tokens_to_random_best": need_t, "random_tokens_to_random_best": have_r,
            "targeted_ge_random_every_budget": all(table["targeted"][str(b)]["mean"] >= table["random"][str(b)]["mean"]
                                                   for b in budgets),
            "targeted_half_tokens_for_random_best": bool(need_t is not None and have_r and need_t <= have_r / 2),
        })
        if by["none"]:
            base = table["none"][str(top)]["mean"]
            out["both_above_none"] = all(table[s][str(b)]["mean"] > base for s in ("random", "targeted")
                                         for b in budgets)
    return out


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budgets = result["budgets"]
    xs = [0] + budgets
    fig, ax = plt.subplots(figsize=(6, 4))
    for strategy, colour in (("targeted", "tab:red"), ("random", "tab:blue"), ("none", "tab:gray")):
        rs = [r for r in result["runs"] if r["strategy"] == strategy]
        if not rs:
            continue
        pts = [[at_budget(r["rounds"], b)["test"] for r in rs] for b in xs]
        mean = [statistics.fmean(p) for p in pts]
        std = [statistics.stdev(p) if len(p) > 1 else 0.0 for p in pts]
        ax.plot(xs, mean, marker="o", color=colour, label=f"{strategy} (n={len(rs)})")
        ax.fill_between(xs, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                        color=colour, alpha=0.15)
    ax.set_xlabel("teacher tokens spent (budget)")
    ax.set_ylabel(f"test {result['metric']}")
    ax.set_title(f"{result['task']}: test {result['metric']} vs tokens (mean ± std over seeds)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_bench(cfg: Config, strategies: list[str], seeds: list[int], budgets: list[int], rounds: int,
              out: Path, work_dir: Path) -> dict:
    """Run every missing (strategy, seed), writing the JSON after each; then summarise and plot."""
    from loop.components import build_teacher
    from loop.embedder import SentenceEmbedder

    key = settings_key(cfg, budgets, rounds)
    result = {"task": cfg.task.name, "metric": cfg.loop.metric, "budgets": budgets, "rounds": rounds,
              "settings": key, "runs": []}
    if out.is_file():
        old = json.loads(out.read_text())
        if old.get("settings") == key:
            result["runs"] = old["runs"]
        else:
            log.info("%s holds results of other settings: starting afresh", out)
    done = {(r["strategy"], r["seed"]) for r in result["runs"]}
    todo = [(s, seed) for seed in seeds for s in strategies if (s, seed) not in done]
    teacher = build_teacher(cfg) if any(s != "none" for s, _ in todo) else None
    embedder = SentenceEmbedder(cfg.filters.embedder)
    fits = FitCache()
    try:
        for strategy, seed in todo:
            run_cfg = seeded(cfg, strategy, seed, max(budgets), rounds)
            run_id = f"bench-{key}-{strategy}-s{seed}"
            log.info("bench efficiency: %s seed %d (%d of %d to do)", strategy, seed, todo.index((strategy, seed)) + 1,
                     len(todo))
            row = run_one(run_cfg, teacher, embedder, work_dir, run_id, fits)
            result["runs"].append({"strategy": strategy, "seed": seed, **row})
            _save(result, out)  # an interrupted benchmark keeps its table and plot so far
    finally:
        if teacher is not None:
            teacher.unload()
    _save(result, out)
    return result


def _save(result: dict, out: Path) -> None:
    result["summary"] = summarise(result["runs"], result["budgets"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    plot(result, out.with_suffix(".png"))
