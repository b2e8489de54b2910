"""Candidate filters after parsing: exact and near duplicates, contamination, the sample cap.

The task's own checks (parse, schema, label, length) run in `task.parse`. These checks
compare a candidate with what the student already has (train + accepted, and earlier
candidates of the same round) and with the evaluation splits, by exact text and by
cosine similarity under a fixed sentence embedder.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from loop.config import FilterConfig
from loop.data import Candidate, Example, text_id
from loop.index import VectorIndex, max_similarity


class Reference:
    """Texts a candidate is compared with: ids for exact matches, a FAISS index for cosine."""

    def __init__(self, embedder, examples: list[Example]):
        self.embedder = embedder
        self.ids = {e.id for e in examples}
        vecs = embedder.encode([e.text for e in examples])
        self.index = VectorIndex(vecs.shape[1]).build(vecs)

    def add(self, texts: list[str], vecs: np.ndarray) -> None:
        self.ids.update(text_id(t) for t in texts)
        self.index.add(vecs)


def screen(cands: list[Candidate], known: Reference, evaluation: Reference, cfg: FilterConfig,
           samples_left: int) -> None:
    """Set verdicts on pending candidates; accepted ones are added to `known` as they pass.

    At most `samples_left` are accepted; later passing candidates are rejected as 'budget'.
    """
    pending = [c for c in cands if c.verdict == "pending"]
    if not pending:
        return
    vecs = known.embedder.encode([c.text for c in pending])
    eval_sim = max_similarity(vecs, evaluation.index)
    for i, cand in enumerate(pending):
        tid = text_id(cand.text)
        cand.meta["eval_cosine"] = round(float(eval_sim[i]), 4)
        if tid in evaluation.ids or eval_sim[i] >= cfg.contamination_cosine:
            cand.verdict, cand.reason = "rejected", "contamination"
            continue
        if tid in known.ids:
            cand.verdict, cand.reason = "rejected", "duplicate"
            continue
        near = float(max_similarity(vecs[i:i + 1], known.index)[0])
        cand.meta["known_cosine"] = round(near, 4)
        if near >= cfg.near_dup_cosine:
            cand.verdict, cand.reason = "rejected", "near_duplicate"
            continue
        if samples_left <= 0:
            cand.verdict, cand.reason = "rejected", "budget"
            continue
        cand.verdict = "accepted"
        samples_left -= 1
        known.add([cand.text], vecs[i:i + 1])


def rejection_counts(cands: list[Candidate]) -> dict[str, int]:
    return dict(Counter(c.reason for c in cands if c.verdict == "rejected"))
