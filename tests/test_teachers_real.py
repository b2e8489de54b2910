"""The teacher contract on real engines with SmolLM2-135M-Instruct, and a whole round through
a real third-party OpenAI-compatible server (`vllm serve`) started on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys

import pytest
from conftest import ROOT
from test_teachers import TeacherContract, requests

from loop.config import section
from loop.teachers.openai import OpenAITeacher

pytestmark = pytest.mark.slow
SMOL = "packaged:smollm2-135m-instruct"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    """vLLM's OpenAI-compatible server on loopback, serving SmolLM2 under the name 'smol'."""
    from loop.bench.teacher import serve_vllm

    log = tmp_path_factory.mktemp("server") / "vllm.log"
    try:
        proc, url = serve_vllm(SMOL, free_port(), served="smol", log_path=str(log))
    except Exception as exc:
        pytest.fail(f"{exc}\n{log.read_text()[-3000:] if log.exists() else ''}")
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


class TestVLLMServeContract(TeacherContract):
    @pytest.fixture
    def teacher(self, vllm_server):
        return OpenAITeacher(section("teacher", backend="openai", model="smol", base_urls=[vllm_server],
                                           tokenizer=SMOL))

    def test_output_follows_the_json_schema(self, teacher):
        # guided decoding: every reply is (a prefix of) {"samples": [...]}, even from a 135M model
        for res in teacher.generate(requests(4, max_tokens=120)):
            compact = "".join(res.text.split())
            assert compact.startswith('{"samples":['), res.text


class TestVLLMContract(TeacherContract):
    @pytest.fixture(scope="class")
    def teacher(self):
        from loop.teachers.vllm import VLLMTeacher
        t = VLLMTeacher(section("teacher", model=SMOL, kv_cache_gb=1))
        yield t
        t.unload()


class TestTransformersContract(TeacherContract):
    @pytest.fixture(scope="class")
    def teacher(self):
        from loop.teachers.transformers import TransformersTeacher
        return TransformersTeacher(section("teacher", backend="transformers", model=SMOL, batch_size=4))


def small_round(tmp_path, *args):
    cmd = [sys.executable, "-m", "loop.cli", "run", "--rounds", "1", "--name", "r", "--budget-tokens", "6000",
           "--set", "data.train_size=45", "--set", "data.dev_size=90", "--set", "data.test_size=90",
           "--set", "student.epochs=1", "--set", "student.max_length=32",
           "--set", "generation.targeted_requests=3", "--set", "generation.revise_requests=1",
           "--set", "teacher.max_tokens=120",
           "--set", f"tracking.uri=sqlite:///{tmp_path}/mlruns/mlflow.db",
           "--set", f"run.dir={tmp_path}/runs", *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, HF_HUB_OFFLINE="1"), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    db = sqlite3.connect(tmp_path / "runs" / "store.sqlite")
    return db


def test_round_through_vllm_serve(tmp_path, vllm_server):
    """A round through a real OpenAI-compatible server, with the blind label-agreement pass on;
    then the same round replayed from its recorded cassette."""
    import json

    cassette = tmp_path / "round.jsonl"
    db = small_round(tmp_path, "--teacher", "openai", "--teacher-url", vllm_server, "--teacher-model", "smol",
                     "--set", f"teacher.tokenizer={SMOL}", "--record", str(cassette),
                     "--set", "filters.label_agreement=true", "--set", "filters.diversity_cosine=0.99",
                     # the free label check would reject a tiny teacher's candidates before the blind pass
                     "--set", "filters.label_check=false")
    kinds = dict(db.execute("SELECT kind, COUNT(*) FROM requests GROUP BY kind").fetchall())
    n, tokens = db.execute("SELECT COUNT(*), SUM(prompt_tokens + completion_tokens) "
                           "FROM responses").fetchone()
    assert n == 4 + kinds.get("label", 0) and 0 < tokens <= 6000
    assert db.execute("SELECT COUNT(*) FROM candidates").fetchone()[0] > 0
    # one blind request per candidate that passed the other checks, paid from the same budget
    survivors = db.execute("SELECT COUNT(*) FROM candidates WHERE verdict='accepted' OR "
                           "reason IN ('label_disagreement', 'budget')").fetchone()[0]
    assert kinds.get("label", 0) == survivors > 0
    assert db.execute("SELECT SUM(tokens) FROM ledger").fetchone()[0] == tokens
    for label, meta in db.execute("SELECT label, meta FROM candidates WHERE verdict='accepted'"):
        assert json.loads(meta)["blind_label"] == label
    # the recorded cassette replays the same round without a server
    replay_dir = tmp_path / "replay"
    replay_dir.mkdir()
    db2 = small_round(replay_dir, "--teacher", "replay", "--cassette", str(cassette))

    def texts(d):
        return sorted(r[0] for r in d.execute("SELECT text FROM candidates"))

    assert texts(db2) == texts(db)


