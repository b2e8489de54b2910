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


CAP = 12000


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """Two real rounds through `loop run` on a terminal (a pty, through util-linux `script`), as a person
    runs it, so the live display runs too: (folder, the process; its stdout is the terminal's)."""
    tmp_path = tmp_path_factory.mktemp("e2e")
    cap = CAP
    cmd = [sys.executable, "-m", "loop.cli", "run", "--rounds", "2", "--name", "e2e",
           "--teacher-model", "packaged:smollm2-135m-instruct", "--budget-tokens", str(cap),
           "--set", "data.train_size=60", "--set", "data.dev_size=120", "--set", "data.test_size=120",
           "--set", "student.epochs=2", "--set", "student.max_length=48",
           "--set", "generation.targeted_requests=6", "--set", "generation.revise_requests=2",
           "--set", "teacher.max_tokens=200", "--set", "loop.patience=5",
           "--set", f"tracking.uri=sqlite:///{tmp_path}/mlruns/mlflow.db",
           "--set", f"run.dir={tmp_path}/runs"]
    import shlex

    env = {k: v for k, v in os.environ.items() if k != "CI"}  # CI turns the display off
    env.update(HF_HUB_OFFLINE="1", TERM="xterm-256color", COLUMNS="120", LINES="40")
    proc = subprocess.run(["script", "-q", "-e", "-c", shlex.join(cmd), "/dev/null"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout[-3000:]
    return tmp_path, proc


def test_the_live_display_showed_each_stage(real_run):
    """On the terminal the run drew its display: training steps with the loss, the teacher's requests, the
    examples evaluated, the budget gauge; and the summary still came after it."""
    _, proc = real_run
    out = proc.stdout
    for seen in ("baseline", "train: ", " steps", "loss ", "evaluate: ", " examples", "generate: ",
                 " requests", " tokens back", "/ 12,000 tokens", "round 2 of 2", "ETA"):
        assert seen in out, seen
    assert "Traceback" not in out and out.rindex("done: 2 round(s)") > out.rindex("ETA")


def test_two_real_rounds(real_run):
    tmp_path, proc = real_run
    cap = CAP
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


def chromium(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """Headless Chromium (the Debian package `chromium`; .ci/run installs it)."""
    import shutil

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args],
                          capture_output=True, text=True, timeout=timeout)


def not_blank(png) -> float:
    """The share of the picture that is not background."""
    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(png).convert("L"), dtype=float)
    return float((np.abs(pixels - np.median(pixels)) > 30).mean())


def test_the_report_of_a_real_run_renders_in_chromium(real_run):
    tmp_path, proc = real_run
    report = tmp_path / "runs" / "e2e" / "report.html"
    assert f"report: {report}" in proc.stdout and report.is_file()
    shot = tmp_path / "report.png"
    chromium(f"--screenshot={shot}", "--window-size=1200,2400", report.as_uri())
    assert shot.is_file() and not_blank(shot) > 0.02
    dom = chromium("--dump-dom", report.as_uri()).stdout
    # the curve and both confusion matrices are drawn, and the per-class and neighbourhood tables are there
    assert dom.count("<img") == 3 and dom.count("<table") >= 3 and "<h3>Round 2</h3>" in dom
    for title in ("against tokens spent", "Per-class F1", "Confusion matrix before and after", "Rounds"):
        assert title in dom


def test_loop_ui_opens_the_run_page(real_run):
    """`loop ui` serves the run's store and prints the run's page, which opens in the model-training view."""
    import re
    import socket

    tmp_path, _ = real_run
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "loop.cli", "ui", "--port", str(port),
           "--set", f"tracking.uri=sqlite:///{tmp_path}/mlruns/mlflow.db"]
    ui = subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ, HF_HUB_OFFLINE="1"), stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True)
    try:
        lines = []  # the server's own start-up lines come first
        while not lines or "MLflow UI:" not in lines[-1]:
            lines.append(ui.stdout.readline())
            assert lines[-1] or ui.poll() is None, lines
        url = re.search(r"MLflow UI: (\S+)", lines[-1])
        assert url.group(1).startswith(f"http://127.0.0.1:{port}/#/experiments/")
        assert url.group(1).endswith("?workflowType=machine_learning")
        dom = chromium("--virtual-time-budget=30000", "--dump-dom", url.group(1)).stdout
        assert "e2e" in dom and "round-1" in dom and "Model training" in dom
    finally:
        ui.terminate()
        ui.wait(timeout=60)
