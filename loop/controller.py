"""run_loop(): the round loop, top to bottom.

Round 0 trains the student on the seed set (the baseline). Each later round evaluates
the current student on the mining split, mines hard cases and their neighbourhoods,
plans prompts, generates under the budget, screens the candidates, retrains on seed +
accepted samples, evaluates on the stopping split and test, and checks for a plateau.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from loop.budget import Budget
from loop.config import Config
from loop.data import Example
from loop.filters import Reference
from loop.report import log_round_artifacts, round_metrics
from loop.stages import (BlindLabeller, Generated, MineResult, Timer, embed_new, evaluate, followup, generate,
                         mine, plan, screen_candidates)

log = logging.getLogger(__name__)


@dataclass
class Parts:
    task: object
    student: object
    teacher: object
    embedder: object
    splits: dict[str, list[Example]]
    store: object
    tracker: object


def run_loop(cfg: Config, parts: Parts, run_id: str, run_dir: Path) -> dict:
    """Run baseline + `cfg.loop.rounds` rounds; returns the run summary."""
    task, student, store, tracker, splits = parts.task, parts.student, parts.store, parts.tracker, parts.splits
    strategy = cfg.generation.strategy
    budget = Budget(cfg.budget, store.spent(run_id))
    accepted: list[Example] = store.accepted(run_id)
    # copies of the mining examples shown in prompts are duplicates, not new data
    known = Reference(parts.embedder, splits["train"] + splits["dev_mine"] + accepted)
    evaluation = Reference(parts.embedder, [e for s in cfg.filters.contamination_splits for e in splits[s]])
    best, stale, history, stop_reason, previous = None, 0, [], "rounds", []
    with tracker.parent(cfg.run.name or run_id, cfg.to_dict(), {"run_id": run_id, "strategy": strategy,
                                                                "prompt_version": task.prompts.version}):
        store.set_run(run_id, mlflow_run_id=tracker.parent_id)
        for rnd in range(cfg.loop.rounds + 1):
            if rnd > 0 and strategy != "none" and budget.exhausted(cfg.teacher.max_tokens):
                stop_reason = "budget"
                break
            timer, mined, gen, cands, fixed, new_vecs = Timer(), MineResult(), Generated(), [], [], None
            with tracker.round(rnd) as mlrun:
                if rnd > 0:
                    # what may seed generation: gold only, or also accepted samples
                    seeds = splits["train"] + (accepted if cfg.mining.seed_from == "gold+generated" else [])
                    with timer("mine"):
                        mined = mine(student, task, cfg, splits["dev_mine"] + splits["pool"], seeds, rnd,
                                     parts.embedder)
                        fixed = followup(previous, mined)
                    with timer("plan"):
                        requests = plan(strategy, mined, seeds, task, cfg, rnd)
                    with timer("generate"):
                        gen = generate(parts.teacher, requests, budget, store, run_id, rnd, cfg.teacher.cache)
                    if requests and not gen.pairs:
                        tracker.mlflow.set_tag("stopped", f"budget: none of {gen.skipped} requests fit")
                        stop_reason = "budget"
                        break
                    agree = (BlindLabeller(parts.teacher, task, cfg, budget, store, run_id, rnd)
                             if cfg.filters.label_agreement else None)
                    with timer("filter"):
                        cands = screen_candidates(gen.pairs, task, known, evaluation, cfg, budget.samples_left(),
                                                  agree)
                    gen.agreement = agree.gen if agree else None
                    new = [Example(c.text, c.label, source="generated") for c in cands if c.verdict == "accepted"]
                    new_vecs = embed_new(student, parts.embedder, cfg, new)
                    store.add_candidates(run_id, rnd, cands)
                    budget.add_samples(len(new))
                    accepted += new
                if cfg.teacher.unload_before_train:
                    parts.teacher.unload()
                with timer("train"):
                    student.fit(splits["train"] + accepted)
                with timer("evaluate"):
                    metrics, preds = evaluate(student, task, splits, ("dev_stop", "test"))
                metrics.update(round_metrics(mined, gen, cands, budget, accepted, timer))
                tracker.log_round(rnd, metrics)
                log_round_artifacts(tracker, task, splits, preds, mined, cands, fixed, new_vecs)
                store.finish_round(run_id, rnd, metrics, mlrun.info.run_id)
            previous = mined.hoods
            score = metrics[f"stop_{cfg.loop.metric}"]
            history.append(metrics)
            log.info("round %d: stop %s %.4f | test %s %.4f | tokens %d (run %d / %d) | accepted %d (run %d) | %s "
                     "| MLflow run %s", rnd, cfg.loop.metric, score, cfg.loop.metric,
                     metrics[f"test_{cfg.loop.metric}"], metrics["tokens_round"], budget.spent.tokens,
                     cfg.budget.tokens, metrics["accepted"], len(accepted),
                     " ".join(f"{k}={v:.1f}s" for k, v in timer.seconds.items()), mlrun.info.run_id)
            if best is None or score > best[1] + cfg.loop.min_delta:
                best, stale = (rnd, score, metrics), 0
                student.save(str(run_dir / "student-best"))
            else:
                stale += 1
                if stale >= cfg.loop.patience:
                    stop_reason = "plateau"
                    break
        summary = {"best_round": best[0], f"best_stop_{cfg.loop.metric}": best[1],
                   f"best_test_{cfg.loop.metric}": best[2][f"test_{cfg.loop.metric}"],
                   "baseline_test_" + cfg.loop.metric: history[0][f"test_{cfg.loop.metric}"],
                   "rounds_run": len(history) - 1, "stop_reason": stop_reason,
                   "tokens_spent": budget.spent.tokens, "money_spent": budget.spent.money,
                   "accepted_total": len(accepted), "mlflow_run_id": tracker.parent_id}
        tracker.log_parent_summary(summary)
    store.set_run(run_id, status="done")
    return summary


def mine_dry_run(cfg: Config, parts: Parts, run_id: str, train: bool = True) -> tuple[dict, object]:
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
                requests = plan("targeted", mined, splits["train"], task, cfg, 1)
            metrics.update({"errors": mined.errors, "low_confidence": mined.low_confidence,
                            "neighbourhoods": len(mined.hoods), "requests_planned": len(requests),
                            **{f"seconds_{k}": v for k, v in timer.seconds.items()}})
            tracker.log_round(0, metrics)
            log_round_artifacts(tracker, task, splits, preds, mined, [], [], None)
    return metrics, mined
