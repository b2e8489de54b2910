"""The teacher contract: a batch of chat requests in, one result per request out."""

from __future__ import annotations

from typing import Optional, Protocol

from loop.records import GenRequest, GenResult


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
