"""Candidate filters after parsing: duplicates, contamination, in-round diversity, label agreement, the cap.

The task's own checks (parse, schema, label, length, code that must parse and run) happen
in `task.parse` / `task.verify`. These checks compare a candidate with what the student
already has (train + accepted), with the evaluation splits, and with the round's other
candidates, by exact text and by cosine similarity under a fixed sentence embedder (for a
pair, cosine compares the generated side only: see `generated_side`).
Each rejection carries a reason, counted per round.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Callable, Optional

import numpy as np

from loop.config import FilterConfig
from loop.data import clean_text, generated_side
from loop.index import VectorIndex, max_similarity
from loop.records import Candidate, Example, text_id

# characters no sample may hold: control characters other than tab and newlines (terminal escapes, NULs,
# C1 codes); bidi embeddings, overrides and isolates, which make text (and code: "Trojan Source") read
# differently from what it is; and lone surrogates, which are not text at all (UTF-8 cannot hold them)
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


class Reference:
    """Texts a candidate is compared with: ids for exact matches, a FAISS index for cosine, and with
    `by_label` one index per label (for `filters.similarity_scope: same_label`)."""

    def __init__(self, embedder, examples: list[Example], by_label: bool = False):
        self.embedder = embedder
        self.ids = {e.id for e in examples}
        vecs = embedder.encode([generated_side(e.text) for e in examples])
        self.index = VectorIndex(vecs.shape[1]).build(vecs)
        self.labelled: dict[str, VectorIndex] | None = None
        if by_label:
            self.labelled = {}
            for label in {e.label for e in examples}:
                rows = [i for i, e in enumerate(examples) if e.label == label]
                self._label_index(label).add(vecs[rows])

    def _label_index(self, label: str) -> VectorIndex:
        if label not in self.labelled:
            self.labelled[label] = VectorIndex(self.index.dim).build(
                np.zeros((0, self.index.dim), np.float32))
        return self.labelled[label]

    def add(self, texts: list[str], vecs: np.ndarray, labels: list[str]) -> None:
        self.ids.update(text_id(t) for t in texts)
        self.index.add(vecs)
        if self.labelled is not None:
            for i, label in enumerate(labels):
                self._label_index(label).add(vecs[i:i + 1])

    def nearest(self, vecs: np.ndarray, labels: list[str]) -> np.ndarray:
        """Each vector's cosine to its nearest reference; per label when the reference is split by label."""
        if self.labelled is None:
            return max_similarity(vecs, self.index)
        out = np.full(len(vecs), -1.0, np.float32)
        for label in set(labels):
            rows = [i for i, lab in enumerate(labels) if lab == label]
            if label in self.labelled:
                out[rows] = max_similarity(vecs[rows], self.labelled[label])
        return out


def _reject(cand: Candidate, reason: str) -> None:
    cand.verdict, cand.reason = "rejected", reason


def _against_references(pending: list[Candidate], vecs: np.ndarray, known: Reference, evaluation: Reference,
                        cfg: FilterConfig) -> None:
    """Contamination (evaluation splits), exact and near duplicates (train + accepted)."""
    eval_sim = max_similarity(vecs, evaluation.index)
    near = known.nearest(vecs, [c.label for c in pending])
    for i, cand in enumerate(pending):
        tid = text_id(cand.text)
        cand.meta["eval_cosine"] = round(float(eval_sim[i]), 4)
        cand.meta["known_cosine"] = round(float(near[i]), 4)
        if tid in evaluation.ids or eval_sim[i] >= cfg.contamination_cosine:
            _reject(cand, "contamination")
        elif tid in known.ids:
            _reject(cand, "duplicate")
        elif near[i] >= cfg.near_dup_cosine:
            _reject(cand, "near_duplicate")


def _diversity(pending: list[Candidate], vecs: np.ndarray, cfg: FilterConfig) -> None:
    """Greedy, in order: a candidate too close to an earlier survivor of the round (of its own label,
    with `similarity_scope: same_label`) is dropped."""
    same_label = cfg.similarity_scope == "same_label"
    kept_ids: set[str] = set()
    kept: list[int] = []
    for i, cand in enumerate(pending):
        if cand.verdict != "pending":
            continue
        tid = text_id(cand.text)
        if tid in kept_ids:
            _reject(cand, "duplicate")
            continue
        peers = [j for j in kept if pending[j].label == cand.label] if same_label else kept
        if peers:
            sim = float((vecs[peers] @ vecs[i]).max())
            if sim >= cfg.diversity_cosine:
                cand.meta["round_cosine"] = round(sim, 4)
                _reject(cand, "diversity")
                continue
        kept.append(i)
        kept_ids.add(tid)


def reject_unsafe(cands: list[Candidate]) -> None:
    """Pending candidates holding characters no sample may hold ('control_chars'), or nothing visible
    ('length')."""
    for cand in cands:
        if cand.verdict != "pending":
            continue
        if CONTROL.search(cand.text) or CONTROL.search(cand.label):
            _reject(cand, "control_chars")
        elif not clean_text(generated_side(cand.text)):
            _reject(cand, "length")


def screen(cands: list[Candidate], known: Reference, evaluation: Reference, cfg: FilterConfig,
           samples_left: int, agree: Optional[Callable[[list[Candidate]], None]] = None,
           check: Optional[Callable[[list[Candidate], np.ndarray], None]] = None) -> None:
    """Set verdicts on pending candidates; accepted ones are added to `known`.

    Order: characters (`reject_unsafe`) -> references (contamination, duplicate, near_duplicate) ->
    in-round diversity -> `check` (the free label check, given the candidates' vectors) -> `agree` (the
    optional blind second labelling, paid) -> the sample cap: at most `samples_left` are accepted, later
    passing ones are 'budget'.
    """
    reject_unsafe(cands)
    pending = [c for c in cands if c.verdict == "pending"]
    if not pending:
        return
    vecs = known.embedder.encode([generated_side(c.text) for c in pending])
    _against_references(pending, vecs, known, evaluation, cfg)
    _diversity(pending, vecs, cfg)
    if check is not None:
        rows = [i for i, c in enumerate(pending) if c.verdict == "pending"]
        check([pending[i] for i in rows], vecs[rows])
    if agree is not None:
        agree([c for c in pending if c.verdict == "pending"])
    for i, cand in enumerate(pending):
        if cand.verdict != "pending":
            continue
        if samples_left <= 0:
            _reject(cand, "budget")
            continue
        cand.verdict = "accepted"
        samples_left -= 1
        known.add([cand.text], vecs[i:i + 1], [cand.label])


def rejection_counts(cands: list[Candidate]) -> dict[str, int]:
    return dict(Counter(c.reason for c in cands if c.verdict == "rejected"))
