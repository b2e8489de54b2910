"""The records every part passes around: examples, candidates, teacher requests and replies, predictions.

A small module with no dependencies inside the project, so that tasks, students, teachers, filters and the
store all import the same definitions from one place.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

PAIR_SEP = "\n[SEP]\n"  # joins the two sides of a pair example (the encoder reads it as a text pair)


def text_id(text: str) -> str:
    """A short id of a text, equal for texts that differ only in case or surrounding whitespace."""
    # surrogatepass: a reply can decode to a lone surrogate (JSON "\ud800"); it still needs an id, and
    # every valid text keeps the id it always had
    return hashlib.sha1(text.strip().lower().encode("utf-8", "surrogatepass")).hexdigest()[:16]


@dataclass
class Example:
    """A labelled text. `source` is 'gold' for seed data, 'generated' for accepted samples;
    `group` ties code examples to their problem (whose tests label them)."""

    text: str
    label: str
    source: str = "gold"
    id: str = ""
    group: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            self.id = text_id(self.text)


@dataclass
class Candidate:
    """A parsed teacher sample, before or after the filters."""

    text: str
    label: str
    request_id: str
    kind: str
    verdict: str = "pending"
    reason: str = ""
    meta: dict = field(default_factory=dict)


@dataclass
class GenRequest:
    """One chat prompt. `id` is stable: the same prompt and settings give the same id."""

    messages: list[dict]
    max_tokens: int
    temperature: float
    top_p: float
    seed: int
    kind: str = "targeted"  # targeted | self_revise
    json_schema: Optional[dict] = None
    meta: dict = field(default_factory=dict)
    id: str = ""
    n: int = 1  # completions of this prompt (the prompt is paid once where the back-end supports it)

    def __post_init__(self) -> None:
        if not self.id:
            key = json.dumps(_identity(self), sort_keys=True)
            self.id = hashlib.sha1(key.encode("utf-8")).hexdigest()[:20]


def _identity(req: GenRequest) -> list:
    """What makes two requests the same (a single completion keeps the identity it always had)."""
    out = [req.messages, req.max_tokens, req.temperature, req.top_p, req.seed, req.json_schema]
    return out + [req.n] if req.n != 1 else out


def cache_key(teacher_name: str, req: GenRequest) -> str:
    """Back-end, model, messages, sampling parameters, seed and completions: equal keys, equal replies."""
    key = json.dumps([teacher_name, *_identity(req)], sort_keys=True)
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


CUT_OFF = "length"  # the finish reason of a completion stopped by max_tokens (vLLM, OpenAI API)


def finish_of(reasons: list) -> str:
    """One finish reason for an n > 1 reply: cut off when any completion was, else the first's."""
    reasons = [str(r) for r in reasons]
    return CUT_OFF if CUT_OFF in reasons else (reasons[0] if reasons else "stop")


@dataclass
class GenResult:
    request_id: str
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    latency_s: float
    choices: Optional[list[str]] = None  # every completion of an n > 1 request (`text` is the first)

    @property
    def truncated(self) -> bool:
        """Whether the reply (any of its completions) was cut off at max_tokens."""
        return self.finish_reason == CUT_OFF

    def texts(self) -> list[str]:
        """The completions of this reply: one, or each of an n > 1 request's."""
        return list(self.choices) if self.choices is not None else [self.text]


@dataclass
class Predictions:
    """Per example: predicted label, class probabilities (n, k) and an L2-normalised embedding (n, d)."""

    labels: list[str]
    probs: np.ndarray
    embeddings: np.ndarray
    evidence: list | None = None  # per example, what the task saw deciding it (codegen: programs, outcomes)
