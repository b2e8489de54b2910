"""Data-parallel student training (student.processes: 2, gloo on CPU, under accelerate): a run completes
with one copy of everything in the store and MLflow, and the student scores as one process does."""

import pytest
from conftest import HashEmbedder, ScriptedTeacher

from loop.config import section
from loop.controller import Parts, run_loop
from loop.data import load_splits
from loop.stages import evaluate
from loop.store import RunStore
from loop.students.encoder import EncoderStudent
from loop.tasks.classify import ClassifyTask
from loop.tracking import Tracker

pytestmark = pytest.mark.slow
SMALL = {"epochs": 4, "max_length": 32, "batch_size": 8}


def test_a_run_trained_in_two_processes_matches_one_and_is_written_once(tiny_config, tmp_path):
    import mlflow

    cfg = tiny_config(**{"loop.rounds": 1, "data.train_size": 40, "data.dev_size": 60, "data.test_size": 300})
    task, splits = ClassifyTask(cfg), load_splits(cfg)
    store = RunStore(tmp_path / "runs" / "store.sqlite")
    store.start_run("p", cfg.to_dict())
    student = EncoderStudent(section("student", processes=2, **SMALL), task.labels)
    parts = Parts(task=task, student=student, teacher=ScriptedTeacher(), embedder=HashEmbedder(),
                  splits=splits, store=store, tracker=Tracker(cfg.tracking.uri, cfg.tracking.experiment))
    summary = run_loop(cfg, parts, "p", tmp_path / "runs" / "p")
    assert summary["rounds_run"] == 1
    rows = store.round_rows("p")
    assert [r["round"] for r in rows] == [0, 1]  # each round once
    assert store.db.execute("SELECT COUNT(*) FROM rounds WHERE run_id='p'").fetchone()[0] == 2
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert len([r for r in runs if "mlflow.parentRunId" not in r.data.tags]) == 1  # one parent
    assert sorted(r.data.tags["round"] for r in runs if "mlflow.parentRunId" in r.data.tags) == ["0", "1"]
    assert [p.name for p in (tmp_path / "runs" / "p").iterdir() if p.name.startswith("student")] == \
        ["student-best"]
    store.close()

    # the same baseline trained in this process: the same score within 0.01
    one = EncoderStudent(section("student", processes=1, **SMALL), task.labels)
    one.fit(splits["train"])
    alone, _ = evaluate(one, task, splits, ("test",))
    assert abs(alone["test_macro_f1"] - rows[0]["metrics"]["test_macro_f1"]) <= 0.01, \
        (alone["test_macro_f1"], rows[0]["metrics"]["test_macro_f1"])
