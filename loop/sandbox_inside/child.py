"""The program's process: `python -I -S -B child.py READ_FD WRITE_FD LIMITS_JSON`, started by the judge.

Before the program runs it sets resource limits, drops root to `nobody` (outside bubblewrap),
installs the seccomp filter (no processes, no sockets, no signals to others), makes ctypes
unimportable and replaces the standard library's process and socket functions with ones
that raise (for a readable error; the kernel refuses them anyway). Then it defines the
program and answers the judge's calls with plain values. Whatever it does, it cannot
speak for the tests: they run in the judge, which it cannot reach.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import landlock  # noqa: E402
import rlimits  # noqa: E402
import seccomp  # noqa: E402
import wire  # noqa: E402

# imported before root is dropped and ctypes closed: the interpreter may live where `nobody` cannot read
PRELOAD = ("array", "bisect", "collections", "copy", "dataclasses", "datetime", "decimal", "enum",
           "fractions", "functools", "hashlib", "heapq", "itertools", "json", "math", "numbers", "operator",
           "random", "re", "statistics", "string", "textwrap", "time", "typing", "unicodedata", "threading",
           "traceback", "posix", "_posixsubprocess", "ctypes", "platform", "landlock", "rlimits")
SPAWN = ("fork", "forkpty", "system", "popen", "execv", "execve", "execvp", "execvpe", "execl", "execle",
         "execlp", "execlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe", "posix_spawn", "posix_spawnp",
         "kill", "killpg", "setsid", "setpgid", "setpgrp", "pidfd_open", "register_at_fork")


def private_scratch(disk_mb: int) -> None:
    """Outside bubblewrap, as root: private network and mount namespaces; the working folder becomes a
    tmpfs of `disk_mb` (the total disk cap), and the shared scratch folders (/tmp, /var/tmp, /dev/shm,
    /run/lock) empty tmpfs mounts, so nothing written there is seen by others or outlives the run."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.unshare(0x40000000)  # CLONE_NEWNET
    if libc.unshare(0x00020000) != 0 or libc.mount(b"none", b"/", None, 0x4000 | 0x40000, None) != 0:
        return
    cwd = os.getcwd().encode()
    if libc.mount(b"tmpfs", cwd, b"tmpfs", 0, f"size={disk_mb}m,mode=0777".encode()) == 0:
        os.chdir(cwd)  # into the new mount
    for scratch in (b"/tmp", b"/var/tmp", b"/dev/shm", b"/run/lock"):
        if os.path.isdir(scratch):
            libc.mount(b"tmpfs", scratch, b"tmpfs", 0, b"size=1m,mode=1777")


def drop_root(disk_mb: int) -> None:
    if os.getuid() == 0:
        private_scratch(disk_mb)
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)


def _deny(*_args, **_kwargs):
    raise PermissionError("blocked by the loop sandbox")


def readable() -> list[str]:
    """What the program may read: the interpreter, its library, and these scripts."""
    paths = {os.path.dirname(os.path.realpath(sys.executable)), os.path.dirname(os.path.abspath(__file__))}
    paths |= {p for p in sys.path if os.path.isdir(p)}
    return sorted(paths)


def guard() -> str:
    """The kernel's guards (seccomp, then Landlock: only the working folder is writable), then the
    Python-level guard over os, posix, _posixsubprocess and ctypes."""
    # "." is the working folder itself, even where a private /tmp now hides its path
    problem = "; ".join(p for p in (seccomp.install(), landlock.restrict(readable(), ["."])) if p)
    import _posixsubprocess
    import posix

    for module in (os, posix):
        for name in SPAWN:
            if hasattr(module, name):
                setattr(module, name, _deny)
    _posixsubprocess.fork_exec = _deny
    for name in ("ctypes", "_ctypes", "ctypes.util", "_socket", "socket", "subprocess", "multiprocessing"):
        sys.modules[name] = None  # `import` of these now raises ImportError
    return problem


def define(source: str) -> dict:
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    exec(compile(source, "program.py", "exec"), namespace)
    return namespace


def _reply_to(namespace: dict, message) -> tuple:
    _, name, args, kwargs = message
    try:
        result = namespace[name](*args, **kwargs)
    except BaseException as exc:  # noqa: BLE001 -- the program's exception is its answer
        return ("raise", type(exc).__name__, _text(exc))
    if not wire.plain(result):
        return ("not_plain", type(result).__name__)
    return ("return", result)


def _text(exc: BaseException) -> str:
    try:
        return str(exc)[:1000]
    except BaseException:  # noqa: BLE001 -- a hostile __str__
        return "(unprintable)"


def main() -> None:
    read_fd, write_fd, lim = int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
    for name in PRELOAD:
        __import__(name)
    rlimits.apply(lim, open_files=64)
    drop_root(lim["disk_mb"])
    kind, source = wire.recv(read_fd)
    problem = guard()
    if problem:
        sys.stderr.write(f"loop sandbox: {problem}\n")
    if problem and lim.get("require_seccomp"):
        wire.send(write_fd, ("error", "SandboxError", problem))
        return
    try:
        namespace = define(source)
    except BaseException as exc:  # noqa: BLE001 -- SystemExit included: the program ended before the tests
        wire.send(write_fd, ("error", type(exc).__name__, _text(exc)))
        return
    names = sorted(k for k, v in list(namespace.items()) if isinstance(k, str) and callable(v))
    wire.send(write_fd, ("ready", names))
    while True:
        try:
            message = wire.recv(read_fd)
        except EOFError:  # the judge is done
            return
        if message[0] != "call":
            return
        reply = _reply_to(namespace, message)
        try:
            wire.send(write_fd, reply)
        except wire.WireError as exc:  # a result too large to carry
            wire.send(write_fd, ("not_plain", str(exc)))


if __name__ == "__main__":
    main()
