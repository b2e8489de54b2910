"""Any OpenAI-compatible chat-completions server: `vllm serve`, llama.cpp's server, Ollama, TGI, hosted APIs.

Requests run concurrently (`concurrency` per server) over the servers in `teacher.base_urls`,
each to the server with the fewest in flight (loop/teachers/fleet.py). Timeouts, dropped
connections, truncated bodies, 429 and 5xx are retried: on another server at once where one
is in rotation (the failing one cools down for `cooldown_s`), else after an exponential
backoff with jitter (or the server's Retry-After); after `max_retries` the request fails and
the batch raises a TeacherError that carries every result already received. A server with
`down_after` failed attempts in a row is down; when every server is, a TeacherDown stops the
run with what arrived saved. The API key is read
from the environment variable named by `teacher.api_key_env` and never stored or logged: it is
registered as a secret, so a server that quotes it back has it redacted from messages and logs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from loop.errors import TeacherDown, TeacherError
from loop.options import Component, option
from loop.records import GenRequest, GenResult, finish_of
from loop.redact import redact, register
from loop.teachers.base import PromptCounter
from loop.teachers.fleet import Fleet

if TYPE_CHECKING:
    from loop.config import Config, TeacherConfig

log = logging.getLogger(__name__)

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class _Retry(Exception):
    def __init__(self, why: str, delay: float | None = None):
        super().__init__(why)
        self.delay = delay


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class OpenAITeacher(Component):

    samples_n = True  # the API's `n`: the prompt is billed once for n choices

    @dataclass
    class Options:
        base_urls: list[str] = option([], "base URLs of OpenAI-compatible servers (requests balanced "
                                          "across them)")
        api_key_env: Optional[str] = option(None, "name of the environment variable holding the API key")
        concurrency: int = option(8, "requests in flight at once per server", ge=1)
        timeout_s: float = option(300.0, "seconds before a request times out (then retried)", gt=0)
        max_retries: int = option(4, "retries per request (timeouts, 429, 5xx, resets) before a TeacherError",
                                  ge=0)
        backoff_s: float = option(1.0, "first retry delay; doubles each retry, with jitter", ge=0)
        down_after: int = option(12, "failed attempts in a row after which a server is down; when every "
                                     "server is, the run stops, resumable", ge=1)
        cooldown_s: float = option(30.0, "seconds a server that failed an attempt stays out of the rotation "
                                         "while others answer", ge=0)
        repetition_penalty: Optional[float] = option(None, "sent as `repetition_penalty` (vLLM servers "
                                                           "take it; the OpenAI API does not): above 1 "
                                                           "discourages copies of the prompt's examples",
                                                     gt=0)

    @staticmethod
    def config_rules(cfg: Config) -> list[tuple[bool, str, str]]:
        env = cfg.teacher.api_key_env
        return [(bool(cfg.teacher.base_urls), "teacher.base_urls",
                 "the openai back-end needs at least one URL (or --teacher-url)"),
                (env is None or (env.isascii() and env.isidentifier()), "teacher.api_key_env",
                 "must be the name of the environment variable holding the key, not the key")]

    def __init__(self, cfg: TeacherConfig):
        if not cfg.base_urls:
            raise TeacherError("the openai back-end needs teacher.base_urls (or --teacher-url URL)")
        self.cfg = cfg
        self.urls = [u.rstrip("/") for u in cfg.base_urls]
        self.name = f"openai:{cfg.model}"
        self.counter = PromptCounter(cfg.tokenizer)
        self._schema_ok = cfg.guided_json
        self.fleet = Fleet(self.urls, cfg.down_after, cfg.cooldown_s)
        if cfg.api_key_env:
            register(os.environ.get(cfg.api_key_env))

    def _headers(self) -> dict:
        headers = {"Content-Type": "application/json"}
        if self.cfg.api_key_env:
            key = os.environ.get(self.cfg.api_key_env)
            if not key:
                raise TeacherError(f"teacher.api_key_env: environment variable {self.cfg.api_key_env} "
                                   "is not set")
            register(key)
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def prompt_tokens(self, messages: list[dict]) -> int:
        return self.counter.count(messages)

    def _payload(self, req: GenRequest) -> dict:
        body = {"model": self.cfg.model, "messages": req.messages, "max_tokens": req.max_tokens,
                "temperature": req.temperature, "top_p": req.top_p, "seed": req.seed}
        if req.n > 1:
            body["n"] = req.n
        if self.cfg.repetition_penalty is not None:
            body["repetition_penalty"] = self.cfg.repetition_penalty
        if self._schema_ok and req.json_schema is not None:
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "samples", "schema": req.json_schema,
                                                       "strict": True}}
        return body

    async def _attempt(self, client, url: str, req: GenRequest, headers: dict) -> GenResult:
        import httpx

        start = time.perf_counter()
        try:
            resp = await client.post(f"{url}/chat/completions", json=self._payload(req), headers=headers)
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise _Retry(f"{type(exc).__name__}: {exc}") from None
        if resp.status_code in RETRY_STATUS:
            raise _Retry(f"HTTP {resp.status_code}", _retry_after(resp.headers.get("retry-after")))
        if resp.status_code == 400 and self._schema_ok and req.json_schema is not None \
                and "response_format" in resp.text:
            log.warning("%s refused response_format json_schema; falling back to free text + extraction", url)
            self._schema_ok = False
            raise _Retry("response_format unsupported", 0.0)
        if resp.status_code >= 400:
            # redacted before it is cut: a server may quote the key back, and a cut key would escape redaction
            raise TeacherError(f"{url}: HTTP {resp.status_code}: {redact(resp.text)[:300]}")
        try:
            data = json.loads(resp.content)
            choices = data["choices"][:req.n]
            if not choices:
                raise IndexError("no choices")
            texts = [c["message"].get("content") or "" for c in choices]
            finish = finish_of([c.get("finish_reason") for c in choices])
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise _Retry(f"malformed response body ({len(resp.content)} bytes)") from None
        usage = data.get("usage") or {}
        # without usage, charge the worst case the request was allowed
        prompt = int(usage.get("prompt_tokens") or self.prompt_tokens(req.messages))
        completion = int(usage.get("completion_tokens") or req.max_tokens * req.n)
        return GenResult(request_id=req.id, text=texts[0], prompt_tokens=prompt, completion_tokens=completion,
                         finish_reason=finish,
                         latency_s=time.perf_counter() - start, choices=texts if req.n > 1 else None)

    def _check_down(self) -> None:
        if self.fleet.down():
            raise TeacherDown(f"the teacher is down: {self.cfg.down_after} consecutive failed attempts on "
                              f"each of {len(self.urls)} server(s) ({self.fleet.describe_down()})")

    def _failed(self, server, why: str) -> None:
        first = server.fails == 0
        self.fleet.failed(server, why)
        if server.fails == self.cfg.down_after:
            log.error("teacher server %s is down after %d failed attempts in a row (last: %s)", server.url,
                      server.fails, why)
        elif first and len(self.urls) > 1:
            log.warning("teacher server %s out of rotation for %.0fs: %s", server.url, self.cfg.cooldown_s,
                        why)

    async def _one(self, client, sem, req: GenRequest, headers: dict) -> GenResult:
        async with sem:
            why = ""
            for attempt in range(self.cfg.max_retries + 1):
                self._check_down()
                server = self.fleet.pick()
                try:
                    result = await self._attempt(client, server.url, req, headers)
                except _Retry as exc:
                    why, asked = f"{server.url}: {exc}", exc.delay
                    self._failed(server, str(exc))
                except BaseException:
                    self.fleet.released(server)
                    raise
                else:
                    self.fleet.succeeded(server)
                    return result
                self._check_down()
                if attempt == self.cfg.max_retries:
                    break
                if self.fleet.in_rotation():  # another server answers now
                    continue
                delay = asked if asked is not None else \
                    self.cfg.backoff_s * (2 ** attempt) * (0.5 + random.random())
                log.info("teacher request %s: %s; retry %d in %.1fs", req.id, why, attempt + 1, delay)
                await asyncio.sleep(delay)
            raise TeacherError(f"request {req.id} failed after {self.cfg.max_retries + 1} attempts: {why}")

    async def _batch(self, requests: list[GenRequest]) -> list:
        import httpx

        headers = self._headers()
        slots = self.cfg.concurrency * len(self.urls)
        sem = asyncio.Semaphore(slots)
        timeout = httpx.Timeout(self.cfg.timeout_s, connect=min(10.0, self.cfg.timeout_s))
        limits = httpx.Limits(max_connections=slots)
        async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
            return await asyncio.gather(*(self._one(client, sem, r, headers) for r in requests),
                                        return_exceptions=True)

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        if not requests:
            return []
        try:
            import httpx  # noqa: F401
        except ImportError:
            raise TeacherError("the openai back-end needs httpx: pip install httpx") from None
        outcomes = asyncio.run(self._batch(requests))
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if failures:
            done = [o for o in outcomes if isinstance(o, GenResult)]
            first = next((f for f in failures if isinstance(f, TeacherDown)), failures[0])
            if isinstance(first, TeacherDown):
                raise TeacherDown(f"{first} ({len(done)} of {len(requests)} requests answered first)",
                                  partial=done) from None
            if not isinstance(first, TeacherError):
                first = TeacherError(f"{type(first).__name__}: {first}")
            raise TeacherError(f"{len(failures)} of {len(requests)} requests failed; first: {first}",
                               partial=done) from None
        return outcomes

    def unload(self) -> None:
        pass
