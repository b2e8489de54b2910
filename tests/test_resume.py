"""Resume: a run that crashed anywhere continues from its store, pays nothing twice, keeps every
accepted sample exactly once, and ends where an uninterrupted run ends."""

import pytest
from conftest import HashEmbedder, StableTeacher, TinyStudent

from loop.controller import Parts, run_loop
from loop.data import load_splits
from loop.errors import RunStateError
from loop.runs import check_resumable, run_lock
from loop.store import RunStore
from loop.tasks.classify import ClassifyTask
from loop.tracking import Tracker

CLEAN: dict = {}


class Crash(Exception):
    """Stands in for the process dying at that point."""


def _bomb(obj, method: str, at: int):
    """Make obj.method raise Crash on its `at`-th call (1-based)."""
    real, calls = getattr(obj, method), [0]

    def wrapped(*args, **kwargs):
        calls[0] += 1
        if calls[0] == at:
            raise Crash(f"{method} #{at}")
        return real(*args, **kwargs)

    setattr(obj, method, wrapped)


def _parts(cfg, tmp_path):
    store = RunStore(tmp_path / "runs" / "store.sqlite")
    store.start_run("r", cfg.to_dict())
    return Parts(task=ClassifyTask(cfg), student=TinyStudent(), teacher=StableTeacher(),
                 embedder=HashEmbedder(), splits=load_splits(cfg), store=store,
                 tracker=Tracker(cfg.tracking.uri, cfg.tracking.experiment))


def _outcome(parts):
    db = parts.store.db
    paid = db.execute("SELECT COUNT(*), SUM(tokens) FROM ledger WHERE run_id='r' "
                      "AND event LIKE 'response:%'").fetchone()
    return {"accepted": [e.text for e in parts.store.accepted("r")], "spent": parts.store.spent("r"),
            "paid": paid, "rounds": [r["round"] for r in parts.store.round_rows("r")]}


@pytest.mark.parametrize("where,method,at", [
    ("teacher call, round 2", "teacher.generate", 2),
    ("training after round 1 was screened", "student.fit", 2),
    ("training after round 2 was screened", "student.fit", 3),
    ("storing round 1 verdicts", "store.add_candidates", 1),
    ("logging round 2 to MLflow", "tracker.log_round", 3),
])
def test_resume_after_a_crash_matches_an_uninterrupted_run(tiny_config, tmp_path, where, method, at):
    cfg = tiny_config(**{"loop.rounds": 3})
    if not CLEAN:  # the uninterrupted run, once for every crash point (its outcome depends on no path)
        clean = _parts(cfg, tmp_path / "clean")
        run_loop(cfg, clean, "r", tmp_path / "clean" / "runs" / "r")
        CLEAN.update(_outcome(clean), parent=clean.tracker.parent_id)
    expected = {k: v for k, v in CLEAN.items() if k != "parent"}

    crashed = _parts(cfg, tmp_path / "crash")
    owner, name = method.split(".")
    _bomb(getattr(crashed, owner), name, at)
    with pytest.raises(Crash):
        run_loop(cfg, crashed, "r", tmp_path / "crash" / "runs" / "r")
    assert crashed.store.run_info("r")["status"] == "failed"  # not left 'running'
    crashed.store.close()
    mlflow_parent = crashed.tracker.parent_id

    resumed = _parts(cfg, tmp_path / "crash")  # a fresh process: new student, teacher, store handle
    summary = run_loop(cfg, resumed, "r", tmp_path / "crash" / "runs" / "r", resume=True)
    got = _outcome(resumed)
    assert got == expected, where
    assert summary["accepted_total"] == len(expected["accepted"]) == len(set(expected["accepted"]))
    assert resumed.tracker.parent_id == mlflow_parent  # the MLflow run is continued, not duplicated
    import mlflow
    client = mlflow.tracking.MlflowClient()
    exp = client.get_experiment_by_name("loop").experiment_id
    parents = [p for p in client.search_runs([exp], "tags.run_id = 'r'") if p.info.run_id != CLEAN["parent"]]
    assert len(parents) == 1
    assert resumed.store.run_info("r")["status"] == "done"
    children = client.search_runs([exp], f"tags.mlflow.parentRunId = '{mlflow_parent}'")
    rounds = sorted(int(c.data.tags["round"]) for c in children)
    assert rounds == [0, 1, 2, 3] and all(c.info.status == "FINISHED" for c in children)  # a child per round


def test_resume_refuses_unknown_changed_finished_or_busy_runs(tiny_config, tmp_path):
    cfg = tiny_config(**{"loop.rounds": 1})
    parts = _parts(cfg, tmp_path)
    run_loop(cfg, parts, "r", tmp_path / "runs" / "r")
    store_path = tmp_path / "runs" / "store.sqlite"
    with pytest.raises(RunStateError, match="no such run"):
        check_resumable(cfg, "nope", store_path)
    with pytest.raises(RunStateError, match="no run store"):
        check_resumable(cfg, "r", tmp_path / "elsewhere.sqlite")
    with pytest.raises(RunStateError, match="has finished"):
        check_resumable(cfg, "r", store_path)
    check_resumable(tiny_config(**{"loop.rounds": 2}), "r", store_path)  # extending a finished run is fine
    with pytest.raises(RunStateError, match="teacher.temperature"):
        check_resumable(tiny_config(**{"loop.rounds": 2, "teacher.temperature": 0.1}), "r", store_path)
    with run_lock(tmp_path / "runs" / "r"):
        with pytest.raises(RunStateError, match="in use"):
            with run_lock(tmp_path / "runs" / "r"):
                pass
    with run_lock(tmp_path / "runs" / "r"):  # released when the first run ends
        pass


def test_extending_a_finished_run_adds_rounds(tiny_config, tmp_path):
    parts = _parts(tiny_config(**{"loop.rounds": 1}), tmp_path)
    run_loop(tiny_config(**{"loop.rounds": 1}), parts, "r", tmp_path / "runs" / "r")
    more = _parts(tiny_config(**{"loop.rounds": 2}), tmp_path)
    summary = run_loop(tiny_config(**{"loop.rounds": 2}), more, "r", tmp_path / "runs" / "r", resume=True)
    assert [r["round"] for r in more.store.round_rows("r")] == [0, 1, 2] and summary["rounds_run"] == 2
    # only round 2 was asked for: every request the resumed run sent is stored under round 2
    round_2 = more.store.db.execute("SELECT COUNT(*) FROM requests WHERE run_id='r' AND round=2")\
        .fetchone()[0]
    assert 0 < more.teacher.sent == round_2
