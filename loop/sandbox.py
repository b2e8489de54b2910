"""Run untrusted Python (teacher-written programs, mutants) and its tests, contained.

Each program runs in its own subprocess (`python -I -S -B`, no user site, no inherited
environment: a scrubbed one with PATH, HOME and LANG only), in a fresh temporary
directory that is removed afterwards, in its own session (the whole process group is
killed on timeout), with limits on CPU seconds, memory, file size, open files and
processes, without network (a private network namespace where the kernel allows it,
and socket creation blocked in any case), as `nobody` when loop runs as root. See
`sandbox_child.py` for the inside.

`run_tests` runs a HumanEval-style test (`def check(candidate): assert ...`) against
a program; `run_many` runs a batch in parallel, one subprocess per job.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

CHILD = Path(__file__).with_name("sandbox_child.py")


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 10.0  # wall clock
    cpu_s: int = 5
    memory_mb: int = 512
    file_mb: int = 4
    processes: int = 8
    require_netns: bool = False  # fail rather than run where no private network namespace can be made


@dataclass
class Outcome:
    status: str  # passed | failed | timeout
    output: str  # last characters of stdout + stderr
    seconds: float

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def _env(home: str) -> dict:
    return {"PATH": "/usr/bin:/bin", "HOME": home, "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}


def run_program(source: str, limits: Limits = Limits()) -> Outcome:
    """Run `source` as a script in the sandbox; 'passed' means exit status 0."""
    tmp = tempfile.mkdtemp(prefix="loop-sandbox-")
    try:
        os.chmod(tmp, 0o777)  # the child may run as nobody
        prog = Path(tmp) / "program.py"
        prog.write_text(source, encoding="utf-8")
        os.chmod(prog, 0o644)
        cmd = [sys.executable, "-I", "-S", "-B", str(CHILD), json.dumps(asdict(limits)), str(prog)]
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=tmp, env=_env(tmp), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=limits.timeout_s)
            _kill_group(proc)  # stragglers the program may have left behind
            # the CPU limit ends a busy loop with SIGXCPU (then SIGKILL)
            status = ("passed" if proc.returncode == 0 else
                      "timeout" if proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL) else "failed")
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            out, _ = proc.communicate()
            status = "timeout"
        text = (out or b"").decode("utf-8", "replace")
        return Outcome(status=status, output=text[-2000:], seconds=time.perf_counter() - start)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def with_tests(program: str, test: str, entry_point: str) -> str:
    """A script that defines the program, then runs the problem's `check` on its entry point."""
    return f"{program}\n\n{test}\n\ncheck({entry_point})\n"


def run_tests(program: str, test: str, entry_point: str, limits: Limits = Limits()) -> Outcome:
    return run_program(with_tests(program, test, entry_point), limits)


def run_many(jobs: list[tuple[str, str, str]], limits: Limits = Limits(), workers: int | None = None) -> list[Outcome]:
    """`run_tests` for each (program, test, entry_point), in parallel subprocesses, results in order."""
    workers = workers or max(1, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda job: run_tests(*job, limits=limits), jobs))
