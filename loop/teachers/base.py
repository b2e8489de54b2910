"""The teacher contract: a batch of chat requests in, one result per request out."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Optional, Protocol


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

    def __post_init__(self) -> None:
        if not self.id:
            key = json.dumps([self.messages, self.max_tokens, self.temperature, self.top_p, self.seed,
                              self.json_schema], sort_keys=True)
            self.id = hashlib.sha1(key.encode("utf-8")).hexdigest()[:20]


@dataclass
class GenResult:
    request_id: str
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    latency_s: float


class Teacher(Protocol):
    name: str

    def prompt_tokens(self, messages: list[dict]) -> int:
        """Exact prompt token count of a chat (for reserving budget before a call)."""

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        """One result per request, in order."""

    def unload(self) -> None:
        """Free the engine's memory (before the student trains on the same device)."""
