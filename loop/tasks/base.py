"""The task contract: what the loop asks of a task, every member declared here.

A task owns its data (the splits), its prompts (three Jinja2 templates: system, targeted, self_revise), the
JSON its teacher replies in and how a reply becomes candidates, how candidates are verified (code tasks run
tests), how the student is asked and scored. Members without a default must be written by the task; the
others have defaults that suit text classification. Its options (`Options`) and rules across sections
(`config_rules`) are read with the config, before anything loads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from loop.options import Component
from loop.records import Candidate, Example, GenRequest, Predictions

if TYPE_CHECKING:
    from loop.config import Config, TaskConfig


class Task(Component):
    name: ClassVar[str]
    student_kind: ClassVar[str] = "text_classifier"  # the student kind it needs (a student's `kinds`)
    metrics: ClassVar[tuple[str, ...]] = ("accuracy", "macro_f1")  # the loop.metric values it reports
    confusion: ClassVar[bool] = True  # the report draws a gold x predicted matrix (useless for line numbers)
    # a candidate's label is the teacher's word (not found by running anything): filters.label_check applies
    teacher_labels: ClassVar[bool] = True
    labels: list[str]

    def __init__(self, cfg: Config) -> None:
        self.full, self.cfg = cfg, cfg.task
        self.labels = list(cfg.task.labels)

    @classmethod
    def derived_labels(cls, task: TaskConfig) -> list[str] | None:
        """The labels when the task fixes them from its options (they may then not be given), else None."""
        return None

    # -- data ---------------------------------------------------------------------------------------
    def load_splits(self) -> dict[str, list[Example]]:
        """train, dev_mine, dev_stop, test (and optionally pool, oracle) from the configured data."""
        raise NotImplementedError

    # -- prompts and replies --------------------------------------------------------------------------
    def common(self) -> dict:
        """Variables every template sees (description, labels, ...)."""
        raise NotImplementedError

    def messages(self, kind: str, **variables) -> list[dict]:
        """The chat for a request of `kind` (targeted, self_revise, label) with the template variables."""
        raise NotImplementedError

    def request_vars(self, kind: str, variables: dict) -> tuple[dict, dict]:
        """Extra template variables and request meta a request of `kind` needs (code: the problem)."""
        return {}, {}

    def json_schema(self, n: int, kind: str = "targeted") -> dict:
        """The JSON schema of a reply with at most `n` samples (guided decoding where the back-end can)."""
        raise NotImplementedError

    def parse(self, text: str, req: GenRequest) -> list[Candidate]:
        """Candidates from one reply; what cannot be read is a rejected candidate with its reason."""
        raise NotImplementedError

    def verify(self, cands: list[Candidate]) -> None:
        """Label or reject candidates by checking them (code: run the tests); text tasks trust the teacher."""

    def label_schema(self) -> dict:
        """Schema of a blind-labelling reply (filters.label_agreement)."""
        raise NotImplementedError

    def read_label(self, text: str) -> Any:
        """The label in a blind-labelling reply, or None."""
        raise NotImplementedError

    # -- the student ------------------------------------------------------------------------------
    def predict(self, student, examples: list[Example], mining: bool = False) -> Predictions:
        """The student's predictions; `mining` where they feed error mining (codegen samples more then)."""
        return student.predict(examples)

    def metric(self, pred: Predictions, examples: list[Example]) -> dict[str, float]:
        """The task's metrics (the ones named in `metrics`, plus per-label figures) of `pred`."""
        raise NotImplementedError

    def self_reviser(self, student):
        """A teacher that answers self-revise requests instead of the teacher (codegen: the student), or
        None."""
        return None

    # -- the report -------------------------------------------------------------------------------
    def artifacts(self, preds: dict, splits: dict, mined) -> dict[str, list[dict]]:
        """Task-specific tables for the round's MLflow artifacts, by file name."""
        return {}
