"""The sandboxed side of `loop.sandbox`: runs as `python -I -S -B sandbox_child.py LIMITS_JSON PROGRAM`.

It imports nothing from loop. Before the program runs it: leaves the network namespace
(a private one with no interfaces, where the kernel allows it), sets resource limits (CPU
seconds, address space, file size, open files, processes, no core dumps), drops root to
`nobody` when started as root, and replaces the process-spawning and socket functions of
the standard library with ones that raise. Exit status 0 means the program ran to the end.
"""

import json
import os
import resource
import sys

CLONE_NEWNET, CLONE_NEWNS = 0x40000000, 0x00020000
MS_REC, MS_PRIVATE = 0x4000, 0x40000
# imported before root is dropped: the interpreter may live where `nobody` cannot read
PRELOAD = ("array", "bisect", "collections", "copy", "dataclasses", "datetime", "decimal", "enum", "fractions",
           "functools", "hashlib", "heapq", "itertools", "json", "math", "numbers", "operator", "random", "re",
           "socket", "statistics", "string", "subprocess", "textwrap", "time", "typing", "unicodedata")


def _unshare() -> bool:
    """A private network namespace; and, where allowed, a private mount namespace whose
    shared scratch folders (/tmp, /var/tmp, /dev/shm) are empty tmpfs mounts, so nothing
    written there outlives the run. The working folder stays reachable: it is the cwd."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
    except Exception:
        return False
    net = libc.unshare(CLONE_NEWNET) == 0
    if libc.unshare(CLONE_NEWNS) == 0 and libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) == 0:
        for scratch in (b"/tmp", b"/var/tmp", b"/dev/shm"):
            if os.path.isdir(scratch):
                libc.mount(b"tmpfs", scratch, b"tmpfs", 0, b"size=8m,mode=1777")
    return net


def _limits(lim: dict) -> None:
    mb = 1024 * 1024
    for res, value in ((resource.RLIMIT_CPU, lim["cpu_s"]), (resource.RLIMIT_AS, lim["memory_mb"] * mb),
                       (resource.RLIMIT_FSIZE, lim["file_mb"] * mb), (resource.RLIMIT_NOFILE, 64),
                       (resource.RLIMIT_CORE, 0), (resource.RLIMIT_NPROC, lim["processes"])):
        resource.setrlimit(res, (value, value))


def _drop_root() -> None:
    if os.getuid() == 0:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)


def _deny(*_args, **_kwargs):
    raise PermissionError("blocked by the loop sandbox")


def _guard() -> None:
    import socket
    import subprocess

    for name in ("fork", "forkpty", "system", "popen", "execv", "execve", "execvp", "execvpe", "execl", "execle",
                 "execlp", "execlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe", "posix_spawn", "posix_spawnp",
                 "kill", "killpg", "putenv", "unsetenv", "setsid", "setpgid", "setpgrp"):
        if hasattr(os, name):
            setattr(os, name, _deny)
    subprocess.Popen = _deny
    socket.socket = _deny
    socket.create_connection = _deny


def main() -> None:
    lim = json.loads(sys.argv[1])
    program = sys.argv[2]
    with open(program, encoding="utf-8") as fh:
        source = fh.read()
    if not _unshare() and lim.get("require_netns"):
        sys.stderr.write("sandbox: no private network namespace\n")
        sys.exit(3)
    for name in PRELOAD:
        __import__(name)
    _limits(lim)
    _drop_root()
    _guard()
    sys.argv = [program]
    code = compile(source, "program.py", "exec")
    exec(code, {"__name__": "__main__", "__builtins__": __builtins__})


if __name__ == "__main__":
    main()
