"""run_loop(): the round loop, top to bottom.

Round 0 trains the student on the seed set (the baseline). Each later round evaluates
the current student on the mining split, mines hard cases and their neighbourhoods,
plans prompts, generates under the budget, screens the candidates, retrains on seed +
accepted samples, evaluates on the stopping split and test, and checks for a plateau.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from loop import progress
from loop.budget import Budget
from loop.config import Config
from loop.datareport import data_report, summary, warnings
from loop.filters import Reference
from loop.labelcheck import GoldVote, LabelCheck
from loop.parts import Parts
from loop.plan import Plan
from loop.records import Example
from loop.report import log_round_artifacts, round_metrics
from loop.stages import (
    BlindLabeller,
    Generated,
    MineResult,
    Timer,
    embed_new,
    evaluate,
    followup,
    generate_routed,
    mine,
    plan,
    screen_candidates,
)
from loop.warmup import Warmup

log = logging.getLogger(__name__)


@dataclass
class Round:
    """What one round produced (all empty for the baseline)."""

    timer: Timer = field(default_factory=Timer)
    mined: MineResult = field(default_factory=MineResult)
    gen: Generated = field(default_factory=Generated)
    planned: Plan = field(default_factory=Plan)
    cands: list = field(default_factory=list)
    followup: list = field(default_factory=list)  # the last round's neighbourhoods, re-scored now
    new: list = field(default_factory=list)  # accepted samples
    new_vecs: object = None
    starved: bool = False  # requests were planned but none fitted the budget


def augment(cfg: Config, parts: Parts, run_id: str, rnd: int, state: RunState) -> Round:
    """Mine -> plan -> generate -> screen: the samples this round adds (stored and counted)."""
    r, task, splits, store = Round(), parts.task, parts.splits, parts.store
    budget, accepted = state.budget, state.accepted
    # what may seed generation: gold only, or also accepted samples
    seeds = splits["train"] + (accepted if cfg.mining.seed_from == "gold+generated" else [])
    with r.timer("mine"):
        r.mined = mine(parts.student, task, cfg, splits["dev_mine"] + splits["pool"], seeds, rnd,
                       parts.embedder, accepted)
        r.followup = followup(state.previous.mined.hoods, state.previous.planned, r.mined)
    with r.timer("plan"):
        r.planned = plan(cfg.generation.strategy, r.mined, seeds, task, cfg, rnd, r.followup)
    with r.timer("generate"):
        r.gen = generate_routed(parts.teacher, parts.reviser, r.planned.requests, budget, store, run_id, rnd,
                                cfg.teacher.cache)
    if r.planned.requests and not r.gen.pairs:
        r.starved = True
        return r
    agree = (BlindLabeller(parts.teacher, task, cfg, budget, store, run_id, rnd)
             if cfg.filters.label_agreement else None)
    check = (LabelCheck(task, parts.student, state.vote, cfg.filters.label_check_rule,
                        cfg.filters.label_check_share) if state.vote is not None else None)
    with r.timer("filter"):
        r.cands = screen_candidates(r.gen.pairs, task, state.known, state.evaluation, cfg,
                                    budget.samples_left(), agree, check)
    r.gen.agreement = agree.gen if agree else None
    r.new = [Example(c.text, c.label, source="generated", group=c.meta.get("problem", ""))
             for c in r.cands if c.verdict == "accepted"]
    r.new_vecs = embed_new(parts.student, parts.embedder, cfg, r.new)
    store.add_candidates(run_id, rnd, r.cands)
    budget.add_samples(len(r.new))
    return r


@dataclass
class Best:
    """The best round so far on the stopping split, and how many rounds since it improved."""

    round: int = -1
    score: float = float("-inf")
    metrics: dict = field(default_factory=dict)
    stale: int = 0

    def offer(self, rnd: int, metrics: dict, metric: str, min_delta: float) -> bool:
        """Take round `rnd` if its stopping-split `metric` beats the best by more than `min_delta`."""
        score = metrics[f"stop_{metric}"]
        if self.round >= 0 and score <= self.score + min_delta:
            self.stale += 1
            return False
        self.round, self.score, self.metrics, self.stale = rnd, score, metrics, 0
        return True


@dataclass
class RunState:
    """What the rounds of one run share."""

    budget: Budget
    accepted: list[Example]
    known: Reference  # what a new sample must not duplicate
    evaluation: Reference  # what a new sample must not be close to (contamination)
    vote: GoldVote | None = None  # the gold examples the label check consults (filters.label_check)
    best: Best = field(default_factory=Best)
    history: list[dict] = field(default_factory=list)  # every finished round's metrics, baseline first
    previous: Round = field(default_factory=Round)  # the last round (its neighbourhoods are followed up)
    warmup: Warmup = field(default_factory=Warmup)  # the teacher's engine, starting while round 0 trains


def _log_round(cfg: Config, rnd: int, metrics: dict, budget: Budget, accepted: int, timer: Timer,
               mlflow_id: str | None) -> None:
    metric = cfg.loop.metric
    log.info("round %d: stop %s %.4f | test %s %.4f | tokens %d (run %d / %d) | accepted %d (run %d) | %s "
             "| MLflow run %s", rnd, metric, metrics[f"stop_{metric}"], metric, metrics[f"test_{metric}"],
             metrics["tokens_round"], budget.spent.tokens, cfg.budget.tokens, metrics["accepted"], accepted,
             " ".join(f"{k}={v:.1f}s" for k, v in timer.seconds.items()),
             mlflow_id or "- (tracking server away: logged on resume)")
    if metrics.get("truncated_replies"):
        log.warning("round %d: %d of %d replies were cut off at teacher.max_tokens=%d; what followed the "
                    "cut was paid for and lost: raise teacher.max_tokens (or lower "
                    "generation.samples_per_request)",
                    rnd, metrics["truncated_replies"], metrics["requests"], cfg.teacher.max_tokens)


def _start(cfg: Config, parts: Parts, run_id: str, rows: list[dict]) -> RunState:
    """The state after the stored finished rounds (none on a fresh run)."""
    store, splits = parts.store, parts.splits
    accepted = store.accepted(run_id)
    # copies of the mining examples shown in prompts are duplicates, not new data
    known = Reference(parts.embedder, splits["train"] + splits["dev_mine"] + accepted,
                      by_label=cfg.filters.similarity_scope == "same_label")
    evaluation = Reference(parts.embedder, [e for s in cfg.filters.contamination_splits for e in splits[s]])
    vote = (GoldVote(parts.embedder, splits["train"] + splits["dev_mine"], cfg.filters.label_check_k)
            if cfg.filters.label_check and parts.task.teacher_labels else None)
    state = RunState(Budget(cfg.budget, store.spent(run_id)), accepted, known, evaluation, vote=vote)
    for row in rows:
        state.history.append(row["metrics"])
        state.best.offer(row["round"], row["metrics"], cfg.loop.metric, cfg.loop.min_delta)
    return state


def _stop_before(cfg: Config, rnd: int, state: RunState) -> str | None:
    """Why the run stops before round `rnd` (plateau, budget), or None."""
    if state.best.stale >= cfg.loop.patience:
        return "plateau"
    if rnd > 0 and cfg.generation.strategy != "none" and state.budget.exhausted(cfg.teacher.max_tokens):
        return "budget"
    return None


def _round(cfg: Config, parts: Parts, run_id: str, run_dir: Path, rnd: int, state: RunState) -> str | None:
    """One round (the baseline when `rnd` is 0): augment, retrain, evaluate, log, keep the best student.
    Returns 'budget' when no planned request fitted the budget (nothing was trained or logged)."""
    student, splits, tracker = parts.student, parts.splits, parts.tracker
    progress.NOW.begin_round(rnd)
    with tracker.round(rnd) as mlrun:
        r = Round()
        if rnd > 0:
            state.warmup.wait()
            r = augment(cfg, parts, run_id, rnd, state)
            if r.starved:
                tracker.set_tag("stopped", f"budget: none of {r.gen.skipped} requests fit")
                return "budget"
            state.accepted += r.new
            progress.NOW.accepted = len(state.accepted)
        if cfg.teacher.unload_before_train:
            parts.teacher.unload()
        if rnd == 0 or r.new:
            with r.timer("train"):
                student.fit(splits["train"] + state.accepted)
        else:  # the same data would train the same student (training is seeded)
            log.info("round %d: nothing accepted; the student is not retrained", rnd)
        with r.timer("evaluate"):
            metrics, preds = evaluate(student, parts.task, splits, ("dev_stop", "test"))
        metrics.update(round_metrics(r.mined, r.gen, r.cands, state.budget, state.accepted, r.timer))
        tracker.log_round(rnd, metrics)
        analysis = log_round_artifacts(tracker, parts.task, splits, preds, r.mined, r.planned, r.cands,
                                       r.followup, r.new_vecs)
        mlflow_id = None if mlrun is None or tracker.lost else mlrun.info.run_id  # None: logged on resume
        parts.store.finish_round(run_id, rnd, metrics, mlflow_id, analysis)
    state.previous = r
    state.history.append(metrics)
    _log_round(cfg, rnd, metrics, state.budget, len(state.accepted), r.timer, mlflow_id)
    if state.best.offer(rnd, metrics, cfg.loop.metric, cfg.loop.min_delta):
        student.save(str(run_dir / "student-best"))
    return None


def _summary(cfg: Config, state: RunState, stop_reason: str, parent_id: str) -> dict:
    metric, best = cfg.loop.metric, state.best
    return {"best_round": best.round, f"best_stop_{metric}": best.score,
            f"best_test_{metric}": best.metrics[f"test_{metric}"],
            "baseline_test_" + metric: state.history[0][f"test_{metric}"],
            "rounds_run": len(state.history) - 1,
            "stop_reason": stop_reason, "tokens_spent": state.budget.spent.tokens,
            "money_spent": state.budget.spent.money, "accepted_total": len(state.accepted),
            "mlflow_run_id": parent_id}


def run_loop(cfg: Config, parts: Parts, run_id: str, run_dir: Path, resume: bool = False) -> dict:
    """`_run_loop`, with the run marked `failed` (or `interrupted`) in the store when it ends early."""
    try:
        return _run_loop(cfg, parts, run_id, run_dir, resume)
    except Exception:
        _mark(parts.store, run_id, "failed")
        raise
    except BaseException:  # Ctrl-C, SIGTERM
        _mark(parts.store, run_id, "interrupted")
        raise


def _mark(store, run_id: str, status: str) -> None:
    """Best effort: the store itself may be what failed, and its error is the one to report."""
    try:
        store.set_run(run_id, status=status)
    except Exception as exc:  # noqa: BLE001
        log.debug("could not mark run %s %s: %s", run_id, status, exc)


def _run_loop(cfg: Config, parts: Parts, run_id: str, run_dir: Path, resume: bool = False) -> dict:
    """Run baseline + `cfg.loop.rounds` rounds; returns the run summary.

    With `resume`, finished rounds (in the store) are not redone: the student is retrained on
    seed + their accepted samples (training is seeded, so it is the same student), verdicts of
    an unfinished round are dropped and that round runs again, its responses coming back free
    from the cache; the MLflow parent run is continued.
    """
    store, tracker = parts.store, parts.tracker
    rows, mlflow_id = [], None
    if resume:
        dropped = store.discard_unfinished(run_id)
        info = store.run_info(run_id)
        # a run killed between creating its MLflow run and storing its id finds it by tag
        rows = store.round_rows(run_id, analysis=True)
        mlflow_id = info["mlflow_run_id"] or tracker.find_parent(run_id, info["created"])
        log.info("resuming %s after %d finished round(s) (%d unscreened verdicts dropped)", run_id, len(rows),
                 dropped)
    state = _start(cfg, parts, run_id, rows)
    if cfg.generation.strategy != "none" and cfg.loop.rounds > 0 and not cfg.teacher.unload_before_train:
        state.warmup = Warmup(parts.teacher)
    try:
        return _rounds(cfg, parts, run_id, run_dir, rows, mlflow_id, state)
    finally:
        state.warmup.settle()  # an engine still starting is started, so that whoever unloads it finds it


def _rounds(cfg: Config, parts: Parts, run_id: str, run_dir: Path, rows: list[dict], mlflow_id,
            state: RunState) -> dict:
    store, tracker = parts.store, parts.tracker
    stop_reason = "rounds"
    tags = {"run_id": run_id, "strategy": cfg.generation.strategy,
            "prompt_version": parts.task.prompts.version}
    with tracker.parent(cfg.run.name or run_id, cfg.to_dict(), tags, resume_id=mlflow_id):
        store.set_run(run_id, mlflow_run_id=tracker.parent_id, status="running")
        for rnd, mlflow_run in tracker.log_missing(rows).items():
            store.set_round_mlflow(run_id, rnd, mlflow_run)
        _report_data(parts)
        now = progress.NOW
        now.rounds, now.cap, now.spent, now.accepted = (cfg.loop.rounds, cfg.budget.tokens,
                                                         state.budget.spent.tokens, len(state.accepted))
        if rows and len(rows) <= cfg.loop.rounds:
            parts.student.fit(parts.splits["train"] + state.accepted)  # the last finished round's student
        for rnd in range(len(rows), cfg.loop.rounds + 1):
            stop = _stop_before(cfg, rnd, state) or _round(cfg, parts, run_id, run_dir, rnd, state)
            if stop:
                stop_reason = stop
                break
        summary = _summary(cfg, state, stop_reason, tracker.parent_id)
        tracker.log_parent_summary(summary)
        store.set_run(run_id, status="done")
        summary["report"] = _write_report(parts, run_id, run_dir)
    return summary


def _report_data(parts: Parts) -> None:
    """What the data is, logged and on the MLflow parent run (data_report.json)."""
    report = data_report(parts.task, parts.splits)
    log.info("%s", summary(report))
    for line in warnings(report, examples=1):
        log.warning("%s", line)
    parts.tracker.log_json(report, "data_report.json")


def _write_report(parts: Parts, run_id: str, run_dir: Path) -> str | None:
    """The run's HTML report, in its folder and on the MLflow parent run. The run is done whatever happens
    here: a report that fails is logged, and `loop report` writes it again."""
    from loop.runreport import write

    try:
        path = write(parts.store, run_id, run_dir / "report.html")
        parts.tracker.log_file(path)
        return str(path)
    except Exception as exc:  # noqa: BLE001
        log.warning("the run's report could not be written (%s); `loop report %s` writes it", exc, run_id)
        return None


def mine_dry_run(cfg: Config, parts: Parts, run_id: str, train: bool = True) -> tuple[dict, MineResult, Plan]:
    """`loop mine`: (train and) evaluate the student, mine and plan, log the analysis; no teacher call."""
    task, student, tracker, splits = parts.task, parts.student, parts.tracker, parts.splits
    timer = Timer()
    with tracker.parent(run_id, cfg.to_dict(), {"run_id": run_id, "dry_run": "mine",
                                                "prompt_version": task.prompts.version}):
        with tracker.round(0):
            if train:
                with timer("train"):
                    student.fit(splits["train"])
            with timer("evaluate"):
                metrics, preds = evaluate(student, task, splits, ("dev_stop", "test"))
            with timer("mine"):
                mined = mine(student, task, cfg, splits["dev_mine"] + splits["pool"], splits["train"], 1,
                             parts.embedder)
            with timer("plan"):
                planned = plan("targeted", mined, splits["train"], task, cfg, 1)
            metrics.update({"errors": mined.errors, "low_confidence": mined.low_confidence,
                            "neighbourhoods": len(mined.hoods), "requests_planned": len(planned.requests),
                            **{f"seconds_{k}": v for k, v in timer.seconds.items()}})
            tracker.log_round(0, metrics)
            log_round_artifacts(tracker, task, splits, preds, mined, planned, [], [], None)
    return metrics, mined, planned