def test_round_through_a_fleet_with_a_server_killed_mid_round(tmp_path, vllm_server):
    """Three servers (vLLM's own and two fixed-latency fakes); one fake dies on the first request it
    gets: the round finishes on the others, every request is answered once and paid once."""
    from loop.bench.fakeserver import spawn

    (healthy, healthy_url), (dying, dying_url) = spawn(0.1, 4), spawn(0.1, 4, die_after=0)
    try:
        db = small_round(tmp_path, "--teacher", "openai", "--teacher-model", "smol",
                         "--teacher-url", vllm_server, "--teacher-url", dying_url,
                         "--teacher-url", healthy_url,
                         "--set", f"teacher.tokenizer={SMOL}", "--set", "filters.label_check=false")
        assert dying.wait(timeout=5) == 9
    finally:
        for proc in (healthy, dying):
            proc.kill()
            proc.wait()
    asked = db.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
    answered, distinct, tokens = db.execute(
        "SELECT COUNT(*), COUNT(DISTINCT request_id), SUM(prompt_tokens + completion_tokens) "
        "FROM responses").fetchone()
    assert answered == distinct == asked == 4
    assert db.execute("SELECT SUM(tokens) FROM ledger").fetchone()[0] == tokens


class TestLlamaCppContract(TeacherContract):
    @pytest.fixture(scope="class")
    def teacher(self):
        pytest.importorskip("llama_cpp",
                            reason="llama-cpp-python is an optional extra (./setup.sh --with-llamacpp)")
        from loop.teachers.llamacpp import LlamaCppTeacher
        t = LlamaCppTeacher(section("teacher", backend="llamacpp", model=SMOL, max_model_len=2048))
        yield t
        t.unload()


def test_round_through_llamacpp(tmp_path):
    pytest.importorskip("llama_cpp",
                        reason="llama-cpp-python is an optional extra (./setup.sh --with-llamacpp)")
    db = small_round(tmp_path, "--teacher", "llamacpp", "--teacher-model", SMOL)
    n, tokens = db.execute("SELECT COUNT(*), SUM(prompt_tokens + completion_tokens) "
                           "FROM responses").fetchone()
    assert n == 4 and 0 < tokens <= 6000


def test_round_through_transformers(tmp_path):
    db = small_round(tmp_path, "--teacher", "transformers", "--teacher-model", SMOL)
    n, tokens = db.execute("SELECT COUNT(*), SUM(prompt_tokens + completion_tokens) "
                           "FROM responses").fetchone()
    assert n == 4 and 0 < tokens <= 6000


def code_round(tmp_path, config: str, server: str, problems_file):
    """One small round of a code task (configs/<config>.yaml) through the served SmolLM2, on the test
    problems file (the model cache stays the real one: variants of its 24 problems join it)."""
    return small_round(tmp_path, "--config", str(ROOT / "configs" / f"{config}.yaml"),
                       "--teacher", "openai", "--teacher-url", server, "--teacher-model", "smol",
                       "--set", f"teacher.tokenizer={SMOL}", "--set", f"data.source={problems_file}",
                       "--set", "data.train_size=8", "--set", "data.dev_size=8", "--set", "data.test_size=8",
                       "--set", "student.max_length=128", "--set", "teacher.max_tokens=300",
                       "--set", "teacher.max_model_len=2048")


def test_defects_round_through_vllm_serve(tmp_path, vllm_server, _problems):
    import json

    db = code_round(tmp_path, "defects", vllm_server, _problems[0])
    n = db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    assert n == 4
    rows = db.execute("SELECT verdict, reason, label, meta FROM candidates").fetchall()
    assert rows and all(v in ("accepted", "rejected") for v, _, _, _ in rows)
    for verdict, reason, label, meta in rows:
        meta = json.loads(meta)
        if "execution" in meta:  # ran in the sandbox: the tests gave the label
            assert label == ("correct" if meta["execution"] == "passed" else "buggy")
        else:
            assert verdict == "rejected" and reason in ("parse", "schema", "syntax", "format", "length")


def test_faultloc_round_through_vllm_serve(tmp_path, vllm_server, _problems):
    """Line edits from a real model: every one that reached the tests was applied on the line it names, and
    the label is that line."""
    import json

    from loop.tasks.faultloc import _bare, _line_form

    db = code_round(tmp_path, "faultloc", vllm_server, _problems[0])
    assert db.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == 4
    rows = db.execute("SELECT verdict, reason, label, text, meta FROM candidates").fetchall()
    assert rows and all(v in ("accepted", "rejected") for v, _, _, _, _ in rows)
    for verdict, reason, label, text, meta in rows:
        meta = json.loads(meta)
        if "execution" in meta:  # applied, one line changed, and run: the tests decided
            faulty = _bare(meta["faulty"])
            assert _line_form(text.split("\n")[int(label) - 1]) \
                in {_line_form(faulty), _line_form(faulty + ":")}
            assert (reason == "passes_tests") == (meta["execution"] == "passed")
        else:
            assert verdict == "rejected" and reason in ("parse", "schema", "syntax", "format", "length",
                                                        "line_mismatch", "not_one_line", "unchanged")
