"""A teacher on several OpenAI-compatible servers: balanced by load, a server that dies leaves the
rotation and its requests go to the others, and the run stops only when every server is down."""

import threading

import pytest
from conftest import HashEmbedder, TinyStudent
from test_teachers import requests

from loop.bench.fakeserver import make_server, spawn
from loop.config import section
from loop.controller import Parts, run_loop
from loop.data import load_splits
from loop.errors import TeacherDown
from loop.store import RunStore
from loop.tasks.classify import ClassifyTask
from loop.teachers.fleet import Fleet
from loop.teachers.openai import OpenAITeacher
from loop.tracking import Tracker


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_the_least_loaded_server_in_rotation_takes_the_next_request():
    clock = Clock()
    fleet = Fleet(["a", "b", "c"], down_after=3, cooldown_s=30, clock=clock)
    a, b, c = (fleet.pick() for _ in range(3))
    assert [a.url, b.url, c.url] == ["a", "b", "c"]  # one each before any gets a second
    fleet.succeeded(b)
    assert fleet.pick().url == "b"  # b is the only one with nothing in flight
    fleet.failed(a, "HTTP 503")
    fleet.succeeded(c)
    assert fleet.pick().url == "c"  # a cools down even though it has nothing in flight
    clock.now += 31
    assert fleet.pick().url == "a"  # back after the cool-down


def test_a_server_is_down_after_its_failures_in_a_row_and_the_fleet_when_all_are():
    clock = Clock()
    fleet = Fleet(["a", "b"], down_after=2, cooldown_s=30, clock=clock)
    for _ in range(2):
        fleet.failed(fleet.servers[0], "refused")
        fleet.servers[0].in_flight += 1  # keep the count honest for the next `failed`
    assert [s.url for s in fleet.alive()] == ["b"] and not fleet.down()
    # with every live server cooling down, the one back first is used
    fleet.failed(fleet.pick(), "reset")
    assert fleet.pick().url == "b"
    fleet.failed(fleet.servers[1], "reset")
    assert fleet.down() and "a: 2 failed attempts in a row, last refused" in fleet.describe_down()


def _serve(latency, slots):
    httpd = make_server(latency, slots)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/v1"


def test_a_slow_server_gets_less_work_than_a_fast_one():
    slow, slow_url = _serve(0.4, 1)
    fast, fast_url = _serve(0.02, 4)
    try:
        t = OpenAITeacher(section("teacher", backend="openai", model="m", base_urls=[slow_url, fast_url],
                                  concurrency=2))
        results = t.generate(requests(24))
    finally:
        for httpd in (slow, fast):
            httpd.shutdown()
            httpd.server_close()
    assert len(results) == 24
    answered = {s.url: s.answered for s in t.fleet.servers}
    assert answered[fast_url] >= 3 * answered[slow_url], answered  # round robin would give 12 and 12


@pytest.fixture
def servers():
    procs = []

    def start(latency, slots=4, die_after=None):
        proc, url = spawn(latency, slots, die_after)
        procs.append(proc)
        return proc, url

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def _parts(cfg, tmp_path, urls, **teacher):
    store = RunStore(tmp_path / "runs" / "store.sqlite")
    store.start_run("f", cfg.to_dict())
    t = OpenAITeacher(section("teacher", backend="openai", model="served", base_urls=urls, backoff_s=0.01,
                              concurrency=2, **teacher))
    return Parts(task=ClassifyTask(cfg), student=TinyStudent(), teacher=t, embedder=HashEmbedder(),
                 splits=load_splits(cfg), store=store,
                 tracker=Tracker(cfg.tracking.uri, cfg.tracking.experiment))


def test_a_server_killed_mid_round_loses_nothing_and_pays_nothing_twice(tiny_config, tmp_path, servers):
    cfg = tiny_config(**{"loop.rounds": 2})
    dying, dying_url = servers(0.2, die_after=3)  # answers 3 requests, then exits with requests in flight
    urls = [servers(0.05)[1], dying_url, servers(0.05)[1]]
    parts = _parts(cfg, tmp_path, urls, max_retries=2)
    summary = run_loop(cfg, parts, "f", tmp_path / "runs" / "f")
    assert dying.wait(timeout=10) == 9  # it did die, during the run
    assert summary["rounds_run"] == 2 and summary["accepted_total"] > 0
    db = parts.store.db
    asked = db.execute("SELECT COUNT(*) FROM requests WHERE run_id='f'").fetchone()[0]
    answered, distinct, tokens = db.execute(
        "SELECT COUNT(*), COUNT(DISTINCT request_id), SUM(prompt_tokens + completion_tokens) "
        "FROM responses WHERE run_id='f'").fetchone()
    assert answered == distinct == asked > 0  # every request answered once, by the servers left
    assert db.execute("SELECT SUM(tokens) FROM ledger WHERE run_id='f'").fetchone()[0] == tokens
    by_server = {s.url: s.answered for s in parts.teacher.fleet.servers}
    assert by_server[dying_url] <= 3 and sum(by_server.values()) == asked
    # the dead server left the rotation: tried only by the requests in flight when it died, not by one
    # request in three as round robin would
    dead = next(s for s in parts.teacher.fleet.servers if s.url == dying_url)
    assert 1 <= dead.fails <= 3, dead
    parts.store.close()


def test_the_run_stops_only_when_every_server_is_down(tiny_config, tmp_path, servers):
    cfg = tiny_config(**{"loop.rounds": 2})
    urls = [servers(0.01, die_after=2)[1], servers(0.01, die_after=2)[1]]
    parts = _parts(cfg, tmp_path, urls, max_retries=20, down_after=3)
    with pytest.raises(TeacherDown, match="consecutive failed attempts on each of 2 server") as info:
        run_loop(cfg, parts, "f", tmp_path / "runs" / "f")
    assert all(url in str(info.value) for url in urls)
    # the answers that came (at most two a server) are kept and paid once
    db = parts.store.db
    distinct, kept = db.execute("SELECT COUNT(DISTINCT request_id), COUNT(*) FROM responses").fetchone()
    assert 0 < distinct == kept <= 4
    assert db.execute("SELECT SUM(tokens) FROM ledger").fetchone()[0] == db.execute(
        "SELECT SUM(prompt_tokens + completion_tokens) FROM responses").fetchone()[0]
    parts.store.close()
