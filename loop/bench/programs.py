"""Hostile programs: tricks that try to pass wrong code, and escapes that try to get out of the sandbox.

`FALSE_PASSES` are wrong solutions of `add` (they return a - b) with a trick that, in a harness
that trusts exit status 0 or `==`, makes the test `assert candidate(2, 3) == 5` pass. None may pass.
`escapes()` are programs that try to read, write, spawn, connect, signal, outlive or flood; each
prints `ESCAPED <what>` when an attempt works, and some are also checked from outside (files
that appeared, time taken, output kept, siblings harmed). None may escape. The tests and
`loop bench reliability` both run them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

WRONG = "def add(a, b):\n    return a - b\n"
CHECK = "def check(candidate):\n    assert candidate(2, 3) == 5\n"
ADD = "def add(a, b):\n    return a + b\n"

FALSE_PASSES = {
    "sys.exit(0) after the definition": WRONG + "import sys\nsys.exit(0)\n",
    "raise SystemExit": WRONG + "raise SystemExit\n",
    "os._exit(0) at module level": WRONG + "import os\nos._exit(0)\n",
    "os._exit(0) inside the function": "import os\ndef add(a, b):\n    os._exit(0)\n",
    "sys.exit(0) inside the function": "import sys\ndef add(a, b):\n    sys.exit(0)\n",
    "excepthook exits 0": WRONG + "import os, sys\nsys.excepthook = lambda *a: os._exit(0)\n",
    "atexit os._exit(0)": WRONG + "import atexit, os\natexit.register(os._exit, 0)\n",
    "thread exits later": WRONG + ("import os, threading, time\n"
                                   "threading.Thread(target=lambda: (time.sleep(0.05), os._exit(0)))"
                                   ".start()\n"),
    "__del__ exits": WRONG + ("import os\nclass K:\n    def __del__(self):\n        os._exit(0)\n"
                              "k = K()\ndel k\n"),
    "__del__ exits during the test": ("import os\nclass K:\n    def __del__(self):\n        os._exit(0)\n"
                                      "def add(a, b):\n    K()\n    return a - b\n"),
    "settrace exits when check is called": WRONG + (
        "import os, sys\n"
        "def tracer(frame, event, arg):\n"
        "    if frame.f_code.co_name == 'check':\n        os._exit(0)\n    return tracer\n"
        "sys.settrace(tracer)\n"),
    "result equal to everything": ("class Yes:\n    def __eq__(self, other):\n        return True\n"
                                   "    __hash__ = object.__hash__\n"
                                   "def add(a, b):\n    return Yes()\n"),
    "int subclass equal to everything": ("class Liar(int):\n    def __eq__(self, other):\n"
                                         "        return True\n"
                                         "    __hash__ = int.__hash__\n"
                                         "def add(a, b):\n    return Liar(a - b)\n"),
    "raise KeyboardInterrupt in the call": "def add(a, b):\n    raise KeyboardInterrupt\n",
    "patched builtins": WRONG + ("import builtins\n"
                                 "builtins.AssertionError = type('A', (BaseException,), {})\n"),
    "frame walk to the tests": ("import sys\ndef add(a, b):\n    f = sys._getframe()\n"
                                "    while f.f_back:\n        f = f.f_back\n"
                                "        f.f_locals.pop('check', None)\n"
                                "    return a - b\n"),
    "forged verdict on every descriptor": WRONG + (
        "import os, json\n"
        "msg = json.dumps({'token': '0' * 32, 'status': 'passed', 'detail': ''}).encode()\n"
        "for fd in range(0, 64):\n    try:\n        os.write(fd, msg)\n    except OSError:\n        pass\n"
        "os._exit(0)\n"),
    "kill the judge": WRONG + ("import os, signal\n"
                               "def add(a, b):\n    os.kill(os.getppid(), signal.SIGKILL)\n"
                               "    return a - b\n"),
    "print PASSED and exit": WRONG + "print('passed')\nimport os\nos._exit(0)\n",
    "endless loop": "def add(a, b):\n    while True:\n        pass\n",
    "generator result": "def add(a, b):\n    yield a + b\n",
    "check redefined by the program": WRONG + "def check(candidate):\n    pass\n",
    "recursion bomb": "def add(a, b):\n    return add(a, b)\n",
}


@dataclass
class Host:
    """What escapes are tested against: a secret file and folder, a listener, a process with a secret."""

    folder: Path
    secret_file: Path
    port: int
    secret: str
    victim: subprocess.Popen
    listener: socket.socket

    def close(self) -> None:
        self.victim.kill()
        self.victim.wait()
        self.listener.close()


def make_host() -> Host:
    folder = Path(tempfile.mkdtemp(prefix="loop-host-"))
    os.chmod(folder, 0o777)  # world-writable: only the sandbox keeps the program out
    secret = "loop-secret-" + os.urandom(6).hex()
    secret_file = folder / "secret.txt"
    secret_file.write_text(secret)
    os.chmod(secret_file, 0o644)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", secret],
                              env={**os.environ, "LOOP_HOST_SECRET": secret})
    os.environ["LOOP_HOST_SECRET"] = secret  # in this process's environment too
    return Host(folder, secret_file, listener.getsockname()[1], secret, victim, listener)


def _try(what: str, body: str) -> str:
    indented = "".join("    " + line + "\n" for line in body.strip().splitlines())
    return f"try:\n{indented}    print('ESCAPED {what}', flush=True)\nexcept BaseException:\n    pass\n"


def escapes(host: Host) -> dict[str, str]:
    """name -> program; a program prints `ESCAPED <what>` when an attempt succeeds."""
    project = Path(__file__).resolve().parents[1] / "__init__.py"
    seek = (f"import os\nfor p in os.listdir('/proc'):\n    for f in ('cmdline', 'environ'):\n        try:\n"
            f"            if {host.secret!r}.encode() in open(f'/proc/{{p}}/{{f}}', 'rb').read():\n"
            f"                print('ESCAPED /proc/' + p + '/' + f, flush=True)\n        except OSError:\n"
            f"            pass\n")
    return {
        "read a host secret file": _try("read", f"open({str(host.secret_file)!r}).read()"),
        "read project files": _try("project", f"open({str(project)!r}).read()"),
        "read /etc/passwd": _try("passwd", "open('/etc/passwd').read()"),
        "write to /run/lock": "open('/run/lock/loop-escape', 'w').write('x')\n",
        "write to the host folder": _try("host-folder",
                                         f"open({str(host.folder / 'escaped')!r}, 'w').write('x')"),
        "write to host /tmp": "import os\nopen(f'/tmp/loop-escape-{os.getpid()}', 'w').write('x')\n",
        "write to /dev/shm": "import os\nopen(f'/dev/shm/loop-escape-{os.getpid()}', 'w').write('x')\n",
        "posix.fork": _try("fork", "import posix\nif posix.fork() == 0:\n    posix._exit(0)"),
        "posix.posix_spawn": _try("posix_spawn",
                                  "import posix\nposix.posix_spawn('/bin/true', ['true'], {})"),
        "_posixsubprocess.fork_exec": _try("fork_exec", (
            "import _posixsubprocess, os\nr, w = os.pipe()\n"
            "_posixsubprocess.fork_exec(['true'], [b'/bin/true'], True, (), None, None, "
            "-1, -1, -1, -1, -1, -1, r, w, True, False, None, None, None, -1, None, False)")),
        "posix.system": _try("system", "import posix\nassert posix.system('true') == 0"),
        "reload posix and fork": _try("reload", (
            "import sys, importlib\nsys.modules.pop('posix', None)\nimport posix\n"
            "if posix.fork() == 0:\n    posix._exit(0)")),
        "ctypes fork": _try("ctypes-fork", "import ctypes\nassert ctypes.CDLL(None).fork() >= 0"),
        "ctypes execve": _try("ctypes-execve", (
            "import ctypes\nlibc = ctypes.CDLL(None)\nargv = (ctypes.c_char_p * 2)(b'/bin/true', None)\n"
            "libc.execve(b'/bin/true', argv, None)\nraise OSError")),
        "network through _socket": _try("socket", f"import _socket\ns = _socket.socket()\ns.settimeout(2)\n"
                                                   f"s.connect(('127.0.0.1', {host.port}))"),
        "network through ctypes": _try("ctypes-socket",
                                       "import ctypes\nassert ctypes.CDLL(None).socket(2, 1, 0) >= 0"),
        "other processes' /proc": seek,
        "signal the host": _try("signal", f"import os\nos.kill({os.getpid()}, 0)"),
        "signal pid 1": _try("signal-1", "import os\nos.kill(1, 0)"),
        "double fork daemon": _try("daemon", (
            "import os, time\nif os.fork() == 0:\n    os.setsid()\n"
            "    if os.fork() == 0:\n        time.sleep(60)\n"
            "    os._exit(0)")),
        "sleep past the limit": "import time\ntime.sleep(60)\n",
        "output flood": "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n",
        "disk flood": ("import os\nn = 0\ntry:\n    for i in range(100000):\n"
                       "        with open(f'f{i}', 'wb') as fh:\n            fh.write(b'x' * (1 << 20))\n"
                       "        n += 1\nexcept OSError:\n    pass\nprint('WROTE', n, flush=True)\n"),
        "memory bomb": "x = bytearray(8 * 1024 ** 3)\nprint('ESCAPED memory')\n",
    }


def escaped(name: str, outcome, host: Host, limits) -> list[str]:
    """What got out, from the program's own report and from outside."""
    found = [line for line in outcome.output.splitlines() if line.startswith("ESCAPED")]
    if (host.folder / "escaped").exists():
        found.append("wrote to the host folder")
        (host.folder / "escaped").unlink()
    for folder in ("/tmp", "/dev/shm", "/run/lock"):
        for path in Path(folder).glob("loop-escape*"):
            found.append(f"wrote to the host's {folder}")
            path.unlink()
    if outcome.seconds > limits.timeout_s + 5:
        found.append(f"held the run for {outcome.seconds:.0f} s (limit {limits.timeout_s:.0f} s)")
    if len(outcome.output) > limits.output_kb * 1024 + 4096:
        found.append(f"{len(outcome.output)} characters of output kept")
    for line in outcome.output.splitlines():
        if line.startswith("WROTE ") and int(line.split()[1]) > limits.disk_mb:
            found.append(f"wrote {line.split()[1]} MB (disk cap {limits.disk_mb} MB)")
    if host.victim.poll() is not None:
        found.append("killed a host process")
    return found


