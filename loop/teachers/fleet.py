"""The servers behind one OpenAI-compatible teacher: which one takes the next request, and which are out.

A request goes to the server in rotation with the fewest requests in flight (ties: the one
picked longest ago), so a slow or busy server gets less work than an idle one. A failed
attempt (refused, reset, timeout, 429, 5xx, malformed body) takes its server out of the
rotation for `cooldown_s`; a request then goes to another server at once. When every
server is cooling down, the one whose cool-down ends first is used (the request has waited
its backoff). A server with `down_after` failed attempts in a row is down for good; the
teacher is down when every server is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class Server:
    url: str
    in_flight: int = 0
    fails: int = 0  # failed attempts in a row
    cool_until: float = 0.0
    last_pick: float = 0.0
    why: str = ""  # the last failure
    answered: int = 0


class Fleet:
    def __init__(self, urls: list[str], down_after: int, cooldown_s: float, clock=time.monotonic):
        self.servers = [Server(u) for u in urls]
        self.down_after, self.cooldown_s, self.clock = down_after, cooldown_s, clock
        self._picks = 0

    def alive(self) -> list[Server]:
        return [s for s in self.servers if s.fails < self.down_after]

    def in_rotation(self) -> list[Server]:
        now = self.clock()
        return [s for s in self.alive() if s.cool_until <= now]

    def down(self) -> bool:
        return not self.alive()

    def pick(self) -> Server:
        """The server for the next attempt (the caller checks `down()` first)."""
        ready = self.in_rotation()
        if ready:
            server = min(ready, key=lambda s: (s.in_flight, s.last_pick))
        else:
            server = min(self.alive(), key=lambda s: s.cool_until)
        self._picks += 1
        server.last_pick = self._picks
        server.in_flight += 1
        return server

    def succeeded(self, server: Server) -> None:
        server.in_flight -= 1
        server.fails, server.cool_until = 0, 0.0
        server.answered += 1

    def failed(self, server: Server, why: str) -> None:
        server.in_flight -= 1
        server.fails += 1
        server.why = why
        server.cool_until = self.clock() + self.cooldown_s

    def released(self, server: Server) -> None:
        """An attempt that ended without a verdict on the server (cancelled, or refused for the request)."""
        server.in_flight -= 1

    def describe_down(self) -> str:
        return "; ".join(f"{s.url}: {s.fails} failed attempts in a row, last {s.why}" for s in self.servers)
