"""The API key never reaches the CLI's output, log records, the run store or MLflow: not when a server
echoes it back in an error, and not when it is given where the name of its environment variable belongs."""

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from test_runs_resume import cli  # noqa: F401  (fixture)

KEY = "sk-echo-4d9b27c1e0aa58f3"


class EchoingServer:
    """An OpenAI-compatible endpoint that refuses every request, quoting the credentials it was sent."""

    def __init__(self):
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                body = json.dumps({"error": {"message": f"Incorrect API key provided: "
                                                        f"{self.headers.get('Authorization')}"}}).encode()
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def leaks(folder, secret: str) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def test_a_key_echoed_by_the_server_is_redacted_from_output_and_logs(cli, tmp_path, monkeypatch, caplog):  # noqa: F811
    monkeypatch.setenv("LOOP_TEST_KEY", KEY)
    caplog.set_level(logging.DEBUG)
    with EchoingServer() as server:
        res = cli("run", "--config", "CONFIG", "--teacher-url", server.url, "--name", "s",
                  "--set", "teacher.api_key_env=LOOP_TEST_KEY", "--set", "budget.tokens=60000")
    assert res.exit_code == 1 and "HTTP 401" in res.output, res.output
    assert KEY not in res.output and "***" in res.output
    logging.getLogger("loop.anything").warning("a line that quotes the key: %s", KEY)
    assert caplog.records and KEY not in caplog.text
    assert all(KEY not in r.getMessage() for r in caplog.records)
    assert not leaks(tmp_path, KEY)  # run store, MLflow database and artifacts


@pytest.mark.parametrize("command", ["run", "config"])
def test_a_key_given_as_api_key_env_is_refused_and_never_stored(cli, tmp_path, command):  # noqa: F811
    args = [command, "--config", "CONFIG", "--set", "teacher.base_urls=[http://127.0.0.1:9/v1]",
            "--set", f"teacher.api_key_env={KEY}"] + (["--name", "k"] if command == "run" else [])
    res = cli(*args)
    assert res.exit_code == 1 and "ConfigError" in res.output and "teacher.api_key_env" in res.output, \
        res.output
    assert KEY not in res.output
    assert not leaks(tmp_path, KEY)


def test_a_variable_name_is_a_valid_api_key_env(cli):  # noqa: F811
    res = cli("config", "--config", "CONFIG", "--set", "teacher.base_urls=[http://127.0.0.1:9/v1]",
              "--set", "teacher.api_key_env=TEACHER_KEY_2")
    assert res.exit_code == 0 and "api_key_env: TEACHER_KEY_2" in res.output, res.output
