"""Where a run is: round and stage, the stage's work done of its total (requests, training steps, examples),
tokens against the cap, accepted samples. Set by the controller, the stages, the students and the teacher
as they go; read by the live display (`loop.live`) and by what a person is told when a run stops
("interrupted during generate of round 2")."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field


@dataclass
class Where:
    round: int | None = None
    stage: str = "start"
    rounds: int | None = None  # the last round the run may reach
    done: int = 0  # the stage's work: done of total, in `unit`
    total: int = 0
    unit: str = ""
    detail: str = ""  # e.g. "epoch 2/4 loss 0.512" or "310 tokens/s"
    spent: int = 0  # teacher tokens spent by the run, of `cap`
    cap: int = 0
    accepted: int = 0
    stage_started: float = field(default_factory=time.monotonic)
    round_started: float = field(default_factory=time.monotonic)
    last_round_s: float | None = None  # how long the previous round took
    expected_tokens: int = 0  # generation: the completion tokens the forecast expects of the batch
    tokens_done: int = 0  # generation: completion tokens in the replies finished so far

    def describe(self) -> str:
        return self.stage if self.round is None else f"{self.stage} of round {self.round}"

    def begin_round(self, rnd: int) -> None:
        now = time.monotonic()
        if self.round is not None and self.round != rnd and self.round > 0:
            self.last_round_s = now - self.round_started
        self.round, self.round_started = rnd, now
        self.begin("start")

    def begin(self, stage: str) -> None:
        """A new stage: its work is not known yet."""
        self.stage, self.done, self.total, self.unit, self.detail = stage, 0, 0, "", ""
        self.expected_tokens, self.tokens_done = 0, 0
        self.stage_started = time.monotonic()

    def work(self, total: int, unit: str) -> None:
        """The current stage has `total` of `unit` to do (a stage may count several passes in turn)."""
        self.done, self.total, self.unit, self.detail = 0, total, unit, ""
        self.stage_started = time.monotonic()

    def advance(self, n: int = 1, detail: str | None = None) -> None:
        self.done = min(self.total, self.done + n) if self.total else self.done + n
        if detail is not None:
            self.detail = detail

    def stage_eta(self) -> float | None:
        """Seconds left in the stage at the rate measured so far; while the teacher generates, the forecast's
        completion tokens at the rate finished replies bring them in (a batch's replies finish unevenly)."""
        elapsed = time.monotonic() - self.stage_started
        if self.expected_tokens and self.tokens_done:
            return max(elapsed * (self.expected_tokens - self.tokens_done) / self.tokens_done, 0.0)
        if not self.total or not self.done:
            return None
        return elapsed / self.done * (self.total - self.done)

    def round_eta(self) -> float | None:
        """Seconds left in the round: what the previous round took, less the time spent in this one; the
        stage's own estimate where it says more (the baseline round has no previous one)."""
        stage = self.stage_eta()
        if self.last_round_s is None:
            return stage
        left = self.last_round_s - (time.monotonic() - self.round_started)
        return max(left, stage or 0.0, 0.0)


NOW = Where()

_OUT_SPEED = re.compile(r"output: ([\d.]+) toks/s")


class EngineBar:
    """What vLLM takes for a tqdm bar (`LLM.chat(use_tqdm=EngineBar)`): the bar over the replies counts them
    into `NOW`; wrapped around an iterable (vLLM adding its requests), it only passes the items through."""

    def __init__(self, iterable=None, total: int | None = None, **_):
        self.iterable, self.n, self._start = iterable, 0, time.monotonic()
        self.total = total
        if iterable is None and isinstance(total, int):
            NOW.work(total, "requests")

    def __iter__(self):
        return iter(self.iterable if self.iterable is not None else ())

    @property
    def format_dict(self) -> dict:
        return {"elapsed": max(time.monotonic() - self._start, 1e-6)}

    @property
    def postfix(self) -> str:
        return NOW.detail

    @postfix.setter
    def postfix(self, text: str) -> None:
        speed = _OUT_SPEED.search(text or "")  # vLLM's: completion tokens of finished replies over time
        if speed:
            NOW.tokens_done = int(float(speed.group(1)) * self.format_dict["elapsed"])
            expected = f" of ~{NOW.expected_tokens:,}" if NOW.expected_tokens else ""
            NOW.detail = f"{NOW.tokens_done:,}{expected} tokens back"

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.iterable is None:
            NOW.advance(n)

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass
