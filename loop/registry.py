"""The one place that maps config names to component classes. A new component is one line here.

Each class carries its own options (`Options`) and rules (`config_rules`), and what it pairs with: a task's
`student_kind` and `metrics`, a student's `kinds`. The config is built and checked from these.
"""

from __future__ import annotations

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
from loop.teachers.replay import ReplayTeacher
from loop.teachers.transformers import TransformersTeacher
from loop.teachers.vllm import VLLMTeacher

TASKS = {"classify": ClassifyTask, "defects": DefectsTask, "clones": ClonesTask, "codegen": CodegenTask,
         "faultloc": FaultLocTask}
STUDENTS = {"encoder": EncoderStudent, "probe": ProbeStudent, "causal_lm": CausalLMStudent,
            "lines": LineStudent}
TEACHERS = {"vllm": VLLMTeacher, "openai": OpenAITeacher, "llamacpp": LlamaCppTeacher,
            "transformers": TransformersTeacher, "replay": ReplayTeacher}

# config section -> (the key that picks the component, the registry it picks from)
SECTIONS = {"task": ("name", TASKS), "student": ("name", STUDENTS), "teacher": ("backend", TEACHERS)}
