"""Several completions of one prompt (`generation.completions`, the API's `n`): the prompt is paid once where
the back-end samples n times, each completion is parsed and screened, the budget reserves the worst case and
settles to what was reported, and the store gives back every completion on resume."""

from __future__ import annotations

import json

from fake_openai import FakeOpenAI

from loop.budget import Budget
from loop.config import load_config, section
from loop.records import GenRequest, GenResult
from loop.stages import generate, parse_reply
from loop.store import RunStore
from loop.tasks.classify import ClassifyTask
from loop.teachers.base import sample
from loop.teachers.openai import OpenAITeacher


def request(n: int, seed: int = 0) -> GenRequest:
    return GenRequest(messages=[{"role": "user", "content": "write two tweets please"}], max_tokens=40,
                      temperature=0.8, top_p=1.0, seed=seed, n=n)


def reply(text: str) -> str:
    return json.dumps({"samples": [{"text": text, "label": "neutral"}]})


class OneAtATime:
    """A back-end without n: each call answers single completions, 5 prompt + 7 completion tokens each."""

    name = "single"

    def __init__(self):
        self.calls: list[GenRequest] = []

    def prompt_tokens(self, messages):
        return 5

    def generate(self, requests):
        self.calls += requests
        return [GenResult(r.id, reply(f"tweet with seed {r.seed}"), 5, 7, "stop", 0.0) for r in requests]


class WithN(OneAtATime):
    """A back-end with n: one call, the prompt paid once, n completions."""

    samples_n = True

    def generate(self, requests):
        self.calls += requests
        return [GenResult(r.id, "a", 5, 7 * r.n, "stop", 0.0,
                          choices=[reply(f"tweet {k} of {r.seed}") for k in range(r.n)] if r.n > 1 else None)
                for r in requests]


def test_the_request_identity_of_a_single_completion_is_unchanged():
    """Stores and caches written before completions existed keep matching their requests."""
    assert request(1).id != request(3).id
    assert request(1).id == GenRequest(messages=request(1).messages, max_tokens=40, temperature=0.8,
                                       top_p=1.0, seed=0).id


def test_a_back_end_without_n_gets_n_seeded_copies_merged_into_one_result():
    teacher = OneAtATime()
    [res] = sample(teacher, [request(3, seed=10)])
    assert sorted(r.seed for r in teacher.calls) == [10, 11, 12] and all(r.n == 1 for r in teacher.calls)
    assert res.request_id == request(3, seed=10).id and len(res.texts()) == 3
    assert (res.prompt_tokens, res.completion_tokens) == (15, 21)  # every copy paid its prompt


def test_generate_reserves_the_worst_case_pays_the_prompt_once_and_stores_every_completion(tmp_path):
    store = RunStore(tmp_path / "store.sqlite")
    store.start_run("r", {})
    cfg = load_config(None, {"budget.tokens": 5 + 3 * 40})
    budget = Budget(cfg.budget)
    teacher = WithN()
    out = generate(teacher, [request(3)], budget, store, "r", 1, use_cache=False)
    assert out.skipped == 0 and len(teacher.calls) == 1 and teacher.calls[0].n == 3
    assert budget.spent.tokens == 5 + 21 == out.paid_tokens and budget.reserved.tokens == 0
    # one token less and the worst case (5 + 3 x 40) no longer fits
    tight = Budget(load_config(None, {"budget.tokens": 5 + 3 * 40 - 1}).budget)
    assert generate(WithN(), [request(3, seed=1)], tight, store, "r", 1, use_cache=False).skipped == 1
    again = store.own_response("r", request(3).id)
    assert again.choices == out.pairs[0][1].choices and len(again.texts()) == 3
    task = ClassifyTask(load_config(None))
    cands = parse_reply(task, *out.pairs[0])
    assert [c.text for c in cands] == ["tweet 0 of 0", "tweet 1 of 0", "tweet 2 of 0"]


def test_without_n_the_budget_reserves_every_copy_of_the_prompt(tmp_path):
    store = RunStore(tmp_path / "store.sqlite")
    store.start_run("r", {})
    fits = Budget(load_config(None, {"budget.tokens": 3 * (5 + 40)}).budget)
    assert generate(OneAtATime(), [request(3)], fits, store, "r", 1, use_cache=False).skipped == 0
    short = Budget(load_config(None, {"budget.tokens": 3 * (5 + 40) - 1}).budget)
    assert generate(OneAtATime(), [request(3, seed=5)], short, store, "r", 1, use_cache=False).skipped == 1


def test_the_openai_back_end_asks_for_n_and_reads_every_choice():
    with FakeOpenAI() as server:
        teacher = OpenAITeacher(section("teacher", backend="openai", base_urls=[server.url], model="m"))
        [res] = teacher.generate([request(3)])
        [single] = teacher.generate([request(1)])
    assert server.bodies[0]["n"] == 3 and "n" not in server.bodies[1]
    assert len(res.texts()) == 3 and len(set(res.texts())) == 3 and res.completion_tokens == 36
    assert res.prompt_tokens == single.prompt_tokens and single.choices is None
