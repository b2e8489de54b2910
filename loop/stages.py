"""The round's stages as functions the controller calls in order.

evaluate -> mine -> plan -> generate (budgeted, stored) -> screen -> (retrain, in the controller)
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field, replace

import numpy as np

from loop import progress
from loop.budget import Budget
from loop.config import Config
from loop.data import storable
from loop.errors import LoopError, TeacherError
from loop.filters import Reference, reject_unsafe, screen
from loop.mining import HardCase, HoodPlan, Neighbourhood, build_neighbourhoods, find_hard_cases
from loop.plan import Plan, plan_random, plan_targeted
from loop.records import Candidate, Example, GenRequest, GenResult, cache_key
from loop.store import RunStore
from loop.teachers.base import sample, worst_prompt

log = logging.getLogger(__name__)


class Timer:
    """Seconds per named stage."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str):
        progress.NOW.begin(stage)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start


def evaluate(student, task, splits: dict[str, list[Example]], names: tuple[str, ...]) -> tuple[dict, dict]:
    """Metrics per split (keys '<split>_<metric>') and the predictions behind them."""
    metrics, preds = {}, {}
    for name in names:
        pred = task.predict(student, splits[name])
        preds[name] = pred
        short = "stop" if name == "dev_stop" else name
        for key, value in task.metric(pred, splits[name]).items():
            metrics[f"{short}_{key}"] = value
    return metrics, preds


@dataclass
class MineResult:
    hard: list[HardCase] = field(default_factory=list)
    hoods: list[Neighbourhood] = field(default_factory=list)
    errors: int = 0
    low_confidence: int = 0
    predicted: dict[str, str] = field(default_factory=dict)  # example id -> predicted label
    probs: dict[str, np.ndarray] = field(default_factory=dict)  # example id -> class probabilities
    vectors: np.ndarray | None = None  # embeddings of the mined examples (for the 2-D map)
    status: list[str] = field(default_factory=list)  # correct | wrong | low_confidence, per mined example
    ids: list[str] = field(default_factory=list)  # the mined examples' ids, in the order of `vectors`
    evidence: dict = field(default_factory=dict)  # example id -> what the task saw (codegen: its programs)


def _status(examples: list[Example], hard: list[HardCase]) -> list[str]:
    kind = {h.example.id: "wrong" if h.wrong else "low_confidence" for h in hard}
    return [kind.get(e.id, "correct") for e in examples]


def crossval_predict(cfg: Config, gold: list[Example], extra: list[Example]) -> tuple[list[str], np.ndarray]:
    """Out-of-fold labels and probabilities of `gold`: each of `mining.folds` stratified folds is predicted
    by a fresh student trained on the other folds and `extra` (the accepted samples)."""
    from loop.components import build_student

    order = sorted(range(len(gold)), key=lambda i: (gold[i].label, gold[i].id))
    fold_of = {i: n % cfg.mining.folds for n, i in enumerate(order)}
    labels, probs = [""] * len(gold), [None] * len(gold)
    for fold in range(cfg.mining.folds):
        held = [i for i in range(len(gold)) if fold_of[i] == fold]
        student = build_student(cfg)
        student.fit([gold[i] for i in range(len(gold)) if fold_of[i] != fold] + list(extra))
        pred = student.predict([gold[i] for i in held])
        for j, i in enumerate(held):
            labels[i], probs[i] = pred.labels[j], pred.probs[j]
        del student
    return labels, np.stack(probs)


def _mined_predictions(student, task, cfg: Config, mine_split: list[Example], pool: list[Example],
                       accepted: list[Example]) -> tuple[list[Example], object]:
    """What is mined and the student's view of it: the mining split (and unlabelled pool); with crossval,
    also the gold training examples, judged by students that did not train on them."""
    if cfg.mining.source != "crossval":
        return mine_split, task.predict(student, mine_split, mining=True)
    gold = [e for e in pool if e.source == "gold"]
    labels, probs = crossval_predict(cfg, gold, accepted)
    own = task.predict(student, gold + mine_split, mining=True)  # embeddings in the current student's space
    if mine_split:
        labels, probs = labels + own.labels[len(gold):], np.concatenate([probs, own.probs[len(gold):]])
    return gold + mine_split, replace(own, labels=labels, probs=probs)


