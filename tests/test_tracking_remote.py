"""A remote tracking server: the run's artifacts go through the server (client and server share no disk),
and the hint at the end of a run is the run's URL on that server."""

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from click.testing import CliRunner
from conftest import HashEmbedder, ScriptedTeacher, TinyStudent

from loop.cli import main
from loop.controller import Parts, run_loop
from loop.data import load_splits
from loop.errors import TrackingError
from loop.store import RunStore
from loop.tasks.classify import ClassifyTask
from loop.tracking import Tracker

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(store, port: int) -> subprocess.Popen:
    """`mlflow server` on 127.0.0.1 with a database backend and served artifacts, once it answers."""
    store.mkdir(exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1",
                             "--port", str(port), "--backend-store-uri", f"sqlite:///{store}/mlflow.db",
                             "--artifacts-destination", str(store / "artifacts"), "--workers", "1"],
                            cwd=store, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true"))
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            return proc
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "mlflow server did not start"
            time.sleep(0.5)


def stop_server(proc) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def server(tmp_path):
    port, store = free_port(), tmp_path / "server"
    proc = start_server(store, port)
    yield f"http://127.0.0.1:{port}", store
    stop_server(proc)


def test_artifacts_go_through_the_server(server, tmp_path, monkeypatch):
    url, store = server
    client_dir = tmp_path / "client"
    client_dir.mkdir()
    monkeypatch.chdir(client_dir)
    tracker = Tracker(url, "loop-remote")
    report = client_dir / "report.html"
    report.write_text("<html>report</html>")
    with tracker.parent("r", {"a": 1}, {}):
        tracker.log_file(report)
        run_id = tracker.parent_id
    kept = list((store / "artifacts").rglob("report.html"))
    assert len(kept) == 1 and kept[0].read_text() == "<html>report</html>"  # on the server's disk
    assert not [p for p in client_dir.rglob("*") if p.name != "report.html"]  # nothing on the client's
    link = tracker.run_url(run_id)
    assert link == f"{url}/#/experiments/{tracker.experiment_id}/runs/{run_id}?workflowType=machine_learning"
    res = CliRunner().invoke(main, ["ui", "--set", f"tracking.uri={url}",
                                    "--set", "tracking.experiment=loop-remote"])
    assert res.exit_code == 0 and f"MLflow: {link}" in res.output


def _parts(cfg, tmp_path, uri, teacher=None):
    store = RunStore(tmp_path / "runs" / "store.sqlite")
    store.start_run("r", cfg.to_dict())
    return Parts(task=ClassifyTask(cfg), student=TinyStudent(), teacher=teacher or ScriptedTeacher(),
                 embedder=HashEmbedder(), splits=load_splits(cfg), store=store,
                 tracker=Tracker(uri, "loop-remote"))


def _children(client, parent_id):
    runs = client.search_runs([client.get_run(parent_id).info.experiment_id],
                              f"tags.mlflow.parentRunId = '{parent_id}'")
    return {int(r.data.tags["round"]): r for r in runs}


def test_a_run_on_a_tracking_server_reads_back_through_the_client(server, tiny_config, tmp_path):
    from mlflow.tracking import MlflowClient

    url, store = server
    cfg = tiny_config(**{"loop.rounds": 2, "tracking.uri": url})
    parts = _parts(cfg, tmp_path, url)
    summary = run_loop(cfg, parts, "r", tmp_path / "runs" / "r")
    parts.store.close()
    client = MlflowClient(url)
    parent = client.get_run(summary["mlflow_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.params["loop.rounds"] == "2"
    children = _children(client, parent.info.run_id)
    assert sorted(children) == [0, 1, 2] and all(c.info.status == "FINISHED" for c in children.values())
    assert "test_macro_f1" in children[2].data.metrics
    curve = client.get_metric_history(parent.info.run_id, "test_macro_f1")
    assert [m.step for m in curve] == [0, 1, 2]
    names = {f.path for f in client.list_artifacts(children[1].info.run_id, "samples")}
    assert "samples/accepted.json" in names
    assert "report.html" in {f.path for f in client.list_artifacts(parent.info.run_id)}
    assert list((store / "artifacts").rglob("accepted.json"))  # on the server's disk


def test_a_tracking_server_down_at_start_is_a_clear_error_before_models_load(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    start = time.monotonic()
    with pytest.raises(TrackingError, match=f"no MLflow tracking server answers at {url}"):
        Tracker(url, "x")
    assert time.monotonic() - start < 15
    res = CliRunner().invoke(main, ["run", "--rounds", "1", "--set", f"tracking.uri={url}",
                                    "--set", f"run.dir={tmp_path}/runs"])
    assert res.exit_code == 1 and "no MLflow tracking server answers" in res.output
    assert "Traceback" not in res.output


class KillsTheServer(ScriptedTeacher):
    """A teacher whose second batch (round 2) first stops the tracking server."""

    def __init__(self, proc):
        super().__init__()
        self.proc, self.batches = proc, 0

    def generate(self, requests):
        self.batches += 1
        if self.batches == 2:
            stop_server(self.proc)
        return super().generate(requests)


def test_a_server_gone_mid_run_loses_no_round_and_resume_logs_what_it_missed(tiny_config, tmp_path,
                                                                              monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    port, store = free_port(), tmp_path / "server"
    url = f"http://127.0.0.1:{port}"
    proc = start_server(store, port)
    cfg = tiny_config(**{"loop.rounds": 2, "tracking.uri": url})
    parts = _parts(cfg, tmp_path, url, KillsTheServer(proc))
    try:
        summary = run_loop(cfg, parts, "r", tmp_path / "runs" / "r")
    finally:
        stop_server(proc)
    assert summary["rounds_run"] == 2 and parts.tracker.lost  # the run went on without the server
    rows = parts.store.round_rows("r")
    assert [r["round"] for r in rows] == [0, 1, 2]  # every round is in the store
    missed = [r["round"] for r in rows if not r["mlflow_run_id"]]
    assert missed == [2]
    parts.store.close()

    proc = start_server(store, port)  # back, with what it had
    try:
        resumed = _parts(cfg, tmp_path, url)
        run_loop(cfg, resumed, "r", tmp_path / "runs" / "r", resume=True)
        rows = resumed.store.round_rows("r")
        resumed.store.close()
        client = MlflowClient(url)
        children = _children(client, summary["mlflow_run_id"])
    finally:
        stop_server(proc)
    assert all(r["mlflow_run_id"] for r in rows)
    assert sorted(children) == [0, 1, 2] and children[2].data.tags["logged_on_resume"] == "true"
    assert children[2].data.metrics["test_macro_f1"] == rows[2]["metrics"]["test_macro_f1"]
