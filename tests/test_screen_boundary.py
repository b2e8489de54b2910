"""No reply can crash a round: the poison replies of the issue, each through `screen_candidates` (and,
where it was the culprit, the helper that raised), end as counted rejections; the round goes on, and a stored
poison reply replayed on resume does not crash the resumed run."""

import json

import pytest
from conftest import HashEmbedder, StableTeacher

from loop.components import build_task
from loop.errors import ConfigError
from loop.filters import Reference
from loop.plan import plan_random
from loop.records import GenResult, text_id
from loop.stages import oversize, screen_candidates
from loop.store import RunStore
from loop.tasks.classify import ClassifyTask

DEEP = '{"text": ' + "[" * 1500  # a sample whose text opens 1,500 lists
BIG = "9" * 4400  # over Python's 4,300-digit limit for int(str)
CODE_TASKS = {"defects": ("defects", {}), "clones": ("clones", {}), "faultloc": ("faultloc", {}),
              "codegen": ("seed-codegen", {"data.train_size": 8, "data.dev_size": 4, "data.test_size": 4})}


def _setup(cfg, task):
    """The task's splits loaded, one request of each kind, and the references a round screens against."""
    splits = task.load_splits()
    reqs = plan_random(splits["train"], task, cfg, 1)
    emb = HashEmbedder()
    known = Reference(emb, splits["train"] + splits["dev_mine"])
    return {r.kind: r for r in reqs}, known, Reference(emb, splits["dev_stop"] + splits["test"])


def code_task(code_config, name):
    """(task, config, setup) for one of CODE_TASKS."""
    config, overrides = CODE_TASKS[name]
    cfg = code_config(config, **overrides)
    task = build_task(cfg)
    return task, cfg, _setup(cfg, task)


def _screen(task, cfg, setup, text, kind="targeted"):
    reqs, known, evaluation = setup
    req = reqs[kind]
    res = GenResult(request_id=req.id, text=text, prompt_tokens=1, completion_tokens=1, finish_reason="stop",
                    latency_s=0.0)
    return screen_candidates([(req, res)], task, known, evaluation, cfg, samples_left=100)


def _all_rejected(cands):
    return bool(cands) and all(c.verdict == "rejected" and c.reason for c in cands)


@pytest.fixture
def classify(tiny_config):
    cfg = tiny_config()
    task = ClassifyTask(cfg)
    return task, cfg, _setup(cfg, task)


def test_deeply_nested_reply_is_a_counted_rejection(classify):
    task, cfg, setup = classify
    assert _all_rejected(task.parse(DEEP, setup[0]["targeted"]))  # the parser itself copes
    for text in (DEEP, DEEP + "]" * 1500 + ', "label": "positive"}', "[" * 1500):
        assert _all_rejected(_screen(task, cfg, setup, text))


# one sample with every task's fields, one of them an integer json cannot read
BIG_REPLY = ('{"samples": [{"text": "a perfectly ordinary sentence", "label": "positive", '
             '"intent": "correct", "code": "def f(x):\\n    return x\\n", '
             '"function": "def f(x):\\n    \\"\\"\\"x\\"\\"\\"\\n    return x\\n", '
             '"tests": ["assert f(1) == 1", "assert f(2) == 2"], "original": "return x", '
             f'"faulty": "return -x", "line": {BIG}}}]}}')


def test_huge_integer_in_a_classify_reply(classify):
    task, cfg, setup = classify
    for kind in ("targeted", "self_revise"):
        assert len(BIG_REPLY) < oversize(setup[0][kind])  # the parser sees it
        assert _all_rejected(_screen(task, cfg, setup, BIG_REPLY, kind))


@pytest.mark.parametrize("name", sorted(CODE_TASKS))
def test_huge_integer_in_a_code_task_reply(code_config, name):
    task, cfg, setup = code_task(code_config, name)
    for kind in ("targeted", "self_revise"):
        assert len(BIG_REPLY) < oversize(setup[0][kind])  # the parser sees it
        assert _all_rejected(_screen(task, cfg, setup, BIG_REPLY, kind)), (name, kind)