def sibling_harm(limits) -> list[str]:
    """A program that kills every process it can see, run beside correct programs: they must still pass."""
    killer = ("import os, signal\nfor p in os.listdir('/proc'):\n"
              "    if p.isdigit() and int(p) != os.getpid():\n"
              "        try:\n            os.kill(int(p), signal.SIGKILL)\n"
              "        except OSError:\n            pass\n")
    from loop.sandbox import run_many

    outs = run_many([(killer + ADD, CHECK, "add")] + [(ADD, CHECK, "add")] * 5, limits)
    return [f"sibling {i}: {o.status}" for i, o in enumerate(outs[1:], 1) if not o.passed]


def run_escapes(limits) -> tuple[int, dict[str, list[str]]]:
    """(programs tried, what got out: escape name -> findings); killing siblings counts as one program."""
    from loop.sandbox import run_program

    host = make_host()
    try:
        programs = escapes(host)
        leaks = {name: got for name, src in programs.items()
                 if (got := escaped(name, run_program(src, limits), host, limits))}
        siblings = sibling_harm(limits)
    finally:
        host.close()
    return len(programs) + 1, leaks | ({"kill siblings": siblings} if siblings else {})


def run_hostile(limits=None) -> dict:
    """Every false-pass trick and escape; counts and the names of any that got through."""
    from loop import isolation
    from loop.sandbox import Limits, run_many, run_tests

    limits = limits or Limits(timeout_s=8, cpu_s=4)
    start = time.perf_counter()
    outs = run_many([(src, CHECK, "add") for src in FALSE_PASSES.values()], limits)
    false = [f"{name}: {o.status}" for name, o in zip(FALSE_PASSES, outs) if o.passed]
    honest = run_tests(ADD, CHECK, "add", limits).passed
    tried, leaks = run_escapes(limits)
    return {"backend": isolation.backend(), "uid": os.getuid(), "false_pass_programs": len(FALSE_PASSES),
            "false_passes": false, "correct_program_passes": honest, "escape_programs": tried,
            "escapes": leaks, "seconds": round(time.perf_counter() - start, 1)}


