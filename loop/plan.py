"""Planning: turn ranked neighbourhoods (or random picks) into the round's generation requests.

`targeted` spends the round's targeted prompts across neighbourhoods in proportion to
their error mass and asks the teacher to revise the student's worst mistakes. `random`
builds the same number of prompts of the same kinds from randomly chosen training
examples. `none` asks for nothing. The strategies differ only in which examples are
chosen; templates, sizes and sampling settings are shared.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from loop.config import Config
from loop.mining import HardCase, HoodPlan, Neighbourhood, allocate
from loop.records import Example, GenRequest


@dataclass
class Plan:
    """A round's requests, and per neighbourhood id what they ask of it (targeted only)."""

    requests: list[GenRequest] = field(default_factory=list)
    hoods: dict[int, HoodPlan] = field(default_factory=dict)


def _request(task, cfg: Config, kind: str, seed: int, meta: dict, **variables) -> GenRequest:
    n = cfg.generation.samples_per_request
    t = cfg.teacher
    extra, extra_meta = task.request_vars(kind, variables)  # e.g. the problem a code request is about
    return GenRequest(messages=task.messages(kind, n=n, **variables, **extra), max_tokens=t.max_tokens,
                      temperature=t.temperature, top_p=t.top_p, seed=seed, kind=kind,
                      json_schema=task.json_schema(n, kind), meta={**meta, **extra_meta},
                      n=cfg.generation.completions)


def _window(items: list, start: int, size: int) -> list:
    """`size` items from a rotating start, so successive prompts show different exemplars."""
    if not items:
        return []
    return [items[(start + i) % len(items)] for i in range(min(size, len(items)))]


def _pick_contrasts(hood: Neighbourhood, n: int) -> list[Example]:
    """Nearest training examples carrying the label the student confuses the cases with."""
    other = hood.confusion[1] if hood.confusion else None
    gold = hood.confusion[0] if hood.confusion else hood.cases[0].example.label
    near = [e for e, _ in hood.neighbours
            if (e.label == other if other and other != gold else e.label != gold)]
    return near[:n]


def followup_weights(hoods: list[Neighbourhood], followed: list[dict], boost: float) -> list[float]:
    """Per neighbourhood, the factor on its error mass: `boost` where last round prompted its confusion and
    the error rate did not fall, 1 / `boost` where it fell to half or less, else 1."""
    verdict: dict[str, float] = {}
    for row in followed:
        if not row["requests"] or not row["confusion"]:
            continue
        then, now = row["error_rate_then"], row["error_rate_now"]
        if now >= then:
            verdict[row["confusion"]] = max(verdict.get(row["confusion"], 0.0), boost)
        elif now <= then / 2:
            verdict.setdefault(row["confusion"], 1 / boost)
    return [verdict.get(" -> ".join(h.confusion), 1.0) if h.confusion else 1.0 for h in hoods]


def plan_targeted(hoods: list[Neighbourhood], task, cfg: Config, rnd: int,
                  evidence: dict | None = None, followed: list[dict] = ()) -> Plan:
    """Targeted prompts over `hoods` by error mass (weighted by last round's follow-up), then self-revisions
    of their worst cases (`evidence`: example id -> what the task saw deciding it, shown to the reviser
    where the task uses it)."""
    g = cfg.generation
    weights = followup_weights(hoods, list(followed), g.followup_boost)
    allocs = allocate([h.error_mass * w for h, w in zip(hoods, weights)], g.targeted_requests,
                      g.cluster_floor, g.cluster_cap)
    out, seed = Plan(), cfg.teacher.seed + rnd * 10007
    reqs = out.requests
    for hood, count, weight in zip(hoods, allocs, weights):
        pool = hood.ranked
        kind = "pairs" if g.minimal_pairs and hood.confusion else "targeted"
        planned = HoodPlan(count, _window(pool, 0, g.exemplars), _pick_contrasts(hood, g.contrasts), weight,
                           kind)
        out.hoods[hood.id] = planned
        for j in range(count):
            exemplars = _window(pool, j * g.exemplars, g.exemplars)
            meta = {"round": rnd, "neighbourhood": hood.id, "strategy": "targeted"}
            reqs.append(_request(task, cfg, kind, seed + len(reqs), meta, exemplars=exemplars,
                                 contrasts=planned.contrasts, confusion=hood.confusion))
    # self-revision: the most confidently wrong cases (then the least sure right ones),
    # taken round-robin across neighbourhoods
    queues = [[c for c in h.cases if c.example.label] for h in hoods]
    picked: list[tuple[int, HardCase]] = []
    while len(picked) < g.revise_requests and any(queues):
        for hood, queue in zip(hoods, queues):
            if queue and len(picked) < g.revise_requests:
                picked.append((hood.id, queue.pop(0)))
    for hood_id, case in picked:
        meta = {"round": rnd, "neighbourhood": hood_id, "strategy": "targeted", "source": case.example.id}
        reqs.append(_request(task, cfg, "self_revise", seed + len(reqs), meta, example=case.example,
                             predicted=case.predicted if case.wrong else None,
                             evidence=(evidence or {}).get(case.example.id)))
    return out


def plan_random(pool: list[Example], task, cfg: Config, rnd: int) -> list[GenRequest]:
    """As many prompts of each kind as `targeted` would send, from random training examples."""
    g = cfg.generation
    rng = random.Random(g.seed * 1_000_003 + rnd)
    reqs, seed = [], cfg.teacher.seed + rnd * 10007
    for _ in range(g.targeted_requests):
        exemplars = rng.sample(pool, min(g.exemplars, len(pool)))
        labels = {e.label for e in exemplars}
        others = [e for e in pool if e.label not in labels] or pool
        contrasts = rng.sample(others, min(g.contrasts, len(others)))
        meta = {"round": rnd, "neighbourhood": -1, "strategy": "random"}
        reqs.append(_request(task, cfg, "targeted", seed + len(reqs), meta, exemplars=exemplars,
                             contrasts=contrasts, confusion=None))
    for ex in rng.sample(pool, min(g.revise_requests, len(pool))):
        meta = {"round": rnd, "neighbourhood": -1, "strategy": "random", "source": ex.id}
        reqs.append(_request(task, cfg, "self_revise", seed + len(reqs), meta, example=ex, predicted=None))
    return reqs
