"""The benchmark's label-buying arms: what the same count of *real* labels would have given.

`real` adds, after each round, as many gold-labelled examples as `targeted` accepted in that
round of the same seed, drawn at random from the labelled reserve (the `oracle` split: rows no
split of a run uses). `active` adds the same count of the reserve's most uncertain examples
under the current student (smallest top-1 minus top-2 probability), with their gold labels:
classic pool-based active learning, what a human labeller would be paid for. Both retrain and
evaluate exactly as `run_loop` does (same student settings, same splits, same metrics), and
carry the targeted run's cumulative tokens so that the curves line up on the budget axis.
"""

from __future__ import annotations

import logging
import random

import numpy as np

from loop.config import Config
from loop.records import Example

log = logging.getLogger(__name__)

ARMS = ("real", "active")


def counts_per_round(curve: list[dict]) -> list[tuple[int, int]]:
    """(samples accepted in the round, cumulative tokens after it) for rounds 1.. of a targeted run."""
    return [(r["accepted"] - prev["accepted"], r["tokens"]) for prev, r in zip(curve, curve[1:])]


def most_uncertain(student, reserve: list[Example], n: int) -> list[int]:
    """Indices of the n reserve examples with the smallest margin between the student's top two classes."""
    if n <= 0 or not reserve:
        return []
    probs = student.predict(reserve).probs
    top2 = np.sort(probs, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    return [int(i) for i in np.argsort(margin, kind="stable")[:n]]


def pick(arm: str, student, reserve: list[Example], n: int, rng: random.Random) -> list[int]:
    if arm == "real":
        return rng.sample(range(len(reserve)), min(n, len(reserve)))
    return most_uncertain(student, reserve, n)


def run_oracle(cfg: Config, arm: str, targeted_curve: list[dict], task, student, splits: dict) -> dict:
    """One `real` or `active` run: its per-round curve, in the format of the other arms' runs."""
    from loop.stages import evaluate

    metric = cfg.loop.metric
    reserve, added = list(splits["oracle"]), []
    rng = random.Random(cfg.generation.seed * 1_000_003 + 17)

    def row(rnd: int, tokens: int, retrain: bool) -> dict:
        if retrain:
            student.fit(splits["train"] + added)
        metrics, _ = evaluate(student, task, splits, ("dev_stop", "test"))
        return {"round": rnd, "tokens": tokens, "accepted": len(added), "test": metrics[f"test_{metric}"],
                "stop": metrics[f"stop_{metric}"]}

    rounds = [row(0, 0, True)]
    for rnd, (count, tokens) in enumerate(counts_per_round(targeted_curve), start=1):
        chosen = set(pick(arm, student, reserve, count, rng))
        added += [reserve[i] for i in sorted(chosen)]
        reserve = [e for i, e in enumerate(reserve) if i not in chosen]
        if chosen:
            rounds.append(row(rnd, tokens, True))
        else:  # nothing to add: the same data trains the same student
            rounds.append({**rounds[-1], "round": rnd, "tokens": tokens})
        log.info("bench %s: round %d added %d gold examples (%d in all): test %s %.4f", arm, rnd, len(chosen),
                 len(added), metric, rounds[-1]["test"])
    return {"rounds": rounds, "stop_reason": "rounds", "mlflow_run_id": None}
