"""Parts for kill-and-resume trials in child processes: the fakes of conftest, a real store, real
MLflow and a real cassette (recorded from StableTeacher, then replayed)."""

from pathlib import Path

from conftest import HashEmbedder, StableTeacher, TinyStudent

from loop.controller import Parts
from loop.data import load_splits
from loop.store import RunStore
from loop.tasks.classify import ClassifyTask
from loop.teachers.replay import Recorder, ReplayTeacher
from loop.tracking import Tracker


def tiny_parts(cfg, run_dir: Path) -> Parts:
    store = RunStore(run_dir.parent / "store.sqlite")
    store.start_run(run_dir.name, cfg.to_dict())
    teacher = (Recorder(StableTeacher(), Path(cfg.teacher.record)) if cfg.teacher.record
               else ReplayTeacher(cfg.teacher))
    return Parts(task=ClassifyTask(cfg), student=TinyStudent(), teacher=teacher, embedder=HashEmbedder(),
                 splits=load_splits(cfg), store=store,
                 tracker=Tracker(cfg.tracking.uri, cfg.tracking.experiment))
