"""The teacher contract: a batch of chat requests in, one result per request out."""

from __future__ import annotations

from typing import Optional, Protocol

from loop.records import GenRequest, GenResult, finish_of


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


def takes_n(teacher) -> bool:
    """Whether the back-end samples a prompt n times in one call, billing the prompt once (`samples_n`)."""
    return bool(getattr(teacher, "samples_n", False))


def worst_prompt(teacher, req: GenRequest, prompt_tokens: int) -> int:
    """Prompt tokens a request may cost: once with n, once per completion without it."""
    return prompt_tokens if takes_n(teacher) else prompt_tokens * req.n


def sample(teacher, requests: list[GenRequest]) -> list[GenResult]:
    """`teacher.generate`, with each n > 1 request sent as n separate ones (seeds seed, seed + 1, ...) to a
    back-end that cannot sample a prompt several times, and the completions merged back into one result
    per request (its tokens summed: every copy paid its prompt). A TeacherError carries the merged
    results of whatever arrived."""
    from dataclasses import replace

    from loop.errors import TeacherError

    if takes_n(teacher) or all(r.n == 1 for r in requests):
        return teacher.generate(requests)
    copies = {req.id: [replace(req, n=1, seed=req.seed + k, id="") for k in range(req.n)]
              if req.n > 1 else [req] for req in requests}
    flat = [c for group in copies.values() for c in group]
    try:
        return _merged(requests, copies, teacher.generate(flat))
    except TeacherError as exc:
        exc.partial = _merged(requests, copies, exc.partial)
        raise


def _merged(requests: list[GenRequest], copies: dict, results: list[GenResult]) -> list[GenResult]:
    by_id = {r.request_id: r for r in results}
    out = []
    for req in requests:
        got = [by_id[c.id] for c in copies[req.id] if c.id in by_id]
        if not got:
            continue
        if req.n == 1:
            out.append(got[0])
            continue
        out.append(GenResult(request_id=req.id, text=got[0].text,
                             prompt_tokens=sum(g.prompt_tokens for g in got),
                             completion_tokens=sum(g.completion_tokens for g in got),
                             finish_reason=finish_of([g.finish_reason for g in got]),
                             latency_s=max(g.latency_s for g in got),
                             choices=[g.text for g in got]))
    return out
