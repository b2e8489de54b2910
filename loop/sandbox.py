"""Run untrusted Python (teacher-written programs, mutants, the student's samples) against tests.

A run is three processes: loop (here), the judge and the program, the last two inside the
sandbox (`loop.isolation`: bubblewrap where available). The judge runs the tests and calls the
program's functions in the program's own process, getting only plain values back (see
`sandbox_inside/judge.py`). A pass is proven positively: the judge writes a verdict carrying a
per-run random token, after `check` returned, to a pipe only it holds; anything else (an exit,
a crash, a kill, a timeout, a forged verdict) is not a pass, and its cause is recorded.

Output is read with a cap (the excess is discarded and the outcome says `output_truncated`);
the whole sandbox dies at the time limit; nothing is left behind.
"""

from __future__ import annotations

import json
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from loop import isolation
from loop.isolation import Limits

STATUSES = ("passed", "failed", "crash", "exit_before_tests", "not_plain", "timeout", "completed")
DEFAULT_LIMITS = Limits()  # frozen, so one instance serves as every default


@dataclass
class Outcome:
    status: str  # one of STATUSES
    output: str  # the verdict's detail, then the last characters of stdout + stderr
    seconds: float
    output_truncated: bool = False

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def record(self) -> dict:
        """What a candidate's record keeps of the run: its status and whether its output was cut."""
        return {"execution": self.status, **({"output_truncated": True} if self.output_truncated else {})}


def _env(home: str) -> dict:
    return {"PATH": "/usr/bin:/bin", "HOME": home, "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}


def _folder_mb(folder: str) -> float:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total / (1024 * 1024)


def _read_capped(proc: subprocess.Popen, verdict_fd: int, limits: Limits,
                 folder: str | None = None) -> tuple[bytes, bytes, bool, str]:
    """(output tail, verdict, truncated, why it was stopped or ''): both pipes drained until EOF, the
    deadline, or (with `folder`, the built-in sandbox's working folder on the host's disk) the disk cap."""
    cap = limits.output_kb * 1024
    out, verdict, truncated = bytearray(), bytearray(), False
    deadline = time.monotonic() + limits.timeout_s
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, "out")
    sel.register(verdict_fd, selectors.EVENT_READ, "verdict")
    while sel.get_map():
        left = deadline - time.monotonic()
        if left <= 0:
            return bytes(out), bytes(verdict), truncated, "timeout"
        if folder and _folder_mb(folder) > limits.disk_mb:
            return bytes(out), bytes(verdict), truncated, "disk"
        for key, _ in sel.select(timeout=min(left, 0.25) if folder else left):
            chunk = os.read(key.fd, 65536)
            if not chunk:
                sel.unregister(key.fileobj)
            elif key.data == "verdict":
                verdict += chunk[:cap - len(verdict)]
            else:
                out += chunk
                if len(out) > cap:  # keep the tail, where tracebacks are
                    del out[:len(out) - cap]
                    truncated = True
    return bytes(out), bytes(verdict), truncated, ""


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.kill()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:  # a stuck bubblewrap: leave it to its own die-with-parent
        pass


def _status(verdict: bytes, token: str, stopped: str) -> tuple[str, str]:
    if stopped == "timeout":
        return "timeout", "the time limit was reached"
    if stopped == "disk":
        return "crash", "the disk cap was reached"
    try:
        got = json.loads(verdict.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return "crash", "the judge ended without a verdict"
    if not isinstance(got, dict) or got.get("token") != token or got.get("status") not in STATUSES:
        return "crash", "a verdict without this run's token"
    return got["status"], str(got.get("detail", ""))


def _job(program: str, test: str | None, entry_point: str, support: str, limits: Limits, token: str,
         fd: int) -> bytes:
    return json.dumps({"program": program, "test": test, "entry_point": entry_point, "support": support,
                       "token": token, "verdict_fd": fd,
                       "limits": asdict(limits)}).encode("utf-8", "surrogatepass")


def execute(program: str, test: str | None, entry_point: str = "", limits: Limits = DEFAULT_LIMITS,
            support: str = "") -> Outcome:
    """Run one program (and, with `test`, its `check`) in the sandbox; never raises for what the program does.

    `support` is trusted code (a problem's reference) the tests' helpers come from; without it the
    tests may call the program's entry point by name."""
    start = time.perf_counter()
    token = secrets.token_hex(16)
    boxed = isolation.backend() == "bwrap"
    tmp = None if boxed else tempfile.mkdtemp(prefix="loop-sandbox-")
    read_fd, write_fd = os.pipe()
    inside_fd = write_fd  # pass_fds keeps the number: the judge writes its verdict there
    try:
        if tmp:
            os.chmod(tmp, 0o777)  # the program may run as nobody
        cmd = isolation.bwrap_command(limits) if boxed else isolation.fallback_command()
        proc = subprocess.Popen(cmd, cwd=tmp or "/", env=_env(tmp or "/tmp"), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, pass_fds=(write_fd,),
                                start_new_session=True)
        os.close(write_fd)
        write_fd = -1
        try:
            proc.stdin.write(_job(program, test, entry_point, support, limits, token, inside_fd))
            proc.stdin.close()
        except BrokenPipeError:
            pass
        out, verdict, truncated, stopped = _read_capped(proc, read_fd, limits, tmp)
        _kill(proc)
        proc.stdout.close()
        status, detail = _status(verdict, token, stopped)
        text = (detail + "\n" if detail else "") + out.decode("utf-8", "replace")
        return Outcome(status, text[-4000:], time.perf_counter() - start, truncated)
    finally:
        for fd in (read_fd, write_fd):
            if fd >= 0:
                os.close(fd)
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def run_program(source: str, limits: Limits = DEFAULT_LIMITS) -> Outcome:
    """Run a script with no tests: 'completed' when it ran to its end. Never 'passed': only tests pass."""
    return execute(source, None, "", limits)


def run_tests(program: str, test: str, entry_point: str, limits: Limits = DEFAULT_LIMITS,
              support: str = "") -> Outcome:
    """Run a HumanEval-style test (`def check(candidate): assert ...`) against `program`'s `entry_point`."""
    return execute(program, test, entry_point, limits, support)


def run_many(jobs: list[tuple], limits: Limits = DEFAULT_LIMITS, workers: int | None = None) -> list[Outcome]:
    """`run_tests` for each (program, test, entry_point[, support]), in parallel sandboxes, results in
    order."""
    workers = workers or max(1, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda job: run_tests(*job[:3], limits=limits,
                                                   support=job[3] if len(job) > 3 else ""), jobs))
