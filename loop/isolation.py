"""How the sandbox's processes are isolated: bubblewrap where it works, the built-in fallback elsewhere.

Under bubblewrap (Debian package `bubblewrap`, the sandbox Flatpak uses) each run gets new PID,
network, IPC, UTS, user and mount namespaces; a read-only view of only the interpreter, its
standard library, the system's shared libraries and the sandbox's own scripts; a size-capped
private tmpfs as the only writable place (/tmp, also the working folder, and /dev/shm); no
capabilities; `--die-with-parent`; and a fresh /proc that shows only the run's own processes.
When the run ends, or its time is up, the whole PID namespace dies with it.

The built-in fallback (no bubblewrap, or a kernel that refuses it; `LOOP_SANDBOX=builtin` forces it)
runs the same judge and program as plain processes in a temporary folder, the program as `nobody`
when loop runs as root (then in private network and mount namespaces, with empty scratch
folders). Both ways, the program's process also gets the seccomp filter (no processes, sockets or
signals to others) and a Landlock ruleset (read the interpreter, write the working folder; nothing
else, /proc included) where the kernel has Landlock (5.13 and later). The fallback says so once.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
INSIDE = Path(__file__).with_name("sandbox_inside")
BOX_SCRIPTS = "/sandbox"  # where the inside scripts appear under bubblewrap
MB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """What a sandboxed program may use."""

    timeout_s: float = 10.0  # wall clock, for the whole run
    cpu_s: int = 5  # per process
    memory_mb: int = 512  # address space, per process
    file_mb: int = 4  # largest file
    disk_mb: int = 16  # all files together (the private tmpfs, under bubblewrap)
    output_kb: int = 64  # stdout + stderr kept; the rest is discarded
    require_seccomp: bool = False  # refuse to run a program where the seccomp filter cannot be installed


def interpreter() -> str:
    """The base interpreter (not a virtual environment's launcher: no site-packages are needed inside)."""
    return os.path.realpath(getattr(sys, "_base_executable", sys.executable))


def _python_paths() -> list[str]:
    """Folders the interpreter needs: its binary's folder and its standard library (with extension
    modules)."""
    paths = {os.path.dirname(interpreter())}
    for key in ("stdlib", "platstdlib"):
        paths.add(os.path.realpath(sysconfig.get_paths()[key]))
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir and sysconfig.get_config_var("Py_ENABLE_SHARED"):
        paths.add(os.path.realpath(libdir))
    return sorted(p for p in paths if os.path.isdir(p))


def _system_libs() -> list[str]:
    return [p for p in ("/usr/lib", "/usr/lib64", "/usr/lib32") if os.path.isdir(p)]


def _site_packages() -> list[str]:
    """Third-party package folders under the bound paths: masked by empty tmpfs mounts."""
    paths = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
    base = sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_prefix})
    paths |= {base["purelib"], base["platlib"], "/usr/lib/python3/dist-packages"}
    return sorted(os.path.realpath(p) for p in paths if os.path.isdir(p))


def bwrap_command(limits) -> list[str]:
    """The bubblewrap command line for one run (the judge reads its job on stdin)."""
    cmd = ["bwrap", "--unshare-all", "--unshare-user", "--uid", "65534", "--gid", "65534",
           "--hostname", "sandbox", "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--clearenv",
           "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/tmp", "--setenv", "LANG", "C.UTF-8",
           "--setenv", "PYTHONHASHSEED", "0"]
    for path in _system_libs() + _python_paths():
        cmd += ["--ro-bind", path, path]
    for link, target in (("/lib", "usr/lib"), ("/lib64", "usr/lib64"), ("/bin", "usr/bin")):
        if os.path.islink(link):
            cmd += ["--symlink", target, link]
    for path in _site_packages():
        if any(path.startswith(p + "/") for p in _system_libs() + _python_paths()):
            cmd += ["--tmpfs", path]
    cmd += ["--ro-bind", str(INSIDE), BOX_SCRIPTS, "--proc", "/proc", "--dev", "/dev",
            "--size", str(limits.disk_mb * MB), "--tmpfs", "/tmp", "--size", str(MB), "--tmpfs", "/dev/shm",
            "--chdir", "/tmp", "--", interpreter(), "-I", "-S", "-B", f"{BOX_SCRIPTS}/judge.py"]
    return cmd


def fallback_command() -> list[str]:
    return [interpreter(), "-I", "-S", "-B", str(INSIDE / "judge.py")]


_LOCK = threading.Lock()


def backend() -> str:
    """'bwrap' when bubblewrap runs a program here, else 'builtin' (decided and said once per process)."""
    forced = os.environ.get("LOOP_SANDBOX", "")
    if forced in ("bwrap", "builtin"):
        return forced
    with _LOCK:
        return _backend()


@functools.lru_cache(maxsize=1)
def _backend() -> str:
    """'bwrap' when bubblewrap runs a program here, else 'builtin' (said once, with the reason)."""
    reason = bwrap_problem()
    if not reason:
        log.info("sandbox: bubblewrap (namespaces, read-only interpreter, private tmpfs, seccomp, Landlock)")
        return "bwrap"
    log.warning("sandbox: %s; using the built-in sandbox (seccomp, Landlock where the kernel has it, and "
                "limits; no PID namespace)", reason)
    return "builtin"


def bwrap_problem() -> str:
    """'' when bubblewrap is installed and can start the interpreter here, else why not."""
    if shutil.which("bwrap") is None:
        return "bubblewrap is not installed (apt-get install bubblewrap)"
    return _probe()


def _probe() -> str:
    """'' when bubblewrap can start the interpreter here, else why not."""
    cmd = bwrap_command(Limits())[:-2] + ["-c", "print('ok')"]
    try:
        out = subprocess.run(cmd, capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap failed to start ({exc})"
    if out.returncode != 0 or out.stdout.strip() != b"ok":
        return f"bubblewrap failed here: {out.stderr.decode(errors='replace').strip()[:200]}"
    return ""
