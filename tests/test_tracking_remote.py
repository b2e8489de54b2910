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

from loop.cli import main
from loop.tracking import Tracker

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = tmp_path / "server"
    store.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1",
                             "--port", str(port), "--backend-store-uri", f"sqlite:///{store}/mlflow.db",
                             "--artifacts-destination", str(store / "artifacts"), "--workers", "1"],
                            cwd=store, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(url + "/health", timeout=2)
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "mlflow server did not start"
            time.sleep(0.5)
    yield url, store
    proc.terminate()
    proc.wait(timeout=60)


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
