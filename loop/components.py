"""Building a run's parts from a validated config (the classes come from `loop.registry`)."""

from __future__ import annotations

import dataclasses

from loop.config import Config
from loop.parts import Parts
from loop.registry import STUDENTS, TASKS, TEACHERS
from loop.teachers.replay import Recorder


def with_paths_resolved(cfg: Config, section):
    """`section` with its path options made absolute (relative to the config, like every other path)."""
    paths = {f.name: str(cfg.resolve(getattr(section, f.name))) for f in dataclasses.fields(section)
             if f.metadata.get("path") and getattr(section, f.name)}
    return dataclasses.replace(section, **paths)


def build_task(cfg: Config):
    return TASKS[cfg.task.name](cfg)


def build_student(cfg: Config):
    return STUDENTS[cfg.student.name](cfg.student, cfg.task.labels)


def build_teacher(cfg: Config):
    """The configured back-end, wrapped in a cassette recorder if teacher.record is set."""
    tcfg = with_paths_resolved(cfg, cfg.teacher)
    teacher = TEACHERS[tcfg.backend](tcfg)
    if cfg.teacher.record:
        teacher = Recorder(teacher, cfg.resolve(cfg.teacher.record))
    return teacher


def assemble(cfg: Config, run_dir, with_teacher: bool = True):
    """Every part of a run, built from the config (data first: bad data fails before models load)."""
    from loop.embedder import SentenceEmbedder
    from loop.store import RunStore
    from loop.tracking import Tracker

    task = build_task(cfg)
    splits = task.load_splits()
    # one store for all runs: the response cache is shared, runs are told apart by id
    store = RunStore(run_dir.parent / "store.sqlite")
    tracker = Tracker(cfg.tracking.uri, cfg.tracking.experiment, cfg.base_dir)
    store.start_run(run_dir.name, cfg.to_dict())
    student = build_student(cfg)
    reviser = task.self_reviser(student)
    return Parts(task=task, student=student, teacher=build_teacher(cfg) if with_teacher else None,
                 embedder=SentenceEmbedder(cfg.filters.embedder), splits=splits, store=store, tracker=tracker,
                 reviser=reviser)
