"""The teacher contract, passed by every back-end; fault handling of the openai back-end."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from fake_openai import FakeOpenAI

from loop.config import section
from loop.errors import TeacherError
from loop.records import GenRequest, GenResult, finish_of
from loop.teachers.base import PromptCounter, sample, takes_n
from loop.teachers.openai import OpenAITeacher
from loop.teachers.replay import Recorder, ReplayTeacher

SCHEMA = {"type": "object", "properties": {"samples": {"type": "array", "items": {
    "type": "object", "properties": {"text": {"type": "string"},
                                     "label": {"type": "string",
                                               "enum": ["negative", "neutral", "positive"]}},
    "required": ["text", "label"]}, "minItems": 1, "maxItems": 2}}, "required": ["samples"]}


def requests(n=3, max_tokens=48):
    return [GenRequest(messages=[{"role": "system", "content": "Answer with JSON only."},
                                 {"role": "user",
                                  "content": f"Write 2 short tweets about topic {i}, with labels."}],
                       max_tokens=max_tokens, temperature=0.7, top_p=0.95, seed=i, json_schema=SCHEMA)
            for i in range(n)]


class TeacherContract:
    """Subclasses provide a `teacher` fixture; every back-end must pass these."""

    def test_one_result_per_request_in_order(self, teacher):
        reqs = requests()
        results = teacher.generate(reqs)
        assert [r.request_id for r in results] == [r.id for r in reqs]
        assert all(isinstance(r, GenResult) and isinstance(r.text, str) for r in results)

    def test_token_accounting(self, teacher):
        reqs = requests(2)
        for req, res in zip(reqs, teacher.generate(reqs)):
            assert 0 < res.completion_tokens <= req.max_tokens
            # the reservation counted before the call is never below what the server reports
            assert res.prompt_tokens <= teacher.prompt_tokens(req.messages)
            assert res.prompt_tokens > 0

    def test_empty_batch(self, teacher):
        assert teacher.generate([]) == []

    def test_several_completions_of_one_prompt(self, teacher):
        """n completions come back as one result; a back-end with n pays the prompt once."""
        [one] = sample(teacher, requests(1))
        [res] = sample(teacher, [twice()])
        assert res.request_id == twice().id and len(res.texts()) == 2 and res.text == res.texts()[0]
        assert res.prompt_tokens == one.prompt_tokens * (1 if takes_n(teacher) else 2)
        assert 0 < res.completion_tokens <= 2 * twice().max_tokens

    def test_a_reply_cut_off_at_max_tokens_says_so(self, teacher):
        [res] = sample(teacher, [cut()])
        assert res.truncated and res.finish_reason == "length"
        assert 0 < res.completion_tokens <= 2 * cut().max_tokens


def test_one_cut_completion_marks_the_whole_reply_cut():
    assert finish_of(["stop", "length"]) == finish_of(["length"]) == "length"
    assert finish_of(["stop", "stop"]) == "stop" and finish_of([]) == "stop"


def twice() -> GenRequest:
    return replace(requests(1)[0], n=2, id="")


def cut() -> GenRequest:
    """Two completions allowed 4 tokens each: both are cut off."""
    return replace(twice(), max_tokens=4, id="")


class TestReplayContract(TeacherContract):
    @pytest.fixture
    def teacher(self, tmp_path):
        with FakeOpenAI() as server:
            live = OpenAITeacher(section("teacher", backend="openai", model="m", base_urls=[server.url]))
            rec = Recorder(live, tmp_path / "c.jsonl")
            rec.generate(requests())
            sample(rec, [twice()])
            sample(rec, [cut()])
        return ReplayTeacher(section("teacher", backend="replay", cassette=str(tmp_path / "c.jsonl")))


class TestOpenAIContract(TeacherContract):
    @pytest.fixture
    def teacher(self):
        with FakeOpenAI() as server:
            yield OpenAITeacher(section("teacher", backend="openai", model="m", base_urls=[server.url]))


def test_replay_reproduces_recording_exactly(tmp_path):
    with FakeOpenAI() as server:
        live = Recorder(OpenAITeacher(section("teacher", backend="openai", model="m",
                                              base_urls=[server.url])),
                        tmp_path / "c.jsonl")
        first = live.generate(requests())
    replayed = ReplayTeacher(section("teacher", backend="replay",
                                     cassette=str(tmp_path / "c.jsonl"))).generate(requests())
    assert [(r.text, r.prompt_tokens, r.completion_tokens) for r in replayed] == \
        [(r.text, r.prompt_tokens, r.completion_tokens) for r in first]
    with pytest.raises(TeacherError, match="no recorded response for 1 of 1"):
        ReplayTeacher(section("teacher", backend="replay", cassette=str(tmp_path / "c.jsonl"))).generate(
            requests(4)[3:])


def test_bad_cassette_line(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text('{"id": "a", "messages": [], "response": {}}\nnot json\n')
    with pytest.raises(TeacherError, match=r"c\.jsonl:2: not a cassette entry"):
        ReplayTeacher(section("teacher", backend="replay", cassette=str(p)))


def test_openai_sends_schema_seed_key_and_balances(monkeypatch):
    monkeypatch.setenv("LOOP_TEST_KEY", "sk-sentinel-123")
    with FakeOpenAI() as a, FakeOpenAI() as b:
        t = OpenAITeacher(section("teacher", backend="openai", model="served", base_urls=[a.url, b.url],
                                        api_key_env="LOOP_TEST_KEY", concurrency=2))
        t.generate(requests(4))
    assert len(a.bodies) == 2 and len(b.bodies) == 2
    body = a.bodies[0]
    assert body["model"] == "served" and body["response_format"]["type"] == "json_schema"
    assert {bd["seed"] for bd in a.bodies + b.bodies} == {0, 1, 2, 3}
    assert a.headers[0]["Authorization"] == "Bearer sk-sentinel-123"


def test_repetition_penalty_reaches_the_server_only_when_set():
    with FakeOpenAI() as a:
        plain = section("teacher", backend="openai", model="m", base_urls=[a.url])
        OpenAITeacher(plain).generate(requests(1))
        OpenAITeacher(section("teacher", backend="openai", model="m", base_urls=[a.url],
                              repetition_penalty=1.15)).generate(requests(1))
    assert "repetition_penalty" not in a.bodies[0] and a.bodies[1]["repetition_penalty"] == 1.15


def test_repetition_penalty_reaches_vllm_sampling():
    pytest.importorskip("vllm")
    from loop.teachers.vllm import VLLMTeacher

    req = requests(1)[0]
    assert VLLMTeacher(section("teacher"))._params(req).repetition_penalty == 1.0
    assert VLLMTeacher(section("teacher", repetition_penalty=1.2))._params(req).repetition_penalty == 1.2


def test_openai_missing_key_env_is_clear(monkeypatch):
    monkeypatch.delenv("NOPE_KEY", raising=False)
    with FakeOpenAI() as s:
        t = OpenAITeacher(section("teacher", backend="openai", model="m", base_urls=[s.url],
                                  api_key_env="NOPE_KEY"))
        with pytest.raises(TeacherError, match="NOPE_KEY is not set"):
            t.generate(requests(1))


def test_openai_retries_faults_then_succeeds():
    faults = ["429", "500", "drop", "truncate", "503"]
    with FakeOpenAI(faults) as s:
        t = OpenAITeacher(section("teacher", backend="openai", model="m", base_urls=[s.url], max_retries=5,
                                        backoff_s=0.01, concurrency=1))
        [res] = t.generate(requests(1))
        assert json.loads(res.text)["samples"] and len(s.bodies) == 6


def test_openai_timeout_is_retried():
    with FakeOpenAI(["slow:1.0"]) as s:
        t = OpenAITeacher(section("teacher", backend="openai", model="m", base_urls=[s.url], timeout_s=0.3,
                                        backoff_s=0.01, concurrency=1))
        [res] = t.generate(requests(1))
        assert res.text and len(s.bodies) == 2


def test_openai_gives_up_with_partial_results():
    with FakeOpenAI(["500"] * 3) as s:
        # one request fails 3 times (max_retries=2); the other answers
        t = OpenAITeacher(section("teacher", backend="openai", model="m", base_urls=[s.url], max_retries=2,
                                        backoff_s=0.01, concurrency=1))
        with pytest.raises(TeacherError, match="1 of 2 requests failed.*after 3 attempts: http.*HTTP 500") \
                as info:
            t.generate(requests(2))
    assert len(info.value.partial) == 1


def test_byte_bound_never_undercounts():
    from transformers import AutoTokenizer

    from loop.assets import resolve_model
    tok = AutoTokenizer.from_pretrained(resolve_model("packaged:all-minilm-l6-v2"))
    msgs = [{"role": "user", "content": "héllo wörld 🙂 " * 20}]
    assert PromptCounter().count(msgs) >= len(tok.encode(msgs[0]["content"]))
