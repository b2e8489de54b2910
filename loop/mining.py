"""Mining: hard cases, their FAISS neighbourhoods in the training pool, clusters ranked by error mass.

A hard case is a mining-split example the student got wrong (weight 1), or one it got
right (or an unlabelled pool example) with high uncertainty under the configured score
(least confidence, margin or entropy; by threshold or top-k), weight
`low_confidence_weight`. Hard cases are clustered (FAISS k-means on the embeddings); each
cluster with the training examples nearest to its members is a neighbourhood, ranked by
error mass.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from loop.config import MiningConfig
from loop.index import VectorIndex
from loop.records import Example


@dataclass
class HardCase:
    example: Example
    predicted: str
    confused_with: str  # the predicted label if wrong, else the runner-up
    margin: float
    uncertainty: float
    wrong: bool
    weight: float
    gold_prob: float


@dataclass
class Neighbourhood:
    id: int
    cases: list[HardCase]
    neighbours: list[tuple[Example, float]]  # nearest training examples, most similar first
    error_mass: float
    label_disagreement: float
    density: float
    confusion: tuple[str, str] | None
    ranked: list[Example] = field(default_factory=list)  # labelled exemplar candidates, MMR order

    def row(self, planned: HoodPlan | None = None) -> dict:
        """One line of the error-analysis table, with what the round's plan asked of it."""
        planned = planned or HoodPlan()
        return {"neighbourhood": self.id, "hard_cases": len(self.cases),
                "errors": sum(c.wrong for c in self.cases),
                "low_confidence": sum(not c.wrong for c in self.cases),
                "error_mass": round(self.error_mass, 3),
                "confusion": f"{self.confusion[0]} -> {self.confusion[1]}" if self.confusion else "",
                "label_disagreement": round(self.label_disagreement, 3), "density": round(self.density, 3),
                "neighbours": len(self.neighbours), "requests": planned.requests,
                "followup_weight": planned.weight, "prompt": planned.kind,
                "exemplars": " | ".join(f"[{e.label}] {e.text}" for e in planned.exemplars),
                "contrasts": " | ".join(f"[{e.label}] {e.text}" for e in planned.contrasts)}


@dataclass
class HoodPlan:
    """What a round's plan asks of one neighbourhood: its prompt count and the examples its first prompt
    shows (later prompts rotate through the ranked exemplars)."""

    requests: int = 0
    exemplars: list[Example] = field(default_factory=list)
    contrasts: list[Example] = field(default_factory=list)
    weight: float = 1.0  # factor on its error mass in the allocation (generation.followup_boost)
    kind: str = "targeted"  # the template its prompts use: targeted, or pairs (generation.minimal_pairs)


