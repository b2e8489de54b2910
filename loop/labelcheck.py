"""The free label check (`filters.label_check`): a teacher's label stands only where what the loop already
knows supports it.

What counts as support is `filters.label_check_rule`: the current student (before it trains on the round)
predicts the label, or the majority of the candidate's `k` nearest gold examples (the seed and the mining
split, under the fixed sentence embedder) carry it (`either`, the default); both of those (`both`); or at
least `filters.label_check_share` of the k nearest gold examples carry it (`vote`). Anything else is
rejected as `likely_mislabelled`. No teacher call is paid. On Banking77 the teacher's labels agree with a
reference classifier on 45% of accepted samples; after the default check, on about 75% (README, "Label
precision"). Tasks whose labels come from running code rather than from the teacher
(`Task.teacher_labels` False) are not checked.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from loop.index import VectorIndex
from loop.records import Candidate, Example


class GoldVote:
    """The labels of the k nearest gold examples of a text, under the fixed embedder."""

    def __init__(self, embedder, gold: list[Example], k: int):
        self.embedder, self.k = embedder, k
        self.labels = [e.label for e in gold]
        vecs = embedder.encode([e.text for e in gold])
        self.index = VectorIndex(vecs.shape[1]).build(vecs)

    def nearest(self, vecs: np.ndarray) -> list[list[str]]:
        """Per vector, the labels of its k nearest gold examples, nearest first."""
        if not self.labels or not len(vecs):
            return [[] for _ in range(len(vecs))]
        _, idx = self.index.search(vecs, min(self.k, len(self.labels)))
        return [[self.labels[i] for i in row if i >= 0] for row in idx]

    def majority(self, vecs: np.ndarray) -> list[str | None]:
        """Per vector, the most common label among its k nearest gold examples (ties: the nearer)."""
        return [_majority(near) for near in self.nearest(vecs)]


def _majority(near: list[str]) -> str | None:
    counts = Counter(near)
    return max(near, key=lambda lab: (counts[lab], -near.index(lab))) if near else None


def supported(rule: str, label: str, student: str, near: list[str], share: float) -> bool:
    """Whether `rule` keeps `label`, given the student's prediction and the nearest gold labels."""
    if rule == "vote":
        return bool(near) and near.count(label) / len(near) >= share
    by_student, by_vote = label == student, label == _majority(near)
    return (by_student and by_vote) if rule == "both" else (by_student or by_vote)


class LabelCheck:
    """Callable over a round's pending candidates (and their fixed-embedder vectors): rejects as
    'likely_mislabelled' each one whose label the rule's evidence does not support."""

    def __init__(self, task, student, vote: GoldVote, rule: str = "either", share: float = 0.6):
        self.task, self.student, self.vote, self.rule, self.share = task, student, vote, rule, share

    def __call__(self, cands: list[Candidate], vecs: np.ndarray) -> None:
        if not cands:
            return
        predicted = self.task.predict(self.student, [Example(c.text, c.label) for c in cands]).labels
        for cand, pred, near in zip(cands, predicted, self.vote.nearest(vecs)):
            cand.meta["student_label"], cand.meta["gold_vote"] = pred, _majority(near)
            if not supported(self.rule, cand.label, pred, near, self.share):
                cand.verdict, cand.reason = "rejected", "likely_mislabelled"
