"""The student as its own reviser (SEED's self-revise): a Teacher over the causal-LM student.

It answers chat requests with the student's current weights, so a reply depends on the
round: its name carries a digest of the trained adapter, which keeps cached replies of one
round's student from answering for another's. Its tokens count against the budget like
any teacher's (they are compute, not money).
"""

from __future__ import annotations

import time

from loop.records import GenRequest, GenResult


class StudentReviser:
    def __init__(self, student):
        self.student = student

    @property
    def name(self) -> str:
        return f"student:{self.student.cfg.model}:{self.student.fingerprint()}"

    def prompt_tokens(self, messages: list[dict]) -> int:
        text = self.student.tokenizer.apply_chat_template(messages, tokenize=False,
                                                          add_generation_prompt=True)
        return self.student.count_tokens(text)

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        if not requests:
            return []
        start = time.perf_counter()
        limit = max(r.max_tokens for r in requests)
        replies = self.student.chat([r.messages for r in requests], limit, requests[0].temperature,
                                    requests[0].seed)
        latency = time.perf_counter() - start
        return [GenResult(request_id=r.id, text=text, prompt_tokens=self.prompt_tokens(r.messages),
                          completion_tokens=min(r.max_tokens, self.student.count_tokens(text)),
                          finish_reason="stop", latency_s=latency) for r, text in zip(requests, replies)]

    def unload(self) -> None:
        """Nothing to free: the student stays loaded."""