def mine(student, task, cfg: Config, mine_split: list[Example], pool: list[Example], rnd: int,
         embedder=None, accepted: list[Example] = ()) -> MineResult:
    """Hard cases on the mining split (and unlabelled pool) and their neighbourhoods in the training pool.

    Neighbourhoods live in the student's own embedding space by default (where the student
    is confused); with mining.embedder 'fixed', in the fixed sentence embedder's (cached by text).
    With mining.source crossval, the gold training examples are mined too, from out-of-fold predictions.
    """
    mine_split, pred = _mined_predictions(student, task, cfg, mine_split, pool, list(accepted))
    hard = find_hard_cases(mine_split, pred.probs, task.labels, cfg.mining)
    if cfg.mining.embedder == "fixed":
        vectors = embedder.encode([e.text for e in mine_split])
        pool_vecs = embedder.encode([e.text for e in pool])
    else:
        vectors = pred.embeddings
        pool_vecs = student.predict(pool).embeddings if hard else None
    out = MineResult(hard=hard, errors=sum(h.wrong for h in hard),
                     low_confidence=sum(not h.wrong for h in hard),
                     predicted={e.id: lab for e, lab in zip(mine_split, pred.labels)},
                     probs={e.id: row for e, row in zip(mine_split, pred.probs)}, vectors=vectors,
                     status=_status(mine_split, hard), ids=[e.id for e in mine_split],
                     evidence=dict(zip((e.id for e in mine_split), pred.evidence or ())))
    if hard:
        pos = {e.id: i for i, e in enumerate(mine_split)}
        case_vecs = vectors[[pos[h.example.id] for h in hard]]
        out.hoods = build_neighbourhoods(hard, case_vecs, pool, pool_vecs, cfg.mining,
                                         seed=cfg.generation.seed + rnd)
    return out


def followup(previous: list[Neighbourhood], planned: Plan, mined: MineResult) -> list[dict]:
    """Did targeting fix last round's neighbourhoods (`planned`: what its plan asked of them)? Their labelled
    cases' error rate then and now."""
    rows = []
    for hood in previous:
        cases = [c for c in hood.cases if c.example.label and c.example.id in mined.predicted]
        if not cases:
            continue
        now = sum(mined.predicted[c.example.id] != c.example.label for c in cases) / len(cases)
        rows.append({"neighbourhood": hood.id, "confusion": " -> ".join(hood.confusion or ()),
                     "cases": len(cases), "requests": planned.hoods.get(hood.id, HoodPlan()).requests,
                     "error_rate_then": round(sum(c.wrong for c in cases) / len(cases), 4),
                     "error_rate_now": round(now, 4)})
    return rows


def plan(strategy: str, mined: MineResult, pool: list[Example], task, cfg: Config, rnd: int,
         followed: list[dict] = ()) -> Plan:
    """The round's requests (`followed`: the follow-up of last round's neighbourhoods, for
    generation.followup_boost)."""
    if strategy == "targeted":
        return plan_targeted(mined.hoods, task, cfg, rnd, mined.evidence, list(followed))
    if strategy == "random":
        return Plan(plan_random(pool, task, cfg, rnd))
    return Plan()


@dataclass
class Generated:
    pairs: list = field(default_factory=list)  # (request, result), in request order
    skipped: int = 0  # not sent: they could have overshot a cap
    cache_hits: int = 0  # answered from the store's response cache, free
    paid_tokens: int = 0  # prompt + completion tokens of the requests actually sent
    agreement: "Generated | None" = None  # the blind-labelling pass of the same round, if any


def generate(teacher, requests: list[GenRequest], budget: Budget, store: RunStore, run_id: str,
             rnd: int, use_cache: bool = True) -> Generated:
    """Answer from the cache where possible; send the rest that fits the budget as one batch.

    Every response is committed to the store (with its spending) before anyone parses it.
    If the back-end fails part-way, what did arrive is stored and paid for, the rest of the
    reservations are released, and the TeacherError propagates.
    """
    out, todo, skipped = Generated(), [], []
    # a resumed round repeats the decisions its interrupted attempt recorded, so it sends what that sent
    sent_before, skipped_before = store.decisions(run_id, [r.id for r in requests])
    replaying = bool(sent_before or skipped_before)
    for req in requests:
        key = cache_key(teacher.name, req)
        # this run's own response (paid already), else the shared cache
        hit = store.own_response(run_id, req.id) or (store.cached(key, req.id) if use_cache else None)
        if hit is not None:
            store.add_response(run_id, rnd, hit, 0.0, cached=True)
            out.pairs.append((req, hit))
            out.cache_hits += 1
            continue
        pt = worst_prompt(teacher, req, teacher.prompt_tokens(req.messages))
        if (not replaying or req.id in sent_before) and budget.reserve(pt, req.max_tokens * req.n):
            todo.append((req, pt, key))
        else:
            skipped.append(req.id)
    out.skipped = len(skipped)
    if out.skipped:
        log.info("budget: %d of %d requests not sent (they could overshoot the cap)", out.skipped,
                 len(requests))
    store.add_requests(run_id, rnd, [r for r, _, _ in todo], [pt for _, pt, _ in todo], skipped)
    share = store.completion_share() or 1.0  # what earlier replies used of max_tokens
    results, error = _send(teacher, [r for r, _, _ in todo], share)
    by_id = {res.request_id: res for res in results}
    for req, pt, key in todo:
        res = by_id.get(req.id)
        if res is None:
            budget.release(pt, req.max_tokens * req.n)
            continue
        _storable_reply(res)
        cost = budget.settle(pt, req.max_tokens * req.n, res.prompt_tokens, res.completion_tokens)
        store.add_response(run_id, rnd, res, cost, cache_key=key, teacher=teacher.name)
        out.pairs.append((req, res))
        out.paid_tokens += res.prompt_tokens + res.completion_tokens
    progress.NOW.spent = budget.spent.tokens
    if error is not None:
        raise error
    return out


