"""The free label check (`filters.label_check`): a teacher's label stands only where what the loop already
knows supports it.

A candidate keeps its label when the current student (before it trains on the round) predicts that label,
or when the majority of its `k` nearest gold examples (the seed and the mining split, under the fixed
sentence embedder) carry it; otherwise it is rejected as `likely_mislabelled`. No teacher call is paid.
On Banking77 the teacher's labels agree with a reference classifier on 45% of accepted samples; after this
check, on about 75% (README, "Label precision"). Tasks whose labels come from running code rather than
from the teacher (`Task.teacher_labels` False) are not checked.
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

    def majority(self, vecs: np.ndarray) -> list[str | None]:
        """Per vector, the most common label among its k nearest gold examples (ties: the nearer)."""
        if not self.labels or not len(vecs):
            return [None] * len(vecs)
        _, idx = self.index.search(vecs, min(self.k, len(self.labels)))
        out = []
        for row in idx:
            near = [self.labels[i] for i in row if i >= 0]
            counts = Counter(near)
            out.append(max(near, key=lambda lab: (counts[lab], -near.index(lab))) if near else None)
        return out


class LabelCheck:
    """Callable over a round's pending candidates (and their fixed-embedder vectors): rejects as
    'likely_mislabelled' each one whose label neither the student nor the gold vote gives."""

    def __init__(self, task, student, vote: GoldVote):
        self.task, self.student, self.vote = task, student, vote

    def __call__(self, cands: list[Candidate], vecs: np.ndarray) -> None:
        if not cands:
            return
        predicted = self.task.predict(self.student, [Example(c.text, c.label) for c in cands]).labels
        for cand, pred, near in zip(cands, predicted, self.vote.majority(vecs)):
            cand.meta["student_label"], cand.meta["gold_vote"] = pred, near
            if cand.label not in (pred, near):
                cand.verdict, cand.reason = "rejected", "likely_mislabelled"
