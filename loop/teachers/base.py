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


def cache_key(teacher_name: str, req: GenRequest) -> str:
    """Back-end, model, messages, sampling parameters and seed: equal keys, equal replies."""
    key = json.dumps([teacher_name, req.messages, req.max_tokens, req.temperature, req.top_p, req.seed,
                      req.json_schema], sort_keys=True)
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass
class GenResult:
    request_id: str
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    latency_s: float


class PromptCounter:
    """Prompt tokens of a chat, for reserving budget before a call.

    Exact with a tokenizer (`teacher.tokenizer`: packaged:<name>, a folder or a hub id);
    otherwise an upper bound: no token is shorter than one UTF-8 byte, plus an allowance
    for the chat template's special tokens. The budget settles to the server's usage.
    """

    PER_MESSAGE, PER_CHAT = 8, 16

    def __init__(self, tokenizer: Optional[str] = None):
        self._tok = None
        if tokenizer:
            from transformers import AutoTokenizer

            from loop.assets import resolve_model

            self._tok = AutoTokenizer.from_pretrained(resolve_model(tokenizer))

    def count(self, messages: list[dict]) -> int:
        if self._tok is not None:
            text = self._tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            return len(self._tok.encode(text, add_special_tokens=False))
        return sum(len(m["content"].encode("utf-8")) + self.PER_MESSAGE for m in messages) + self.PER_CHAT


class Teacher(Protocol):
    name: str

    def prompt_tokens(self, messages: list[dict]) -> int:
        """Exact prompt token count of a chat (for reserving budget before a call)."""

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        """One result per request, in order."""

    def unload(self) -> None:
        """Free the engine's memory (before the student trains on the same device)."""
