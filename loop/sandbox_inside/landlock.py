"""A Landlock ruleset for the program's process: read only the interpreter and its library, write only
the working folder. Unprivileged and irreversible (Linux 5.13 and later); it is what keeps the
built-in sandbox's program away from the rest of the file system, /proc included, where bubblewrap
is missing. A kernel without Landlock leaves the program's file access as it was, and says so.
"""

import ctypes
import os

CREATE_RULESET, ADD_RULE, RESTRICT_SELF = 444, 445, 446  # the same numbers on x86_64 and aarch64
RULE_PATH_BENEATH = 1
EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
ALL_V1 = (1 << 13) - 1  # every file-system right of Landlock's first version
READ = EXECUTE | READ_FILE | READ_DIR
O_PATH, O_CLOEXEC = 0o10000000, 0o2000000


class _Ruleset(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def restrict(readable: list[str], writable: list[str]) -> str:
    """Limit this process to reading `readable` and reading + writing `writable` (folders, recursively).
    Returns '' on success, else why not. Needs no_new_privs (the seccomp step sets it)."""
    libc = ctypes.CDLL(None, use_errno=True)
    attr = _Ruleset(ALL_V1)
    ruleset = libc.syscall(CREATE_RULESET, ctypes.byref(attr), ctypes.sizeof(attr), 0)
    if ruleset < 0:
        return f"no Landlock here (errno {ctypes.get_errno()})"
    try:
        for paths, access in ((readable, READ), (writable, ALL_V1)):
            for path in paths:
                try:
                    fd = os.open(path, O_PATH | O_CLOEXEC)
                except OSError:
                    continue
                rule = _PathBeneath(access, fd)
                libc.syscall(ADD_RULE, ruleset, RULE_PATH_BENEATH, ctypes.byref(rule), 0)
                os.close(fd)
        libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
        if libc.syscall(RESTRICT_SELF, ruleset, 0) != 0:
            return f"Landlock refused (errno {ctypes.get_errno()})"
    finally:
        os.close(ruleset)
    return ""
