"""Looking at runs after the fact: `loop runs` (the table of runs), `loop report` (a run's HTML report) and
`loop ui` (the MLflow UI on the runs' tracking store, opened at the latest run)."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import click

from loop.cli.common import CONFIG_OPT, SET_OPT, _load, _parse_sets, handle_errors
from loop.errors import RunStateError

log = logging.getLogger("loop")

STORE_OPT = click.option("--store", "store_path", type=click.Path(dir_okay=False),
                         help="The run store (default: <run.dir>/store.sqlite of the config).")


def _store(config, store_path, sets):
    from loop.store import RunStore

    cfg = _load(config, _parse_sets(sets))
    path = Path(store_path) if store_path else cfg.resolve(cfg.run.dir) / "store.sqlite"
    if not path.is_file():
        raise RunStateError(f"no run store at {path} (set run.dir or --store)")
    return cfg, RunStore(path)


@click.command("runs")
@CONFIG_OPT
@STORE_OPT
@SET_OPT
@handle_errors
def runs_cmd(config, store_path, sets):
    """The runs in the store: id, status, strategy, rounds, best metric, tokens, accepted samples."""
    from loop.runlist import run_rows, table_lines

    _, store = _store(config, store_path, sets)
    try:
        for line in table_lines(run_rows(store)):
            click.echo(line)
    finally:
        store.close()


@click.command("report")
@click.argument("run_id", required=False)
@click.option("-o", "--out", type=click.Path(dir_okay=False),
              help="Where to write the HTML (default: <run.dir>/<run id>/report.html).")
@CONFIG_OPT
@STORE_OPT
@SET_OPT
@handle_errors
def report_cmd(run_id, out, config, store_path, sets):
    """Write a run's report: one self-contained HTML file (the latest run's without RUN_ID)."""
    from loop.runreport import write

    cfg, store = _store(config, store_path, sets)
    try:
        ids = store.run_ids()
        if not ids:
            raise RunStateError(f"{store.path} holds no run yet")
        run_id = run_id or ids[-1]
        path = Path(out) if out else store.path.parent / run_id / "report.html"
        write(store, run_id, path)
    finally:
        store.close()
    click.echo(f"report: {path.resolve()}")


@click.command("ui")
@click.option("--port", default=5000, show_default=True, help="Port of the MLflow UI.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on (loopback: only this machine can open it).")
@CONFIG_OPT
@SET_OPT
@handle_errors
def ui_cmd(port, host, config, sets):
    """Start the MLflow UI on the runs' tracking store and print the URL of the latest run."""
    from loop.tracking import Tracker

    cfg = _load(config, _parse_sets(sets))
    tracker = Tracker(cfg.tracking.uri, cfg.tracking.experiment, cfg.base_dir)
    latest = _latest_parent(tracker)
    remote = tracker.run_url(latest) if latest else None
    if tracker.uri.startswith(("http://", "https://")):  # a server already serves it
        click.echo(f"MLflow: {remote or tracker.uri}")
        return
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", tracker.uri, "--host", host,
           "--port", str(port), "--workers", "1"]
    proc = subprocess.Popen(cmd)
    try:
        base = f"http://{host}:{port}"
        _wait_up(base, proc)
        click.echo(f"MLflow UI: {tracker.run_url(latest, base) if latest else base}  (Ctrl-C stops it)")
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)


def ui_command(uri: str) -> str:
    """The `loop ui` command that opens the store at `uri`, as it can be pasted in this folder."""
    import shlex

    from loop.cli.common import _default_config
    from loop.tracking import resolve_uri

    default = _load(_default_config(), {})
    if resolve_uri(default.tracking.uri, default.base_dir) == uri:
        return "loop ui"
    return shlex.join(["loop", "ui", "--set", f"tracking.uri={uri}"])


def _latest_parent(tracker) -> str | None:
    runs = tracker.mlflow.tracking.MlflowClient().search_runs(
        [tracker.experiment_id], "", order_by=["attributes.start_time DESC"], max_results=50)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    return parents[0].info.run_id if parents else None


def _wait_up(base: str, proc, timeout: float = 120.0) -> None:
    """Until the server answers its health check (or exits: then its own error is on the terminal)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RunStateError(f"the MLflow UI exited with status {proc.returncode} (is the port taken?)")
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RunStateError(f"the MLflow UI did not answer at {base} within {timeout:.0f} s")
