"""A seccomp filter for the program's process: no new processes, no network, no signals to others.

Installed through `prctl` (no privilege needed, only `no_new_privs`) before the program runs,
and irreversible: whatever Python-level trick the program finds (`posix.fork`, `posix_spawn`,
`_posixsubprocess.fork_exec`, `system`, ctypes `fork` / `execve`), the kernel refuses the system
call. Threads stay possible (`clone` with CLONE_THREAD; `clone3` answers ENOSYS, so the C
library falls back to `clone`). Signals may only go to the process itself.
"""

import ctypes
import os
import platform
import struct

PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
RET_ALLOW, RET_ERRNO, RET_KILL = 0x7FFF0000, 0x00050000, 0x80000000
EPERM, ENOSYS = 1, 38
LD_ABS_W, JEQ_K, JGE_K, JSET_K, RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
CLONE_THREAD = 0x00010000
OFF_NR, OFF_ARCH, OFF_ARG0 = 0, 4, 16  # struct seccomp_data; args[0]'s low word (little-endian)

DENY = ("fork", "vfork", "execve", "execveat", "socket", "socketpair", "ptrace", "process_vm_readv",
        "process_vm_writev", "tkill", "pidfd_open", "pidfd_send_signal", "setsid", "setpgid")
ARCHES = {
    "x86_64": (0xC000003E, {"fork": 57, "vfork": 58, "execve": 59, "execveat": 322, "socket": 41,
                            "socketpair": 53, "ptrace": 101, "process_vm_readv": 310,
                            "process_vm_writev": 311, "tkill": 200, "pidfd_open": 434,
                            "pidfd_send_signal": 424, "setsid": 112, "setpgid": 109, "kill": 62,
                            "tgkill": 234, "clone": 56, "clone3": 435}),
    "aarch64": (0xC00000B7, {"execve": 221, "execveat": 281, "socket": 198, "socketpair": 199, "ptrace": 117,
                             "process_vm_readv": 270, "process_vm_writev": 271, "tkill": 130,
                             "pidfd_open": 434, "pidfd_send_signal": 424, "setsid": 157, "setpgid": 154,
                             "kill": 129, "tgkill": 131, "clone": 220, "clone3": 435}),
}


def _op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def program(machine: str, pid: int) -> bytes:
    """The BPF program for this architecture; signals are allowed only to `pid` (the process itself)."""
    arch, nr = ARCHES[machine]
    ops = [_op(LD_ABS_W, OFF_ARCH), _op(JEQ_K, arch, 1, 0), _op(RET_K, RET_KILL), _op(LD_ABS_W, OFF_NR)]
    if machine == "x86_64":  # the x32 ABI numbers the same calls from 0x40000000
        ops += [_op(JGE_K, 0x40000000, 0, 1), _op(RET_K, RET_ERRNO | EPERM)]
    for name in DENY:
        if name in nr:
            ops += [_op(JEQ_K, nr[name], 0, 1), _op(RET_K, RET_ERRNO | EPERM)]
    ops += [_op(JEQ_K, nr["clone3"], 0, 1), _op(RET_K, RET_ERRNO | ENOSYS)]
    for name in ("kill", "tgkill"):  # only to itself
        ops += [_op(JEQ_K, nr[name], 0, 4), _op(LD_ABS_W, OFF_ARG0), _op(JEQ_K, pid, 0, 1),
                _op(RET_K, RET_ALLOW), _op(RET_K, RET_ERRNO | EPERM)]
    ops += [_op(JEQ_K, nr["clone"], 0, 4), _op(LD_ABS_W, OFF_ARG0), _op(JSET_K, CLONE_THREAD, 0, 1),
            _op(RET_K, RET_ALLOW), _op(RET_K, RET_ERRNO | EPERM)]
    ops.append(_op(RET_K, RET_ALLOW))
    return b"".join(ops)


class _Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install() -> str:
    """Install the filter in this process; returns '' on success, else why it could not be."""
    machine = platform.machine()
    if machine not in ARCHES:
        return f"no seccomp filter for {machine}"
    code = program(machine, os.getpid())
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(code, len(code))
    prog = _Prog(len(code) // 8, ctypes.cast(buf, ctypes.c_void_p))
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return f"prctl(NO_NEW_PRIVS) failed: errno {ctypes.get_errno()}"
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        return f"prctl(SECCOMP) failed: errno {ctypes.get_errno()}"
    return ""
