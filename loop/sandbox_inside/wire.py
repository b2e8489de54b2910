"""Messages between the judge and the program: a 4-byte length, then a `marshal` payload.

Only plain values cross: None, bool, int, float, complex, str, bytes, and tuples, lists,
dicts, sets and frozensets of them, with exact types. A subclass of a plain type, or any
object of the program's own (one whose `__eq__` says yes to everything, say), never reaches
the tests: the judge compares values it rebuilt itself.
"""

import marshal
import os
import struct

MAX_MESSAGE = 16 * 1024 * 1024
MAX_DEPTH = 200
SCALARS = (type(None), bool, int, float, complex, str, bytes)
SEQUENCES = (tuple, list, set, frozenset)


class WireError(Exception):
    """A message that is missing, too long, or not made of plain values."""


def plain(value, depth: int = 0) -> bool:
    """True when `value` is built only of plain types (exact types, bounded depth)."""
    kind = type(value)
    if kind in SCALARS:
        return True
    if depth > MAX_DEPTH:
        return False
    if kind in SEQUENCES:
        return all(plain(v, depth + 1) for v in value)
    if kind is dict:
        return all(plain(k, depth + 1) and plain(v, depth + 1) for k, v in value.items())
    return False


def send(fd: int, message) -> None:
    data = marshal.dumps(message)
    if len(data) > MAX_MESSAGE:
        raise WireError(f"message of {len(data)} bytes (limit {MAX_MESSAGE})")
    view = memoryview(struct.pack(">I", len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def _exactly(fd: int, n: int) -> bytes:
    parts, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError("the other side closed the channel")
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def recv(fd: int):
    """The next message; EOFError when the other side is gone, WireError when it is not plain."""
    (size,) = struct.unpack(">I", _exactly(fd, 4))
    if size > MAX_MESSAGE:
        raise WireError(f"message of {size} bytes (limit {MAX_MESSAGE})")
    try:
        value = marshal.loads(_exactly(fd, size))
    except (ValueError, EOFError, TypeError, RecursionError, MemoryError) as exc:
        raise WireError(f"unreadable message: {type(exc).__name__}") from None
    if not plain(value):
        raise WireError("a message that is not made of plain values")
    return value
