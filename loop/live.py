"""The live display of `loop run` on a terminal: round and stage, the stage's progress (requests, training
steps with the loss, examples evaluated) with its rate and ETA, teacher tokens against the cap as a gauge,
accepted samples. Log records print above it, warnings and errors included. Off the terminal, with
--quiet, or in CI, the run prints its plain log lines instead."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time

from loop import progress
from loop.redact import install


def wanted(quiet: bool) -> bool:
    """A live display only for a person at a terminal."""
    return not quiet and sys.stdout.isatty() and not os.environ.get("CI") and os.environ.get("TERM") != "dumb"


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def render(now: progress.Where):
    """What the display shows for `now` (a rich renderable); never an error: the display must not stop a
    run."""
    from rich.text import Text

    try:
        return _grid(now)
    except Exception as exc:  # noqa: BLE001
        return Text(f"{now.describe()} (the live display failed: {type(exc).__name__}: {exc})")


def _grid(now: progress.Where):
    from rich.progress_bar import ProgressBar
    from rich.table import Table

    grid = Table.grid(padding=(0, 1))
    grid.add_column(min_width=10, style="bold")
    grid.add_column(width=32)
    grid.add_column()
    rounds = f" of {now.rounds}" if now.rounds is not None else ""
    where = {None: "setup", 0: "baseline"}.get(now.round, f"round {now.round}{rounds}")
    # numbers checked here, where an odd value fails inside `render`, not later inside rich
    done, total, cap, spent = int(now.done), int(now.total), int(now.cap), int(now.spent)
    if total:
        work = f"{now.stage}: {done}/{total} {now.unit}"
        rate = done / max(time.monotonic() - now.stage_started, 1e-6)
        info = f"{work}  {rate:.1f}/s  {now.detail}".rstrip()
        grid.add_row(where, ProgressBar(total=total, completed=min(done, total), width=32), info)
    else:
        grid.add_row(where, "", f"{now.stage} ({_clock(time.monotonic() - now.stage_started)})")
    if cap:
        grid.add_row("budget", ProgressBar(total=cap, completed=min(spent, cap), width=32),
                     f"{spent:,} / {cap:,} tokens  accepted {now.accepted}")
    grid.add_row("ETA", "", f"stage {_clock(now.stage_eta())}  round {_clock(now.round_eta())}")
    return grid


@contextlib.contextmanager
def display(enabled: bool, refresh: float = 2.0):
    """The live display for the duration of the block when `enabled`; log records go through rich, above
    it. Otherwise nothing changes."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.live import Live
    from rich.logging import RichHandler

    console = Console(stderr=False)
    root = logging.getLogger()
    handler = RichHandler(console=console, show_path=False, markup=False, rich_tracebacks=False)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    saved = root.handlers[:]
    root.handlers = [handler]
    install()  # secrets stay out of what it prints
    try:
        with Live(get_renderable=lambda: render(progress.NOW), console=console, refresh_per_second=refresh,
                  transient=True, redirect_stdout=True, redirect_stderr=True) as live, _stderr_above(console):
            yield live
    finally:
        root.handlers = saved


@contextlib.contextmanager
def _stderr_above(console):
    """What is written to file descriptor 2 meanwhile, by this process or a child (the vLLM engine's workers
    warn there), printed above the display line by line instead of through it."""
    read, write = os.pipe()
    saved = os.dup(2)
    os.dup2(write, 2)
    os.close(write)

    def forward():
        with os.fdopen(read, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                console.print(line.rstrip("\n"), markup=False, highlight=False, style="dim")

    threading.Thread(target=forward, name="stderr-above-display", daemon=True).start()
    try:
        yield
    finally:
        os.dup2(saved, 2)  # the pipe's reader ends when the last child holding it exits
        os.close(saved)
