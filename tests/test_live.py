"""The live display: what it shows, captured with rich's recording console; off the terminal nothing
changes."""

import logging
import time

from loop import live, progress


def _text(now) -> str:
    from rich.console import Console

    console = Console(record=True, width=120, force_terminal=True, color_system=None)
    console.print(live.render(now))
    return console.export_text()


def test_generation_shows_requests_tokens_budget_and_eta():
    now = progress.NOW  # what the run's parts report into, and the display reads
    now.rounds, now.cap = 3, 40000
    now.begin_round(2)
    now.begin("generate")
    now.expected_tokens = 4000  # the forecast's completion tokens for the batch
    bar = progress.EngineBar(total=16)  # what vLLM drives
    bar._start -= 5  # vLLM's speed is the finished replies' tokens over the bar's time: 200/s for 5 s
    bar.update(4)
    bar.postfix = "est. speed input: 900.00 toks/s, output: 200.00 toks/s"
    now.spent, now.accepted = 12345, 63
    now.stage_started = time.monotonic() - 8
    text = _text(now)
    assert "round 2 of 3" in text and "generate: 4/16 requests" in text
    assert "1,000 of ~4,000 tokens back" in text
    assert "12,345 / 40,000 tokens" in text and "accepted 63" in text and "stage 0:00:" in text
    assert 22 <= now.stage_eta() <= 26  # a quarter of the tokens in 8 s: 24 s to go
    now.expected_tokens = 0
    assert 22 <= now.stage_eta() <= 26  # without a forecast: 4 of 16 requests in 8 s


def test_training_shows_epoch_step_and_loss():
    import torch

    from loop.students.base import train_epochs

    class Cfg:
        epochs, batch_size, learning_rate, seed = 2, 4, 1e-3, 0

    w = torch.nn.Parameter(torch.zeros(3))
    model = torch.nn.Module()
    model.register_parameter("w", w)
    seen = []

    def batch_loss(idx):
        seen.append((progress.NOW.done, progress.NOW.total))
        return ((w - 1) ** 2).sum()

    progress.NOW.begin("train")
    train_epochs(model, [w], 10, Cfg, batch_loss)
    assert seen[0] == (0, 6) and progress.NOW.done == progress.NOW.total == 6  # 2 epochs x 3 batches
    assert progress.NOW.unit == "steps" and progress.NOW.detail.startswith("epoch 2/2 loss ")
    assert "train: 6/6 steps" in _text(progress.NOW)


def test_baseline_and_a_stage_without_a_count():
    now = progress.Where()
    now.begin_round(0)
    now.begin("mine")
    text = _text(now)
    assert "baseline" in text and "mine (0:00:0" in text and "budget" not in text


def test_round_eta_uses_the_last_round():
    now = progress.Where()
    now.begin_round(1)
    now.round_started -= 100  # round 1 took 100 s
    now.begin_round(2)
    assert 95 <= now.last_round_s + 5 and 95 <= now.round_eta() <= 100.5


def test_off_the_terminal_nothing_changes(monkeypatch):
    """Under pytest stdout is not a terminal: no display, and the log handlers stay as they are."""
    assert not live.wanted(quiet=False)
    monkeypatch.setattr("sys.stdout.isatty", lambda: True, raising=False)
    monkeypatch.setenv("CI", "")
    monkeypatch.setenv("TERM", "xterm")
    assert live.wanted(quiet=False) and not live.wanted(quiet=True)
    before = logging.getLogger().handlers[:]
    with live.display(False) as shown:
        assert shown is None
    assert logging.getLogger().handlers == before


def test_log_records_and_child_stderr_print_above_the_display(capsys):
    """Warnings reach the terminal while the display runs, and so does what a child process (the vLLM
    engine's workers) writes to its stderr, line by line above the display; the handlers come back after."""
    import subprocess
    import sys

    before = logging.getLogger().handlers[:]
    with live.display(True, refresh=20) as shown:
        assert shown is not None
        logging.getLogger("loop.test").warning("a warning stays visible")
        subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('a child warns\\n')"], check=True)
        time.sleep(0.5)
    assert logging.getLogger().handlers == before
    out = capsys.readouterr().out
    assert "a warning stays visible" in out and "a child warns" in out


def test_the_engine_bar_passes_an_iterable_through():
    """vLLM also wraps its request list in the bar (`tqdm_func(prompts, desc=...)`): items pass through and
    the count of replies is left alone."""
    progress.NOW.work(5, "requests")
    progress.NOW.advance(2)
    bar = progress.EngineBar(["a", "b", "c"], desc="Adding requests")
    assert list(bar) == ["a", "b", "c"]
    bar.update(3)
    assert (progress.NOW.done, progress.NOW.total) == (2, 5)


def test_a_display_that_cannot_draw_does_not_stop_the_run():
    now = progress.Where()
    now.total = ["not", "a", "number"]  # anything a part might leave there
    assert "the live display failed" in _text(now)