def test_codegen_revision_with_4000_minus_signs(code_config):
    cfg = code_config("seed-codegen", **CODE_TASKS["codegen"][1])
    task = build_task(cfg)
    setup = _setup(cfg, task)
    entry = task.problems[setup[0]["self_revise"].meta["problem"]].entry_point
    code = f"def {entry}(*args):\n    return " + "-" * 4000 + "1\n"
    cands = _screen(task, cfg, setup, json.dumps({"samples": [{"code": code}]}), "self_revise")
    assert _all_rejected(cands)
    tests = ["assert f(1) == " + "-" * 4000 + "1", "assert f(2) == 2"]
    fn = 'def f(x):\n    """x"""\n    return x\n'
    assert _all_rejected(_screen(task, cfg, setup,
                                 json.dumps({"samples": [{"function": fn, "tests": tests}]})))


def test_lone_surrogate_has_an_id_and_is_rejected_storably(classify, tmp_path):
    assert len(text_id("\ud800")) == 16 and text_id("\ud800") != text_id("\udc00")
    assert text_id("Plain text") == text_id("plain text ")  # ids of ordinary texts are unchanged
    task, cfg, setup = classify
    escaped = json.dumps({"samples": [{"text": "a fine sentence \ud800 about love", "label": "positive"}]})
    raw = json.dumps({"samples": [{"text": "another fine sentence \udfff about hate", "label": "negative"}]},
                     ensure_ascii=False)
    cands = (_screen(task, cfg, setup, escaped) + _screen(task, cfg, setup, raw)
             + _screen(task, cfg, setup, "\ud800"))
    assert _all_rejected(cands)
    assert {c.reason for c in cands[:2]} == {"control_chars"}
    store = RunStore(tmp_path / "store.sqlite")  # what the round stores next must be storable
    store.start_run("r", {})
    store.add_candidates("r", 1, cands)


def test_invisible_texts_are_empty_and_bidi_controls_are_rejected(classify):
    from loop.data import clean_text

    assert clean_text("\u200b\u200d\ufeff \u2060\u00ad") == ""
    assert clean_text("  two \u200b  words ") == "two \u200b words"  # visible text keeps its characters
    assert clean_text("family \U0001F468\u200d\U0001F469") == "family \U0001F468\u200d\U0001F469"
    task, cfg, setup = classify
    invisible = json.dumps({"samples": [{"text": "\u200b" * 40 + "\ufeff" * 10, "label": "positive"}]})
    assert [c.reason for c in _screen(task, cfg, setup, invisible)] == ["length"]
    for ch in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069":
        reply = json.dumps({"samples": [{"text": f"a clear {ch}sentence about my lovely day",
                                         "label": "positive"}]})
        assert [c.reason for c in _screen(task, cfg, setup, reply)] == ["control_chars"], hex(ord(ch))


def test_a_parser_or_checker_that_raises_rejects_only_its_reply(classify, monkeypatch):
    task, cfg, setup = classify
    reqs, known, evaluation = setup
    req = reqs["targeted"]
    good = json.dumps({"samples": [{"text": "a brand new sentence about football", "label": "neutral"}]})
    bad = json.dumps({"samples": [{"text": "boom goes the checker right here", "label": "neutral"}]})
    real_parse, real_verify = task.parse, task.verify

    def parse(text, r):
        if "explode" in text:
            raise RecursionError("maximum recursion depth exceeded")
        return real_parse(text, r)

    def verify(cands):
        if any("boom" in c.text for c in cands):
            raise ValueError("checker bug")
        real_verify(cands)

    monkeypatch.setattr(task, "parse", parse)
    monkeypatch.setattr(task, "verify", verify)
    pairs = [(req, GenResult(req.id, t, 1, 1, "stop", 0.0)) for t in (good, "explode", bad)]
    cands = screen_candidates(pairs, task, known, evaluation, cfg, samples_left=100)
    assert [(c.verdict, c.reason, c.meta.get("error")) for c in cands] == [
        ("accepted", "", None), ("rejected", "malformed", "RecursionError"),
        ("rejected", "malformed", "ValueError")]