def run_backends() -> dict:
    """`run_hostile` under bubblewrap (where it works here) and under the built-in fallback."""
    from loop import isolation

    out = {}
    saved = os.environ.get("LOOP_SANDBOX")
    try:
        for name in ("bwrap", "builtin"):
            os.environ["LOOP_SANDBOX"] = ""
            if name == "bwrap" and isolation.backend() != "bwrap":
                out[name] = {"skipped": "bubblewrap does not run here"}
                continue
            os.environ["LOOP_SANDBOX"] = name
            out[name] = run_hostile()
    finally:
        if saved is None:
            os.environ.pop("LOOP_SANDBOX", None)
        else:
            os.environ["LOOP_SANDBOX"] = saved
    return out


def report_lines(result: dict) -> list[str]:
    lines = []
    for name, got in result.items():
        if "skipped" in got:
            lines.append(f"hostile programs ({name}): skipped, {got['skipped']}")
            continue
        lines.append(f"hostile programs ({name}, as uid {got.get('uid', '?')}): "
                     f"{got['false_pass_programs']} false-pass tricks, {len(got['false_passes'])} passed; "
                     f"{got['escape_programs']} escape programs, {len(got['escapes'])} escaped; "
                     f"a correct program passes: {got['correct_program_passes']} ({got['seconds']} s)")
    return lines