def _send(teacher, requests: list[GenRequest], share: float) -> tuple[list[GenResult], TeacherError | None]:
    """The teacher's replies to `requests` (counted on the live display, which expects `share` of their
    max_tokens back), and the error that cut them off."""
    progress.NOW.work(len(requests), "requests")
    progress.NOW.expected_tokens = int(share * sum(r.max_tokens * r.n for r in requests))
    try:
        return (sample(teacher, requests) if requests else []), None
    except TeacherError as exc:
        return exc.partial, exc


def _storable_reply(res: GenResult) -> None:
    """A back-end may decode JSON '\ud800' into text UTF-8 cannot store."""
    res.text = storable(res.text)
    if res.choices is not None:
        res.choices = [storable(c) for c in res.choices]


def generate_routed(teacher, reviser, requests: list[GenRequest], budget: Budget, store: RunStore,
                    run_id: str, rnd: int, use_cache: bool = True) -> Generated:
    """`generate`, with self-revise requests sent to `reviser` when there is one (the student revising
    itself)."""
    if reviser is None:
        return generate(teacher, requests, budget, store, run_id, rnd, use_cache)
    others = [r for r in requests if r.kind != "self_revise"]
    revisions = [r for r in requests if r.kind == "self_revise"]
    out = generate(teacher, others, budget, store, run_id, rnd, use_cache)
    own = generate(reviser, revisions, budget, store, run_id, rnd, use_cache)
    out.pairs += own.pairs
    out.skipped += own.skipped
    out.cache_hits += own.cache_hits
    out.paid_tokens += own.paid_tokens
    return out


class BlindLabeller:
    """The optional label-agreement check: the teacher labels each surviving candidate without
    seeing its proposed label; disagreements are rejected ('label_disagreement').

    Its requests go through `generate` (budgeted, stored, cached) like any other; one that
    does not fit the budget leaves its candidate unchecked, rejected as 'budget'.
    """

    def __init__(self, teacher, task, cfg: Config, budget: Budget, store: RunStore, run_id: str, rnd: int):
        self.teacher, self.task, self.cfg, self.budget = teacher, task, cfg, budget
        self.store, self.run_id, self.rnd = store, run_id, rnd
        self.gen = Generated()

    def __call__(self, cands: list[Candidate]) -> None:
        t = self.cfg.teacher
        reqs = [GenRequest(messages=self.task.messages("label", text=c.text), kind="label",
                           max_tokens=self.cfg.filters.agreement_max_tokens, temperature=0.0, top_p=1.0,
                           seed=t.seed, json_schema=self.task.label_schema(), meta={"round": self.rnd})
                for c in cands]
        self.gen = generate(self.teacher, reqs, self.budget, self.store, self.run_id, self.rnd, t.cache)
        answers = {req.id: self.task.read_label(res.text) for req, res in self.gen.pairs}
        for cand, req in zip(cands, reqs):
            if req.id not in answers:
                cand.verdict, cand.reason = "rejected", "budget"
                continue
            cand.meta["blind_label"] = answers[req.id]
            if answers[req.id] != cand.label:
                cand.verdict, cand.reason = "rejected", "label_disagreement"


def oversize(req: GenRequest) -> int:
    """Characters no honest reply to `req` exceeds (a token is rarely more than 8 characters)."""
    return 8 * req.max_tokens + 4096


ENVIRONMENT = (LoopError, OSError)  # failures of the machine, not of one reply: they stop the round