def margins(probs: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 probability per row."""
    top2 = np.sort(probs, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def uncertainty(probs: np.ndarray, score: str) -> np.ndarray:
    """Per row, in [0, 1], higher is less sure: least_confidence, margin or (normalised) entropy."""
    if score == "least_confidence":
        return 1.0 - probs.max(axis=1)
    if score == "margin":
        return 1.0 - margins(probs)
    if score == "entropy":
        p = np.clip(probs, 1e-12, 1.0)
        return -(p * np.log(p)).sum(axis=1) / math.log(probs.shape[1])
    raise ValueError(f"unknown uncertainty score '{score}' (valid: least_confidence, margin, entropy)")


def _low_confidence(unsure: np.ndarray, candidates: np.ndarray, cfg: MiningConfig) -> set[int]:
    """Indices among `candidates` that count as low-confidence: top-k or above the threshold."""
    if cfg.top_k is not None:
        order = candidates[np.argsort(-unsure[candidates], kind="stable")]
        return set(order[: cfg.top_k].tolist())
    return set(candidates[unsure[candidates] >= cfg.threshold].tolist())


def find_hard_cases(examples: list[Example], probs: np.ndarray, labels: list[str],
                    cfg: MiningConfig) -> list[HardCase]:
    """Misclassified plus low-confidence examples (unlabelled ones: low-confidence only)."""
    marg = margins(probs)
    unsure = uncertainty(probs, cfg.score)
    order = np.argsort(-probs, axis=1)
    wrong = np.array([bool(ex.label) and labels[order[i, 0]] != ex.label for i, ex in enumerate(examples)])
    low = _low_confidence(unsure, np.flatnonzero(~wrong), cfg)
    cases = []
    for i, ex in enumerate(examples):
        if not wrong[i] and i not in low:
            continue
        pred = labels[order[i, 0]]
        runner_up = pred if wrong[i] else labels[order[i, 1]]
        cases.append(HardCase(example=ex, predicted=pred, confused_with=runner_up,
                              margin=float(marg[i]), uncertainty=float(unsure[i]), wrong=bool(wrong[i]),
                              weight=1.0 if wrong[i] else cfg.low_confidence_weight,
                              gold_prob=(float(probs[i, labels.index(ex.label)]) if ex.label
                                         else float("nan"))))
    return cases


def cluster(vectors: np.ndarray, max_clusters: int, seed: int = 0) -> np.ndarray:
    """FAISS spherical k-means; k grows with the number of points (sqrt(n/2)), capped."""
    import faiss

    n = len(vectors)
    k = max(1, min(max_clusters, int(round(math.sqrt(n / 2)))))
    if k == 1:
        return np.zeros(n, np.int64)
    km = faiss.Kmeans(vectors.shape[1], k, niter=20, seed=seed, spherical=True, verbose=False,
                      min_points_per_centroid=1)
    km.train(vectors)
    _, assign = km.index.search(vectors, 1)
    return assign[:, 0]


def mmr(vectors: np.ndarray, query: np.ndarray, k: int, lam: float = 0.7) -> list[int]:
    """Maximal marginal relevance: each pick close to the query and far from earlier picks."""
    n = len(vectors)
    rel = vectors @ query
    redundancy = np.zeros(n, np.float32)
    chosen = np.zeros(n, bool)
    order: list[int] = []
    for _ in range(min(k, n)):
        score = lam * rel - (1 - lam) * redundancy
        score[chosen] = -np.inf
        i = int(np.argmax(score))
        order.append(i)
        chosen[i] = True
        redundancy = np.maximum(redundancy, vectors @ vectors[i])
    return order


def _neighbourhood(members: np.ndarray, cases: list[HardCase], case_vecs: np.ndarray, pool: list[Example],
                   pool_vecs: np.ndarray, sims: np.ndarray, ids: np.ndarray) -> Neighbourhood:
    """Scores of one cluster of hard cases, and its exemplars ranked for diversity (MMR)."""
    best: dict[int, float] = {}
    disagree = []
    for m in members:
        gold = cases[m].example.label or cases[m].predicted  # unlabelled: the student's guess
        disagree.append(np.mean([pool[j].label != gold for j in ids[m]]) if ids.shape[1] else 0.0)
        for j, s in zip(ids[m], sims[m]):
            best[int(j)] = max(best.get(int(j), -1.0), float(s))
    group = [cases[m] for m in members]
    confusions = Counter((h.example.label, h.confused_with) for h in group if h.wrong) or \
        Counter((h.example.label or h.predicted, h.confused_with) for h in group)
    confusion = confusions.most_common(1)[0][0]
    # exemplar candidates: labelled hard cases, then their training neighbours; relevance is
    # closeness to the cases of the dominant confusion
    labelled = [m for m in members if cases[m].example.label]
    near = sorted(best, key=lambda j: -best[j])
    cand = [cases[m].example for m in labelled] + [pool[j] for j in near]
    vecs = (np.concatenate([case_vecs[labelled], pool_vecs[near]]) if cand
            else np.zeros((0, case_vecs.shape[1])))
    focus = [m for m in members
             if (cases[m].example.label or cases[m].predicted, cases[m].confused_with) == confusion]
    query = case_vecs[focus].mean(0)
    query = (query / max(float(np.linalg.norm(query)), 1e-12)).astype(np.float32)
    return Neighbourhood(
        id=0, cases=sorted(group, key=lambda h: (-h.weight, h.gold_prob)),
        neighbours=[(pool[j], best[j]) for j in near],
        error_mass=float(sum(h.weight for h in group)), label_disagreement=float(np.mean(disagree)),
        density=float(sims[members].mean()) if sims.shape[1] else 0.0, confusion=confusion,
        ranked=[cand[i] for i in mmr(vecs.astype(np.float32), query, len(cand))])


def build_neighbourhoods(cases: list[HardCase], case_vecs: np.ndarray, pool: list[Example],
                         pool_vecs: np.ndarray, cfg: MiningConfig, seed: int = 0) -> list[Neighbourhood]:
    """Group hard cases into neighbourhoods with their nearest pool examples, heaviest first."""
    if not cases:
        return []
    index = VectorIndex(pool_vecs.shape[1], kind=cfg.index, queries=len(case_vecs)).build(pool_vecs)
    sims, ids = index.search(case_vecs, cfg.k_neighbours)
    assign = cluster(case_vecs, cfg.max_clusters, seed)
    hoods = [_neighbourhood(np.flatnonzero(assign == c), cases, case_vecs, pool, pool_vecs, sims, ids)
             for c in np.unique(assign)]
    hoods.sort(key=lambda h: -h.error_mass)
    for i, h in enumerate(hoods):
        h.id = i
    return hoods


def allocate(masses: list[float], total: int, floor: int, cap: int) -> list[int]:
    """Split `total` units across items in proportion to mass, each item within [floor, cap].

    Items are ranked by mass; when the floor cannot be met for all, the lightest get 0.
    The result sums to min(total, cap * number of items that got the floor).
    """
    n = len(masses)
    if n == 0 or total <= 0:
        return [0] * n
    order = sorted(range(n), key=lambda i: -masses[i])
    active = order[: max(1, min(n, total // floor))] if floor else order
    out = [0] * n
    for i in active:
        out[i] = min(floor, cap, total)
    left = min(total, cap * len(active)) - sum(out)
    while left > 0:
        open_ = [i for i in active if out[i] < cap]
        weight = sum(masses[i] for i in open_)
        share = {i: (masses[i] / weight if weight > 0 else 1 / len(open_)) * left for i in open_}
        give = {i: min(cap - out[i], int(share[i])) for i in open_}
        if not any(give.values()):  # shares below one unit: one each, largest share first
            give = {i: 1 for i in sorted(open_, key=lambda i: -share[i])[:left]}
        for i, g in give.items():
            out[i] += g
        left -= sum(give.values())
    return out
