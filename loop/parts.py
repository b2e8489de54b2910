"""The parts a run is built from, as one record: what `components.assemble` builds and the controller
drives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from loop.records import Example

if TYPE_CHECKING:
    from loop.embedder import SentenceEmbedder
    from loop.store import RunStore
    from loop.students.base import Student
    from loop.tasks.base import Task
    from loop.teachers.base import Teacher
    from loop.tracking import Tracker


@dataclass
class Parts:
    task: Task
    student: Student
    teacher: Teacher | None  # None: a run that generates nothing (strategy none, a mining dry run)
    embedder: SentenceEmbedder
    splits: dict[str, list[Example]]
    store: RunStore
    tracker: Tracker
    reviser: Teacher | None = None  # answers self-revise requests instead of the teacher (codegen: student)
