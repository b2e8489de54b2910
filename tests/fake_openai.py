"""A local OpenAI-compatible HTTP server (127.0.0.1 only) that can misbehave on purpose.

`faults` is a list consumed one per request: "429" (with Retry-After), "500", "503",
"drop" (close the connection without answering), "truncate" (half a JSON body),
"slow:<seconds>", or None for a normal answer. Every request body is recorded.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from loop.bench.fakeserver import reply_for


class FakeOpenAI:
    def __init__(self, faults=None):
        self.faults = list(faults or [])
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.bodies.append(body)
                    server.headers.append(dict(self.headers))
                    fault = server.faults.pop(0) if server.faults else None
                if fault == "drop":
                    self.connection.close()
                    return
                if fault and fault.startswith("slow:"):
                    time.sleep(float(fault[5:]))
                if fault in ("429", "500", "503"):
                    self.send_response(int(fault))
                    if fault == "429":
                        self.send_header("Retry-After", "0.05")
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")
                    return
                data = json.dumps(reply_for(body)).encode()
                if fault == "truncate":
                    data = data[: len(data) // 2]
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
