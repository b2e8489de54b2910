"""Local `generate` with transformers, in batches: the CPU fallback for any HF folder or GGUF.

No constrained decoding: replies go through the task's robust JSON extraction.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from loop.assets import resolve_model
from loop.errors import TeacherError
from loop.options import Component, option
from loop.records import CUT_OFF, GenRequest, GenResult

if TYPE_CHECKING:
    from loop.config import TeacherConfig


class TransformersTeacher(Component):

    @dataclass
    class Options:
        batch_size: int = option(8, "prompts per generate() call", ge=1)
        threads: int = option(0, "CPU threads (0: all cores)", ge=0)

    def __init__(self, cfg: TeacherConfig):
        self.cfg = cfg
        self.path = resolve_model(cfg.model)
        self.name = f"transformers:{cfg.model}"
        self._model = None
        from transformers import AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(self.path)
        self.tok.padding_side = "left"
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token

    def start(self) -> None:
        """Load the model now (the run does it while round 0 trains)."""
        self._load()

    def _load(self):
        if self._model is None:
            import torch
            from transformers import AutoModelForCausalLM

            if self.cfg.threads:
                torch.set_num_threads(self.cfg.threads)
            try:
                self._model = AutoModelForCausalLM.from_pretrained(self.path, dtype=torch.float32).eval()
            except (OSError, ValueError) as exc:
                raise TeacherError(f"transformers could not load {self.path}: {exc}") from None
        return self._model

    def _text(self, messages: list[dict]) -> str:
        return self.tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def prompt_tokens(self, messages: list[dict]) -> int:
        return len(self.tok.encode(self._text(messages), add_special_tokens=False))

    def _batch(self, reqs: list[GenRequest]) -> list[GenResult]:
        import torch

        model = self._load()
        enc = self.tok([self._text(r.messages) for r in reqs], return_tensors="pt", padding=True,
                       add_special_tokens=False)
        torch.manual_seed(reqs[0].seed)
        r0 = reqs[0]
        sample = r0.temperature > 0
        start = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=max(r.max_tokens for r in reqs), do_sample=sample,
                                 temperature=r0.temperature if sample else None,
                                 top_p=r0.top_p if sample else None, pad_token_id=self.tok.pad_token_id)
        latency = time.perf_counter() - start
        results = []
        width = enc["input_ids"].shape[1]
        for i, req in enumerate(reqs):
            gen = out[i, width:][: req.max_tokens]
            ids = gen.tolist()
            stop = self.tok.eos_token_id
            n = ids.index(stop) + 1 if stop in ids else len(ids)
            results.append(GenResult(request_id=req.id,
                                     text=self.tok.decode(ids[:n], skip_special_tokens=True),
                                     prompt_tokens=int(enc["attention_mask"][i].sum()), completion_tokens=n,
                                     finish_reason="stop" if n < len(ids) or stop in ids else CUT_OFF,
                                     latency_s=latency))
        return results

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        results: list[GenResult] = []
        size = self.cfg.batch_size
        for start in range(0, len(requests), size):
            try:
                results.extend(self._batch(requests[start:start + size]))
            except RuntimeError as exc:
                raise TeacherError(f"transformers generation failed: {exc}", partial=results) from None
        return results

    def unload(self) -> None:
        self._model = None
