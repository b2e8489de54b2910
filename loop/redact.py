"""Secret values (API keys) never reach a message or a log line: each one known is replaced by `***`.

A back-end that reads a secret registers it. `redact` cleans any text (cli.py passes every error
message through it); `RedactFilter`, installed on the root logger's handlers, cleans every log record
(message, arguments, traceback) before any handler writes it, whichever logger it came from.
"""

from __future__ import annotations

import logging

MASK = "***"
MIN_LENGTH = 6  # shorter values would mask ordinary words; no real key is this short
_secrets: set[str] = set()


def register(value: str | None) -> None:
    """Treat `value` as a secret from now on (in this process), and make sure log handlers redact it."""
    if value and len(value) >= MIN_LENGTH:
        _secrets.add(value)
        install()


def redact(text: str) -> str:
    """`text` with every registered secret replaced by `***` (longest first, so no tail of one survives)."""
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


class RedactFilter(logging.Filter):
    """Rewrites a record whose message, arguments or traceback hold a secret; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _secrets:
            return True
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed call: leave it to the handler's own error path
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FILTER = RedactFilter()


def install() -> None:
    """Add the filter to every handler of the root logger (records of every logger reach those)."""
    for handler in logging.getLogger().handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