def _rejected(req: GenRequest, text: str, reason: str, **meta) -> Candidate:
    """A whole reply as one rejected candidate (its first 500 characters kept, storable)."""
    return Candidate(text=storable(text[:500]), label="", request_id=req.id, kind=req.kind,
                     verdict="rejected", reason=reason, meta={**req.meta, **meta})


def _failed(exc: Exception, what: str, req_id: str) -> str:
    """The exception's type name, logged: the record names the failure and the round goes on."""
    log.warning("%s of the reply to %s raised %s: %.200s", what, req_id, type(exc).__name__, exc)
    return type(exc).__name__


def parse_reply(task, req: GenRequest, res: GenResult) -> list[Candidate]:
    """One reply's candidates, with the characters no sample may hold rejected before anything encodes,
    embeds or runs them. Whatever parsing raises (deep nesting, huge numbers, bad Unicode, a parser bug)
    makes the reply one 'malformed' rejection naming the exception, so a resumed run that replays the
    stored reply gets the same verdict rather than the same crash."""
    return [c for text in res.texts() for c in _parse_one(task, req, text)]


def _parse_one(task, req: GenRequest, text: str) -> list[Candidate]:
    if len(text) > oversize(req):
        return [_rejected(req, text, "oversize")]
    try:
        cands = task.parse(text, req)
        for cand in cands:
            cand.meta.update(req.meta)
        reject_unsafe(cands)
        return cands
    except LoopError:  # raised on purpose (a wrong config, say): not about this reply
        raise
    except Exception as exc:  # noqa: BLE001 -- the boundary: a failure on one reply is that reply's rejection
        return [_rejected(req, text, "malformed", error=_failed(exc, "parsing", req.id))]


def _restore(cand: Candidate, saved: Candidate) -> None:
    cand.text, cand.label, cand.verdict, cand.reason = saved.text, saved.label, saved.verdict, saved.reason
    cand.meta = dict(saved.meta)


def verify_replies(task, groups: list[list[Candidate]], req_ids: list[str]) -> None:
    """`task.verify` over all replies' candidates at once (one sandbox batch). If it raises, the candidates
    are put back as they were and verified reply by reply: the pending candidates of a reply that makes
    it raise are rejected 'malformed', naming the exception, and the other replies keep their verdicts.
    Errors of the machine rather than of a reply (`LoopError`, `OSError`: no sandbox, a full disk)
    propagate."""
    flat = [c for group in groups for c in group]
    saved = [replace(c, meta=dict(c.meta)) for c in flat]
    try:
        task.verify(flat)
        return
    except ENVIRONMENT:
        raise
    except Exception as exc:  # noqa: BLE001 -- the boundary; the batch is retried reply by reply
        _failed(exc, "verifying (batch)", "the round")
    before = iter(saved)
    for group, req_id in zip(groups, req_ids):
        mine = [next(before) for _ in group]
        for cand, old in zip(group, mine):
            _restore(cand, old)
        try:
            task.verify(group)
        except ENVIRONMENT:
            raise
        except Exception as exc:  # noqa: BLE001 -- the boundary: only this reply is rejected
            error = _failed(exc, "verifying", req_id)
            for cand, old in zip(group, mine):
                _restore(cand, old)
                if cand.verdict == "pending":
                    cand.verdict, cand.reason, cand.meta["error"] = "rejected", "malformed", error


def screen_candidates(pairs: list[tuple[GenRequest, GenResult]], task, known: Reference,
                      evaluation: Reference, cfg: Config, samples_left: int,
                      agree: BlindLabeller | None = None, check=None) -> list[Candidate]:
    """Parse every response and run every check; each candidate ends accepted or rejected with a reason.

    No reply can crash the round: parsing and checking are screened reply by reply (`parse_reply`,
    `verify_replies`), and every text that leaves here can be stored.
    """
    groups = [parse_reply(task, req, res) for req, res in pairs]
    verify_replies(task, groups, [req.id for req, _ in pairs])
    cands = [c for group in groups for c in group]
    screen(cands, known, evaluation, cfg.filters, samples_left, agree, check)
    for cand in cands:  # rejected texts are stored and shown as they came, less what UTF-8 cannot hold
        cand.text, cand.label = storable(cand.text), storable(cand.label)
    return cands


def embed_new(student, embedder, cfg: Config, new: list[Example]) -> np.ndarray | None:
    """Newly accepted samples in the mining embedding space (for the round's 2-D map)."""
    if not new:
        return None
    if cfg.mining.embedder == "fixed":
        return embedder.encode([e.text for e in new])
    return student.predict(new).embeddings