class PoisonTeacher(StableTeacher):
    """Answers the first request it is sent in round 1 with a reply that used to crash the parser."""

    def generate(self, requests):
        out = super().generate(requests)
        if requests and requests[0].meta.get("round") == 1:
            out[0].text = DEEP
        return out


def test_a_stored_poison_reply_replayed_on_resume_does_not_crash(tiny_config, tmp_path):
    from conftest import TinyStudent

    from loop.controller import Parts, run_loop
    from loop.data import load_splits
    from loop.tracking import Tracker

    class Crash(Exception):
        """Stands in for the process dying after round 1 was screened and stored."""

    cfg = tiny_config(**{"loop.rounds": 1})

    def parts(teacher):
        store = RunStore(tmp_path / "runs" / "store.sqlite")
        if store.run_info("r") is None:
            store.start_run("r", cfg.to_dict())
        return Parts(task=ClassifyTask(cfg), student=TinyStudent(), teacher=teacher, embedder=HashEmbedder(),
                     splits=load_splits(cfg), store=store,
                     tracker=Tracker(cfg.tracking.uri, cfg.tracking.experiment))

    first = parts(PoisonTeacher())
    log_round = first.tracker.log_round

    def dies_in_round_1(rnd, metrics):
        if rnd == 1:
            raise Crash()
        log_round(rnd, metrics)

    first.tracker.log_round = dies_in_round_1
    with pytest.raises(Crash):
        run_loop(cfg, first, "r", tmp_path / "runs" / "r")
    assert DEEP in [row[0] for row in first.store.db.execute("SELECT text FROM responses")]
    first.store.close()
    again = parts(StableTeacher())  # a fresh process: round 1's replies, poison one too, come from the store
    summary = run_loop(cfg, again, "r", tmp_path / "runs" / "r", resume=True)
    assert summary["rounds_run"] == 1 and again.teacher.sent == 0
    assert again.store.run_info("r")["status"] == "done"
    rows = again.store.db.execute("SELECT text, verdict, reason FROM candidates WHERE round=1").fetchall()
    poison = [(verdict, reason) for text, verdict, reason in rows if text.startswith('{"text": [[[')]
    assert poison == [("rejected", "parse")]


def test_a_reply_holding_a_raw_lone_surrogate_is_stored(classify, tmp_path):
    """A back-end can hand over text that UTF-8 cannot hold (an OpenAI-compatible server's JSON '\\ud800');
    the round stores it, with U+FFFD in its place, before parsing it."""
    from conftest import ScriptedTeacher

    from loop.budget import Budget
    from loop.stages import generate

    task, cfg, (reqs, known, evaluation) = classify
    store = RunStore(tmp_path / "store.sqlite")
    store.start_run("r", {})
    reply = '{"samples": [{"text": "a fine sentence \ud800 about love", "label": "positive"}]}'
    gen = generate(ScriptedTeacher([reply]), [reqs["targeted"]], Budget(cfg.budget, store.spent("r")), store,
                   "r", 1)
    assert gen.pairs[0][1].text == reply.replace("\ud800", "\ufffd")
    assert store.own_response("r", reqs["targeted"].id).text == gen.pairs[0][1].text


@pytest.mark.parametrize("error", [OSError("no space left on device"), ConfigError("task.labels: wrong")])
def test_a_failure_of_the_machine_is_not_hidden_as_a_malformed_reply(classify, monkeypatch, error):
    task, cfg, (reqs, known, evaluation) = classify
    req = reqs["targeted"]

    def verify(cands):
        raise error

    monkeypatch.setattr(task, "verify", verify)
    reply = json.dumps({"samples": [{"text": "a brand new sentence about football", "label": "neutral"}]})
    with pytest.raises(type(error)):
        screen_candidates([(req, GenResult(req.id, reply, 1, 1, "stop", 0.0))], task, known, evaluation,
                          cfg, 100)
