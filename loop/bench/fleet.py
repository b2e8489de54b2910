"""`loop bench teacher --servers K`: loop's OpenAI client over 1..K servers, requests per second.

Each server is a fixed-latency fake (loop/bench/fakeserver.py) serving `slots` requests at
once, so one server's throughput is slots / latency and the figure measures what the client
makes of a fleet: how evenly it spreads the load, and what its own overhead costs. Medians
over repeats; the speed-up is against one server in the same run.
"""

from __future__ import annotations

import logging
import statistics
import time

from loop.bench.fakeserver import spawn
from loop.config import section
from loop.records import GenRequest
from loop.teachers.openai import OpenAITeacher

log = logging.getLogger(__name__)


def _requests(n: int) -> list[GenRequest]:
    return [GenRequest(messages=[{"role": "user", "content": f"prompt {i}"}], max_tokens=16, temperature=0.0,
                       top_p=1.0, seed=i) for i in range(n)]


def run_fleet_bench(servers: int, n: int, latency: float, slots: int, repeats: int) -> list[dict]:
    procs = [spawn(latency, slots) for _ in range(servers)]
    try:
        urls = [url for _, url in procs]
        rows = []
        for k in range(1, servers + 1):
            teacher = OpenAITeacher(section("teacher", backend="openai", model="fake", base_urls=urls[:k],
                                            concurrency=slots))
            rates = []
            for _ in range(repeats):
                start = time.perf_counter()
                results = teacher.generate(_requests(n))
                rates.append(len(results) / (time.perf_counter() - start))
            share = [s.answered for s in teacher.fleet.servers]
            rows.append({"servers": k, "requests_per_s": statistics.median(rates), "rates": rates,
                         "ideal_per_s": k * slots / latency, "answered_by_server": share})
            log.info("%d server(s): %.1f requests/s (ideal %.1f)", k, rows[-1]["requests_per_s"],
                     rows[-1]["ideal_per_s"])
        for row in rows:
            row["speedup"] = row["requests_per_s"] / rows[0]["requests_per_s"]
        return rows
    finally:
        for proc, _ in procs:
            proc.kill()
            proc.wait()
