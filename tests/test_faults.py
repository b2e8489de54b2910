"""A misbehaving OpenAI-compatible server on 127.0.0.1: runs finish or stop cleanly and resume;
the API key never reaches logs, MLflow or the store."""

import logging

import pytest
from conftest import HashEmbedder, TinyStudent
from fake_openai import FakeOpenAI

from loop.config import section
from loop.controller import Parts, run_loop
from loop.data import load_splits
from loop.errors import TeacherDown, TeacherError
from loop.store import RunStore
from loop.tasks.classify import ClassifyTask
from loop.teachers.openai import OpenAITeacher
from loop.tracking import Tracker

SENTINEL = "sk-sentinel-7f3a9c1e55"


def _parts(cfg, tmp_path, url, **teacher):
    store = RunStore(tmp_path / "runs" / "store.sqlite")
    store.start_run("f", cfg.to_dict())
    t = OpenAITeacher(section("teacher", backend="openai", model="served", base_urls=[url],
                              api_key_env="LOOP_KEY", backoff_s=0.01, concurrency=2, **teacher))
    return Parts(task=ClassifyTask(cfg), student=TinyStudent(), teacher=t, embedder=HashEmbedder(),
                 splits=load_splits(cfg), store=store,
                 tracker=Tracker(cfg.tracking.uri, cfg.tracking.experiment))


def test_faults_are_retried_and_the_key_never_leaks(tiny_config, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("LOOP_KEY", SENTINEL)
    cfg = tiny_config(**{"loop.rounds": 2})
    caplog.set_level(logging.DEBUG)
    with FakeOpenAI(["429", "500", "drop", "truncate", "503", "slow:0.2"] * 2) as server:
        parts = _parts(cfg, tmp_path, server.url, max_retries=12)
        summary = run_loop(cfg, parts, "f", tmp_path / "runs" / "f")
        assert all(h["Authorization"] == f"Bearer {SENTINEL}" for h in server.headers)  # it was used
    parts.store.close()
    assert summary["rounds_run"] == 2 and summary["accepted_total"] > 0
    leaks = [str(p) for p in tmp_path.rglob("*") if p.is_file() and SENTINEL.encode() in p.read_bytes()]
    assert not leaks, leaks  # store, MLflow database and artifacts
    assert SENTINEL not in caplog.text


def test_a_dead_server_stops_the_run_cleanly_and_it_resumes(tiny_config, tmp_path, monkeypatch):
    monkeypatch.setenv("LOOP_KEY", SENTINEL)
    cfg = tiny_config(**{"loop.rounds": 2})
    with FakeOpenAI([None] * 16 + ["500"] * 400) as server:  # round 1 answers, then the server dies
        parts = _parts(cfg, tmp_path, server.url, max_retries=2)
        with pytest.raises(TeacherError, match="HTTP 500") as info:
            run_loop(cfg, parts, "f", tmp_path / "runs" / "f")
        assert SENTINEL not in str(info.value)
    rounds_done = [r["round"] for r in parts.store.round_rows("f")]
    paid = parts.store.spent("f").tokens
    parts.store.close()
    assert rounds_done == [0, 1] and paid > 0
    with FakeOpenAI() as healthy:
        resumed = _parts(cfg, tmp_path, healthy.url)
        summary = run_loop(cfg, resumed, "f", tmp_path / "runs" / "f", resume=True)
        assert len(healthy.bodies) <= 16  # round 2 only
    assert summary["rounds_run"] == 2 and resumed.store.spent("f").tokens > paid


def test_after_n_consecutive_failures_the_teacher_is_marked_down(tiny_config, tmp_path, monkeypatch):
    monkeypatch.setenv("LOOP_KEY", SENTINEL)
    cfg = tiny_config(**{"loop.rounds": 2})
    with FakeOpenAI([None] * 16 + ["503"] * 1000) as server:  # round 1 answers, then every attempt fails
        parts = _parts(cfg, tmp_path, server.url, max_retries=50, down_after=6)
        with pytest.raises(TeacherDown, match="the teacher is down: 6 consecutive failed attempts") as info:
            run_loop(cfg, parts, "f", tmp_path / "runs" / "f")
        failed_attempts = len(server.bodies) - 16
    # it stopped at the threshold (plus what was already in flight), not after 16 requests x 51 attempts
    assert 6 <= failed_attempts <= 6 + 2
    assert "HTTP 503" in str(info.value) and SENTINEL not in str(info.value)
    assert [r["round"] for r in parts.store.round_rows("f")] == [0, 1]  # round 1 kept; resumable
    parts.store.close()


def test_a_success_resets_the_count_of_consecutive_failures(tiny_config, tmp_path):
    # 5 failures, a success, 5 failures...: never 6 in a row, so the run completes
    cfg = tiny_config(**{"loop.rounds": 1})
    faults = (["500"] * 5 + [None]) * 40
    with FakeOpenAI(faults) as server:
        store = RunStore(tmp_path / "runs" / "store.sqlite")
        store.start_run("g", cfg.to_dict())
        t = OpenAITeacher(section("teacher", backend="openai", model="served", base_urls=[server.url],
                                  backoff_s=0.001, concurrency=1, max_retries=10, down_after=6))
        parts = Parts(task=ClassifyTask(cfg), student=TinyStudent(), teacher=t, embedder=HashEmbedder(),
                      splits=load_splits(cfg), store=store,
                      tracker=Tracker(cfg.tracking.uri, cfg.tracking.experiment))
        summary = run_loop(cfg, parts, "g", tmp_path / "runs" / "g")
    store.close()
    assert summary["rounds_run"] == 1 and summary["accepted_total"] > 0
