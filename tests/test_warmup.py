"""The teacher's engine starts while round 0 trains; the first round waits for it and meets its failure."""

from __future__ import annotations

import threading
import time

import pytest
from conftest import ScriptedTeacher, TinyStudent
from test_controller import run

from loop.errors import TeacherError


class SlowStart(ScriptedTeacher):
    """An engine that takes a while to start (or fails to), noting when it started relative to training."""

    def __init__(self, fail: bool = False):
        super().__init__()
        self.fail, self.started, self.ready = fail, threading.Event(), threading.Event()
        self.thread = ""

    def start(self):
        self.thread = threading.current_thread().name
        self.started.set()
        time.sleep(0.3)
        if self.fail:
            raise TeacherError("engine could not start: out of memory")
        self.ready.set()

    def generate(self, requests):
        if not self.started.is_set():  # as the real engines do: started on first use
            self.start()
        assert self.ready.is_set(), "a request was sent before the engine was up"
        return super().generate(requests)


def test_the_engine_starts_during_round_0_training_and_round_1_waits_for_it(tiny_config, tmp_path,
                                                                              monkeypatch):
    teacher, seen = SlowStart(), []
    fit = TinyStudent.fit

    def watching(self, examples):
        seen.append(teacher.started.wait(5))  # round 0's training sees the engine already starting
        fit(self, examples)

    monkeypatch.setattr(TinyStudent, "fit", watching)
    summary, _ = run(tiny_config(**{"loop.rounds": 1}), tmp_path, teacher)
    assert seen[0] and teacher.thread == "teacher-warmup" and summary["rounds_run"] == 1
    assert teacher.calls  # round 1 sent its requests once the engine was ready


def test_an_engine_that_fails_to_start_stops_the_first_round_with_its_error(tiny_config, tmp_path):
    with pytest.raises(TeacherError, match="out of memory"):
        run(tiny_config(**{"loop.rounds": 1}), tmp_path, SlowStart(fail=True))


def test_no_warmup_without_generation_or_when_the_engine_is_unloaded_to_train(tiny_config, tmp_path):
    for overrides in ({"generation.strategy": "none"}, {"teacher.unload_before_train": True}):
        teacher = SlowStart()
        run(tiny_config(**{"loop.rounds": 1, **overrides}), tmp_path / str(len(overrides)), teacher,
            name=next(iter(overrides)).replace(".", "-"))
        assert teacher.thread != "teacher-warmup"
