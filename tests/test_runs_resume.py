"""`loop run` through the CLI: a run name is never reused silently, and `loop run --resume X` needs
nothing but X (the resolved config is in the run store); flags given again must match it."""

import shlex
import sqlite3

import pytest
from click.testing import CliRunner
from conftest import ROOT, HashEmbedder, TinyStudent
from fake_openai import FakeOpenAI

from loop.cli import main

TABLES = ("rounds", "requests", "skipped", "responses", "candidates", "ledger")


def light_parts(monkeypatch):
    """The real `assemble` (store, tracker, task, openai teacher) with the tiny student and hashing
    embedder."""
    import loop.components
    import loop.embedder

    monkeypatch.setattr(loop.components, "build_student", lambda cfg: TinyStudent(cfg.task.labels))
    monkeypatch.setattr(loop.embedder, "SentenceEmbedder", lambda name: HashEmbedder())


def write_config(folder, tiny_data, tmp_path) -> str:
    """A config that names the openai back-end but no URL (given with --teacher-url), as users write them."""
    path = folder / "exp.yaml"
    path.write_text(f"""\
task: {{prompts: {ROOT / 'prompts' / 'classify'}}}
data: {{source: {tiny_data}, train_size: 60, dev_size: 200, test_size: 200}}
teacher: {{backend: openai, model: served, max_retries: 0, backoff_s: 0.01, down_after: 2, concurrency: 1,
          timeout_s: 10}}
generation: {{targeted_requests: 2, revise_requests: 1}}
tracking: {{uri: 'sqlite:///{tmp_path}/mlruns/mlflow.db'}}
loop: {{rounds: 2, patience: 5}}
""")
    return path.name


@pytest.fixture
def cli(tmp_path, tiny_data, monkeypatch):
    """Runs `loop ...` in a fresh working folder (no configs/default.yaml there) with light parts."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    light_parts(monkeypatch)
    config = write_config(work, tiny_data, tmp_path)

    def invoke(*args):
        return CliRunner().invoke(main, [a.replace("CONFIG", config) for a in args])
    return invoke


def rows(store, run_id: str) -> dict:
    db = sqlite3.connect(store)
    try:
        out = {t: db.execute(f"SELECT * FROM {t} WHERE run_id=? ORDER BY rowid", (run_id,)).fetchall()
               for t in TABLES}
        out["runs"] = db.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchall()
        return out
    finally:
        db.close()


def parents(tmp_path, run_id: str) -> list:
    import mlflow

    client = mlflow.tracking.MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    exp = client.get_experiment_by_name("loop")
    runs = client.search_runs([exp.experiment_id], f"tags.run_id = '{run_id}'")
    return [r for r in runs if "mlflow.parentRunId" not in r.data.tags]


def test_a_second_run_with_the_same_name_is_refused(cli, tmp_path):
    with FakeOpenAI() as server:
        args = ("run", "--config", "CONFIG", "--teacher-url", server.url, "--name", "x", "--rounds", "1",
                "--set", "budget.tokens=60000")
        first = cli(*args)
        assert first.exit_code == 0, first.output
        store = tmp_path / "work" / "runs" / "store.sqlite"
        before = rows(store, "x")
        second = cli(*args)
    assert second.exit_code == 1 and "Traceback" not in second.output
    assert "run x already exists" in second.output and "--resume x" in second.output
    assert rows(store, "x") == before  # the first run's rounds, verdicts and spending are untouched
    assert len(parents(tmp_path, "x")) == 1


def test_resume_needs_only_the_run_id_and_refuses_changed_flags(cli, tmp_path):
    with FakeOpenAI() as server:
        first = cli("run", "--config", "CONFIG", "--teacher-url", server.url, "--name", "y", "--rounds", "1",
                    "--set", "budget.tokens=60000", "--set", "teacher.temperature=0.5")
        assert first.exit_code == 0, first.output
        finished = cli("run", "--resume", "y")
        assert finished.exit_code == 1 and "has finished" in finished.output, finished.output
        changed = cli("run", "--resume", "y", "--rounds", "2", "--set", "teacher.temperature=0.9",
                      "--teacher-model", "other", "--set", "budget.tokens=60000")
        assert changed.exit_code == 1, changed.output
        assert "teacher.model, teacher.temperature" in changed.output  # exactly the keys that differ
        same = cli("run", "--config", "CONFIG", "--teacher-url", server.url, "--resume", "y", "--rounds", "2",
                   "--set", "teacher.temperature=0.5", "--dry-run")
        assert same.exit_code == 0, same.output  # the same flags again are fine
        extended = cli("run", "--resume", "y", "--rounds", "2")
        assert extended.exit_code == 0, extended.output
    assert "done: 2 round(s)" in extended.output
    store = tmp_path / "work" / "runs" / "store.sqlite"
    assert [r[1] for r in rows(store, "y")["rounds"]] == [0, 1, 2]
    assert len(parents(tmp_path, "y")) == 1


def test_the_resume_command_printed_after_a_teacher_failure_works_as_printed(cli, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    with FakeOpenAI(["503"] * 50) as server:  # the server is down from the first request
        failed = cli("run", "--config", "CONFIG", "--teacher-url", server.url, "--name", "z",
                     "--set", "budget.tokens=60000", "--set", f"run.dir={elsewhere}")
        assert failed.exit_code == 1 and "TeacherDown" in failed.output, failed.output
        line = next(ln for ln in failed.output.splitlines() if "continue the run with: " in ln)
        command = shlex.split(line.split("continue the run with: ", 1)[1])
        assert command[:2] == ["loop", "run"] and "--resume" in command
        server.faults.clear()  # the server is back
        resumed = CliRunner().invoke(main, command[1:])
    assert resumed.exit_code == 0, resumed.output
    assert "done: 2 round(s)" in resumed.output
    assert [r[1] for r in rows(elsewhere / "store.sqlite", "z")["rounds"]] == [0, 1, 2]
    assert len(parents(tmp_path, "z")) == 1


def test_a_run_that_failed_before_it_started_gives_its_name_back(cli, tmp_path, monkeypatch):
    import loop.components
    from loop.errors import AssetError

    def broken(cfg):
        raise AssetError("the student's weights are missing")

    with FakeOpenAI() as server:
        args = ("run", "--config", "CONFIG", "--teacher-url", server.url, "--name", "w", "--rounds", "1",
                "--set", "budget.tokens=60000")
        with monkeypatch.context() as m:
            m.setattr(loop.components, "build_student", broken)
            failed = cli(*args)
        assert failed.exit_code == 1 and "AssetError" in failed.output, failed.output
        again = cli(*args)  # nothing was started under that name: it is free
    assert again.exit_code == 0, again.output
    assert len(parents(tmp_path, "w")) == 1
