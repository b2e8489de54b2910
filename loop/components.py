"""The one place that maps config names to classes. A new back-end is one line here."""

from __future__ import annotations

import dataclasses

from loop.config import Config
from loop.errors import ConfigError
from loop.students.causal_lm import CausalLMStudent
from loop.students.encoder import EncoderStudent
from loop.students.lines import LineStudent
from loop.students.probe import ProbeStudent
from loop.tasks.classify import ClassifyTask
from loop.tasks.code import ClonesTask, DefectsTask
from loop.tasks.codegen import CodegenTask
from loop.tasks.faultloc import FaultLocTask
from loop.teachers.llamacpp import LlamaCppTeacher
from loop.teachers.openai import OpenAITeacher
from loop.teachers.replay import Recorder, ReplayTeacher
from loop.teachers.student import StudentReviser
from loop.teachers.transformers import TransformersTeacher
from loop.teachers.vllm import VLLMTeacher

TASKS = {"classify": ClassifyTask, "defects": DefectsTask, "clones": ClonesTask, "codegen": CodegenTask,
         "faultloc": FaultLocTask}
STUDENTS = {"encoder": EncoderStudent, "probe": ProbeStudent, "causal_lm": CausalLMStudent, "lines": LineStudent}
TEACHERS = {
    "vllm": VLLMTeacher,
    "openai": OpenAITeacher,
    "llamacpp": LlamaCppTeacher,
    "transformers": TransformersTeacher,
    "replay": ReplayTeacher,
}


def _lookup(registry: dict, name: str, key: str):
    if name not in registry:
        raise ConfigError(f"{key}: unknown name '{name}' (valid: {', '.join(sorted(registry))})")
    return registry[name]


def check_names(cfg: Config) -> None:
    """Fail on unknown component names before anything heavy is loaded."""
    _lookup(TASKS, cfg.task.name, "task.name")
    _lookup(STUDENTS, cfg.student.name, "student.name")
    _lookup(TEACHERS, cfg.teacher.backend, "teacher.backend")


def build_task(cfg: Config):
    return _lookup(TASKS, cfg.task.name, "task.name")(cfg)


def build_student(cfg: Config):
    return _lookup(STUDENTS, cfg.student.name, "student.name")(cfg.student, cfg.task.labels)


def build_teacher(cfg: Config):
    """The configured back-end, wrapped in a cassette recorder if teacher.record is set."""
    tcfg = cfg.teacher
    if tcfg.cassette:  # relative to the config, like every other path
        tcfg = dataclasses.replace(tcfg, cassette=str(cfg.resolve(tcfg.cassette)))
    teacher = _lookup(TEACHERS, tcfg.backend, "teacher.backend")(tcfg)
    if cfg.teacher.record:
        teacher = Recorder(teacher, cfg.resolve(cfg.teacher.record))
    return teacher


def assemble(cfg: Config, run_dir, with_teacher: bool = True):
    """Every part of a run, built from the config (data first: bad data fails before models load)."""
    from loop.embedder import SentenceEmbedder
    from loop.parts import Parts
    from loop.store import RunStore
    from loop.tracking import Tracker

    task = build_task(cfg)
    splits = task.load_splits()
    # one store for all runs: the response cache is shared, runs are told apart by id
    store = RunStore(run_dir.parent / "store.sqlite")
    tracker = Tracker(cfg.tracking.uri, cfg.tracking.experiment, cfg.base_dir)
    store.start_run(run_dir.name, cfg.to_dict())
    student = build_student(cfg)
    reviser = StudentReviser(student) if cfg.task.reviser == "student" else None
    return Parts(task=task, student=student, teacher=build_teacher(cfg) if with_teacher else None,
                 embedder=SentenceEmbedder(cfg.filters.embedder), splits=splits, store=store, tracker=tracker,
                 reviser=reviser)
