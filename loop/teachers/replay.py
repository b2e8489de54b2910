"""Cassettes: recorded request -> response pairs, for deterministic tests and exact re-runs.

A cassette is JSONL, one {"id", "messages", "max_tokens", ..., "response": {...}} per line,
keyed by the request id (a hash of messages, sampling parameters and seed). `Recorder`
wraps any back-end and appends what it answers; `ReplayTeacher` answers from a cassette
and fails clearly on a request it has not seen.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from loop.errors import TeacherError
from loop.options import Component, option
from loop.records import GenRequest, GenResult
from loop.teachers.base import PromptCounter

if TYPE_CHECKING:
    from loop.config import Config, TeacherConfig


def read_cassette(path: Path) -> dict[str, dict]:
    if not path.is_file():
        raise TeacherError(f"teacher.cassette: {path} not found")
    entries = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                entries[entry["id"]] = entry
            except (json.JSONDecodeError, KeyError, TypeError):
                raise TeacherError(f"{path}:{lineno}: not a cassette entry") from None
    return entries


class ReplayTeacher(Component):

    @dataclass
    class Options:
        cassette: Optional[str] = option(None, "JSONL cassette of recorded request -> response pairs",
                                         path=True)

    @staticmethod
    def config_rules(cfg: Config) -> list[tuple[bool, str, str]]:
        return [(bool(cfg.teacher.cassette), "teacher.cassette", "the replay back-end needs a cassette file")]

    def __init__(self, cfg: TeacherConfig):
        self.path = Path(cfg.cassette or "")
        self.entries = read_cassette(self.path)
        self.name = f"replay:{self.path.name}"
        self._prompt_counts = {json.dumps(e["messages"], sort_keys=True): int(e["response"]["prompt_tokens"])
                               for e in self.entries.values()}

    def prompt_tokens(self, messages: list[dict]) -> int:
        # the recorded count where this prompt was recorded, else the byte bound
        known = self._prompt_counts.get(json.dumps(messages, sort_keys=True))
        return known if known is not None else PromptCounter().count(messages)

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        missing = [r.id for r in requests if r.id not in self.entries]
        if missing:
            raise TeacherError(f"{self.path}: no recorded response for {len(missing)} of {len(requests)} "
                               f"requests (first: {missing[0]}); record them with --record")
        return [GenResult(request_id=r.id, latency_s=0.0,
                          **{k: v for k, v in self.entries[r.id]["response"].items() if k != "latency_s"})
                for r in requests]

    def unload(self) -> None:
        pass


class Recorder:
    """Wraps a teacher; appends each answered request and its response to a cassette. A cassette holds single
    completions: a request with n > 1 is sent (and recorded) as its n copies, as for back-ends without n."""

    def __init__(self, inner, path: Path):
        self.inner, self.path = inner, path
        self.name = inner.name
        path.parent.mkdir(parents=True, exist_ok=True)

    def prompt_tokens(self, messages: list[dict]) -> int:
        return self.inner.prompt_tokens(messages)

    def _append(self, pairs: list[tuple[GenRequest, GenResult]]) -> None:
        with open(self.path, "a", encoding="utf-8") as fh:
            for req, res in pairs:
                entry = {"id": req.id, "messages": req.messages, "max_tokens": req.max_tokens,
                         "temperature": req.temperature, "top_p": req.top_p, "seed": req.seed,
                         "teacher": self.inner.name, "response": {k: v for k, v in asdict(res).items()
                                                                  if k != "request_id"}}
                fh.write(json.dumps(entry) + "\n")

    def generate(self, requests: list[GenRequest]) -> list[GenResult]:
        by_id = {r.id: r for r in requests}
        try:
            results = self.inner.generate(requests)
        except TeacherError as exc:
            self._append([(by_id[res.request_id], res) for res in exc.partial])
            raise
        self._append([(by_id[res.request_id], res) for res in results])
        return results

    def unload(self) -> None:
        self.inner.unload()
