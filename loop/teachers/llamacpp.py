"""Local GGUF through llama-cpp-python (optional extra, imported lazily).

Requests run one after another (llama.cpp's Python binding does not batch); output is
constrained to the task's JSON schema through llama.cpp's grammar support.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from loop.assets import resolve_gguf
from loop.errors import TeacherError
from loop.options import Component, option
from loop.records import GenRequest, GenResult
from loop.teachers.base import PromptCounter

if TYPE_CHECKING:
    from loop.config import TeacherConfig

INSTALL_HINT = ('CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON '
                '-DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" '
                'pip install llama-cpp-python==0.3.36')


class LlamaCppTeacher(Component):

    @dataclass
    class Options:
        max_model_len: int = option(2048, "context length of the engine", ge=1)
        threads: int = option(0, "CPU threads (0: all cores)", ge=0)

    def __init__(self, cfg: TeacherConfig):
        self.cfg = cfg
        self.path = resolve_gguf(cfg.model)
        self.name = f"llamacpp:{cfg.model}"
        self._llm = None
        self._formatter = None  # the GGUF's chat template, built once

    def start(self) -> None:
        """Load the model now (the run does it while round 0 trains)."""
        self._engine()

    def _engine(self):
        if self._llm is None:
            try:
                from llama_cpp import Llama
            except ImportError as exc:
                raise TeacherError(f"the llamacpp back-end needs llama-cpp-python ({exc}): "
                                   f"{INSTALL_HINT}") from None
            self._llm = Llama(model_path=self.path, n_ctx=self.cfg.max_model_len, seed=self.cfg.seed,
                              n_threads=self.cfg.threads or os.cpu_count(), verbose=False)
        return self._llm

    def prompt_tokens(self, messages: list[dict]) -> int:
        """Exact count through the GGUF's own chat template; the byte bound if it has none."""
        llm = self._engine()
        if self._formatter is None:
            template = llm.metadata.get("tokenizer.chat_template")
            if not template:
                return PromptCounter().count(messages)
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            vocab = llm._model
            self._formatter = Jinja2ChatFormatter(template=template,
                                                  eos_token=vocab.token_get_text(vocab.token_eos()),
                                                  bos_token=vocab.token_get_text(vocab.token_bos()))
        prompt = self._formatter(messages=messages).prompt
        return len(llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True))

    def _one(self, req: GenRequest) -> GenResult:
        llm = self._engine()
        fmt = None
        if self.cfg.guided_json and req.json_schema is not None:
            fmt = {"type": "json_object", "schema": req.json_schema}
        start = time.perf_counter()
        out = llm.create_chat_completion(messages=req.messages, max_tokens=req.max_tokens,
                                         temperature=req.temperature, top_p=req.top_p, seed=req.seed,
                                         response_format=fmt)
        usage = out.get("usage") or {}
        choice = out["choices"][0]
        return GenResult(request_id=req.id, text=choice["message"].get("content") or "",
                         prompt_tokens=int(usage.get("prompt_tokens", 0)),
                         completion_tokens=int(usage.get("completion_tokens", 0)),
                         finish_reason=str(choice.get("finish_reason")),
                         latency_s=time.perf_counter() - start)

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        results: list[GenResult] = []
        for req in requests:
            try:
                results.append(self._one(req))
            except (RuntimeError, ValueError) as exc:
                raise TeacherError(f"llama.cpp generation failed: {exc}", partial=results) from None
        return results

    def unload(self) -> None:
        if self._llm is not None:
            self._llm.close()
            self._llm = None
