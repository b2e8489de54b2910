"""The judge: `python -I -S -B judge.py`, the first process in the sandbox. It reads its job (JSON on
stdin), starts the program in its own process (`child.py`), runs the tests here, and writes its
verdict with the run's token to a file descriptor that only it holds.

The tests see the program only through a proxy: each call of `candidate` is sent to the program's
process and only a plain value comes back. Helpers the tests use (HumanEval/32's `poly`) come from
the job's `support`, the problem's trusted reference, run here; never from the program. So the
program cannot end the tests early (its exits end its own process, and the tests then have no
answer), cannot fake equality (results are rebuilt here from plain values), and cannot write the
verdict (it has no handle on that descriptor, and this process is not dumpable: its memory and
descriptors are out of the program's reach).

Verdicts: passed | failed (an assertion or an exception in the tests) | crash (the program failed
while being defined, or the judge could not run) | exit_before_tests (the program's process ended
before the tests did) | not_plain (a result that is not a plain value) | timeout (CPU limit).
"""

import builtins
import json
import os
import signal
import subprocess
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rlimits  # noqa: E402
import wire  # noqa: E402

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "child.py")


class Stop(BaseException):
    """Ends the tests with a verdict; a BaseException so that `except Exception` in a test cannot
    swallow it."""

    def __init__(self, status: str, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


class Program:
    """The program's process, seen from the judge."""

    def __init__(self, limits: dict):
        to_child, self.write_fd = os.pipe()
        self.read_fd, from_child = os.pipe()
        self.proc = subprocess.Popen([sys.executable, "-I", "-S", "-B", CHILD, str(to_child), str(from_child),
                                      json.dumps(limits)], stdin=subprocess.DEVNULL,
                                     pass_fds=(to_child, from_child), close_fds=True)
        os.close(to_child)
        os.close(from_child)
        self.stopped: Stop | None = None  # sticky: once the program is gone, every later call fails too

    def ask(self, message):
        if self.stopped is not None:
            raise self.stopped
        try:
            wire.send(self.write_fd, message)
            return wire.recv(self.read_fd)
        except (EOFError, BrokenPipeError):
            self.stopped = Stop(*self.ended())
        except wire.WireError as exc:
            self.stopped = Stop("not_plain", str(exc))
        raise self.stopped

    def ended(self) -> tuple[str, str]:
        """Why the program's process stopped answering."""
        try:
            code = self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return "exit_before_tests", "the program closed its channel"
        if code in (-signal.SIGXCPU, -signal.SIGKILL):
            return "timeout", "CPU time limit"
        return "exit_before_tests", f"the program's process ended (status {code}) before the tests did"


class Proxy:
    """A function of the program, callable from the tests with plain arguments."""

    def __init__(self, program: Program, name: str):
        self.program, self.name = program, name

    def __call__(self, *args, **kwargs):
        if not wire.plain(args) or not wire.plain(kwargs):
            raise TypeError(f"the tests passed {self.name} an argument that is not a plain value")
        reply = self.program.ask(("call", self.name, args, kwargs))
        if reply[0] == "return":
            return reply[1]
        if reply[0] == "not_plain":
            self.program.stopped = Stop("not_plain", f"{self.name} returned a {reply[1]}, not a plain value")
            raise self.program.stopped
        exc = _exception(reply[1], reply[2])
        if isinstance(exc, Stop):
            self.program.stopped = exc
        raise exc


def _exception(name, message) -> BaseException:
    """The program's exception, rebuilt here: a built-in Exception type by name, else a generic one.
    An exit the program raised inside a call ends its tests."""
    kind = getattr(builtins, name, None) if isinstance(name, str) else None
    if isinstance(kind, type) and issubclass(kind, Exception):
        try:
            return kind(message)
        except Exception:  # noqa: BLE001 -- a type whose constructor wants other arguments
            pass
    if name in ("SystemExit", "KeyboardInterrupt", "GeneratorExit"):
        return Stop("exit_before_tests", f"the program raised {name} during the tests")
    return RuntimeError(f"{name}: {message}")


def _nondumpable() -> None:
    """No ptrace, no /proc/<pid>/mem or /fd for anyone but root: the program cannot read this process."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0
    except Exception:  # noqa: BLE001 -- best effort; the seccomp filter also denies ptrace
        pass


def judge(job: dict, program: Program) -> tuple[str, str]:
    """Define the program, then (when there are tests) run `check` on its entry point."""
    try:
        reply = program.ask(("program", job["program"]))
    except Stop as stop:
        return stop.status, stop.detail
    if reply[0] == "error":
        ended = reply[1] in ("SystemExit", "KeyboardInterrupt", "GeneratorExit")
        return "exit_before_tests" if ended else "crash", f"{reply[1]}: {reply[2]}"
    if job.get("test") is None:
        return "completed", ""
    if job["entry_point"] not in reply[1]:
        return "crash", f"the program does not define {job['entry_point']}"
    candidate = Proxy(program, job["entry_point"])
    # the tests' helpers (HumanEval/32's `poly`) come from the trusted reference, never from the program
    namespace = {"__name__": "__check__", "__builtins__": builtins}
    try:
        if job.get("support"):
            exec(compile(job["support"], "reference.py", "exec"), namespace)
        else:
            namespace[job["entry_point"]] = candidate
        exec(compile(job["test"], "test.py", "exec"), namespace)
        namespace["check"](candidate)
    except Stop as stop:
        return stop.status, stop.detail
    except BaseException:  # noqa: BLE001 -- a failing test, whatever it raised
        return "failed", "".join(traceback.format_exc(limit=-3))[-2000:]
    if program.stopped is not None:  # the tests swallowed the program's end; still no pass
        return program.stopped.status, program.stopped.detail
    return "passed", ""


def main() -> None:
    job = json.loads(sys.stdin.read())
    sys.stdin.close()
    _nondumpable()
    program = Program(job["limits"])
    rlimits.apply(job["limits"])
    try:
        status, detail = judge(job, program)
    except MemoryError:
        status, detail = "crash", "the judge ran out of memory"
    verdict = json.dumps({"token": job["token"], "status": status, "detail": detail})
    os.write(job["verdict_fd"], verdict.encode())
    os._exit(0)


if __name__ == "__main__":
    main()
