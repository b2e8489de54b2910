"""A fixed-latency OpenAI-compatible server on 127.0.0.1, for the fleet benchmark and tests.

It answers chat completions after `latency` seconds with `slots` requests served at once
(more wait their turn, as on a GPU at its batch limit). With `die_after` N it answers N
requests and then exits abruptly (os._exit) when the next one arrives, dropping every
connection in flight: a server killed mid-round.

    python -m loop.bench.fakeserver --latency 0.2 --slots 4 [--die-after N]

prints its base URL on the first line of stdout and serves until killed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def reply_for(body: dict, label: str = "neutral") -> dict:
    """One choice per `n` (the prompt billed once, 12 completion tokens per choice, fewer and cut off where
    max_tokens is lower), as vLLM's server does."""
    n, each = int(body.get("n", 1)), min(12, int(body.get("max_tokens") or 12))
    texts = [json.dumps({"samples": [{"text": f"served reply for {len(body['messages'])} messages, "
                                              f"seed {body.get('seed')}" + (f", choice {k}" if k else ""),
                                      "label": label}]}) for k in range(n)]
    prompt = sum(len(m["content"].split()) for m in body["messages"])
    finish = "stop" if each == 12 else "length"
    return {"id": "x", "object": "chat.completion", "model": body["model"],
            "choices": [{"index": k, "message": {"role": "assistant", "content": text},
                         "finish_reason": finish} for k, text in enumerate(texts)],
            "usage": {"prompt_tokens": prompt, "completion_tokens": each * n,
                      "total_tokens": prompt + each * n}}


def make_server(latency: float, slots: int, die_after: int | None = None) -> ThreadingHTTPServer:
    gate = threading.BoundedSemaphore(slots)
    lock = threading.Lock()
    seen = [0]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                seen[0] += 1
                if die_after is not None and seen[0] > die_after:
                    os._exit(9)
            with gate:
                time.sleep(latency)
            data = json.dumps(reply_for(body)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


def spawn(latency: float, slots: int, die_after: int | None = None) -> tuple[subprocess.Popen, str]:
    """One server in a process of its own (so that it can be killed for real); returns it and its URL."""
    cmd = [sys.executable, "-m", "loop.bench.fakeserver", "--latency", str(latency), "--slots", str(slots)]
    if die_after is not None:
        cmd += ["--die-after", str(die_after)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    url = proc.stdout.readline().strip()
    if not url.startswith("http://"):
        proc.kill()
        raise RuntimeError(f"the fake server did not start (exit {proc.wait()})")
    return proc, url


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--slots", type=int, default=4)
    ap.add_argument("--die-after", type=int)
    args = ap.parse_args(argv)
    httpd = make_server(args.latency, args.slots, args.die_after)
    sys.stdout.write(f"http://127.0.0.1:{httpd.server_address[1]}/v1\n")
    sys.stdout.flush()
    httpd.serve_forever()


if __name__ == "__main__":
    main()
