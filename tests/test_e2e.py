"""`loop run` as a user runs it: a subprocess, real MiniLM, real vLLM on SmolLM2-135M, real FAISS and
MLflow."""

import json
import os
import sqlite3
import subprocess
import sys

import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow


def test_two_real_rounds(tmp_path):
    cap = 12000
    cmd = [sys.executable, "-m", "loop.cli", "run", "--rounds", "2", "--name", "e2e",
           "--teacher-model", "packaged:smollm2-135m-instruct", "--budget-tokens", str(cap),
           "--set", "data.train_size=60", "--set", "data.dev_size=120", "--set", "data.test_size=120",
           "--set", "student.epochs=2", "--set", "student.max_length=48",
           "--set", "generation.targeted_requests=6", "--set", "generation.revise_requests=2",
           "--set", "teacher.max_tokens=200", "--set", "loop.patience=5",
           "--set", f"tracking.uri=sqlite:///{tmp_path}/mlruns/mlflow.db",
           "--set", f"run.dir={tmp_path}/runs"]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "done: 2 round(s)" in proc.stdout

    db = sqlite3.connect(tmp_path / "runs" / "store.sqlite")
    responses = db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    accepted = db.execute("SELECT COUNT(*) FROM candidates WHERE verdict='accepted'").fetchone()[0]
    tokens = db.execute("SELECT SUM(prompt_tokens + completion_tokens) FROM responses").fetchone()[0]
    assert responses > 0 and accepted > 0
    assert tokens <= cap
    assert (tmp_path / "runs" / "e2e" / "student-best" / "model.safetensors").is_file()
    # the free label check ran on the real student and embedder: an accepted label is the student's or the
    # gold vote's, a rejected one neither
    for label, verdict, meta in db.execute("SELECT label, verdict, meta FROM candidates "
                                           "WHERE verdict='accepted' OR reason='likely_mislabelled'"):
        support = {json.loads(meta)["student_label"], json.loads(meta)["gold_vote"]}
        assert (label in support) == (verdict == "accepted"), (label, verdict, meta)

    import mlflow
    client = mlflow.tracking.MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    exp = client.get_experiment_by_name("loop")
    runs = client.search_runs([exp.experiment_id])
    parent = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = sorted((r for r in runs if "mlflow.parentRunId" in r.data.tags),
                      key=lambda r: r.data.tags["round"])
    assert len(parent) == 1 and [c.data.tags["round"] for c in children] == ["0", "1", "2"]
    m = children[1].data.metrics
    assert m["requests"] > 0 and m["completion_tokens"] > 0 and "stop_macro_f1" in m
    assert parent[0].data.metrics["tokens_spent"] <= cap
    arts = [a.path for a in client.list_artifacts(children[1].info.run_id, "error_analysis")]
    assert "error_analysis/neighbourhoods.json" in arts
    table = json.loads(open(client.download_artifacts(children[1].info.run_id,
                                                      "error_analysis/neighbourhoods.json",
                                                      str(tmp_path))).read())
    assert table["data"] and "confusion" in table["columns"]
