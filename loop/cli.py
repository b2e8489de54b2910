"""Command line: `loop run`, `loop config`, `loop assets`. The only place errors become messages."""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import time
from pathlib import Path

import click
import yaml

from loop.errors import ConfigError, LoopError, TeacherError
from loop.redact import install as redact_logs
from loop.redact import redact
from loop.runs import check_new, resume_command, resume_config, run_lock

log = logging.getLogger("loop")
DEFAULT_CONFIG = "configs/default.yaml"


def _environment() -> None:
    """Offline by default; quiet third-party loggers unless asked."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def _logging(verbose: bool) -> None:
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "INFO" if verbose else "ERROR")
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("transformers", "mlflow", "alembic", "urllib3", "httpx", "filelock", "faiss"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    redact_logs()


def handle_errors(fn):
    """Turn LoopError into a clean CLI error (exit code 1, no traceback), secrets redacted."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except LoopError as exc:
            raise click.ClickException(redact(f"{type(exc).__name__}: {exc}")) from None

    return wrapper


def _parse_sets(values: tuple[str, ...]) -> dict:
    out = {}
    for item in values:
        if "=" not in item:
            raise click.BadParameter(f"'{item}' is not KEY=VALUE", param_hint="--set")
        key, raw = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(raw)
    return out


def _default_config() -> str | None:
    return DEFAULT_CONFIG if Path(DEFAULT_CONFIG).is_file() else None


def _load(config: str | None, overrides: dict):
    from loop.config import load_config

    return load_config(config or _default_config(), overrides)


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
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM kills at once
        log.warning("SIGTERM: stopping; what was paid for is stored (`loop run --resume ID` continues a run)")
        sys.exit(128 + signum)

    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, stop)


CONFIG_OPT = click.option("--config", "-c", type=click.Path(dir_okay=False),
                          help=f"YAML config (default: {DEFAULT_CONFIG} if present, else built-in defaults).")
SET_OPT = click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                       help="Override any config key, e.g. --set budget.tokens=20000 (repeatable).")


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
@click.option("--cassette", type=click.Path(dir_okay=False), help="replay back-end: the cassette to answer from.")
@click.option("--record", type=click.Path(dir_okay=False),
              help="Append every teacher request and response to this JSONL cassette (any back-end).")
@click.option("--budget-tokens", type=int, help="Hard cap on teacher tokens for the run (budget.tokens).")
@click.option("--name", "run_name", help="Run name (run.name); default: time stamp and strategy.")
@click.option("--resume", "resume_id", help="Continue this run from its store (same config; --rounds may extend it).")
@click.option("--dry-run", is_flag=True, help="Forecast the run's teacher cost (requests x tokens) and stop: no model "
              "is loaded, no teacher called.")
@SET_OPT
@click.option("--verbose", "-v", is_flag=True, help="Debug logging.")
@handle_errors
def run(config, rounds, strategy, teacher_backend, teacher_model, teacher_urls, cassette, record, budget_tokens,
        run_name, resume_id, dry_run, sets, verbose):
    """Run the closed loop: baseline, then ROUNDS rounds of mine -> generate -> screen -> retrain."""
    _logging(verbose)
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
    from loop.config import check_run_dir

    check_run_dir(cfg)  # before a dry run ends: it must find what the real run would fail on
    if dry_run:
        _forecast(cfg)
        return
    run_id = resume_id or cfg.run.name or time.strftime("%Y%m%d-%H%M%S") + f"-{cfg.generation.strategy}"
    run_dir = cfg.resolve(cfg.run.dir) / run_id
    summary, parts = _run_locked(cfg, run_id, run_dir, bool(resume_id))
    metric = cfg.loop.metric
    click.echo(f"done: {summary['rounds_run']} round(s), stopped by {summary['stop_reason']}; best round "
               f"{summary['best_round']}: stop {metric} {summary[f'best_stop_{metric}']:.4f}, test {metric} "
               f"{summary[f'best_test_{metric}']:.4f} (baseline {summary[f'baseline_test_{metric}']:.4f}); "
               f"tokens {summary['tokens_spent']} / {cfg.budget.tokens}; accepted {summary['accepted_total']}")
    click.echo(f"store: {parts.store.path} (run id {run_id})  best student: {run_dir / 'student-best'}")
    click.echo(f"MLflow run {summary['mlflow_run_id']}: mlflow ui --backend-store-uri {parts.tracker.uri}")


def _run_locked(cfg, run_id: str, run_dir: Path, resume: bool):
    """Assemble the parts and run the loop, holding the run's lock; a new run may not reuse a name."""
    from loop.components import assemble
    from loop.controller import run_loop

    with run_lock(run_dir):
        if not resume:
            check_new(run_id, run_dir.parent / "store.sqlite")
        parts = assemble(cfg, run_dir)
        if not resume:  # where its relative paths resolve from, for `loop run --resume` in any folder
            parts.store.set_run(run_id, base_dir=cfg.base_dir)
        log.info("run %s: store %s, MLflow %s (experiment '%s')", run_id, parts.store.path, parts.tracker.uri,
                 cfg.tracking.experiment)
        try:
            return run_loop(cfg, parts, run_id, run_dir, resume=resume), parts
        except TeacherError as exc:
            raise type(exc)(f"{exc}\nEverything received so far is stored and paid once; continue the run "
                            f"with: {resume_command(cfg, run_id, _default_config())}") from None
        finally:
            parts.teacher.unload()
            parts.store.close()


def _forecast(cfg) -> None:
    from loop.components import build_task
    from loop.forecast import describe, forecast
    from loop.store import RunStore

    task = build_task(cfg)
    splits = task.load_splits()
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
        metrics, mined = mine_dry_run(cfg, parts, run_id, train=student_path is None)
    finally:
        parts.store.close()
    m = cfg.loop.metric
    click.echo(f"student: stop {m} {metrics[f'stop_{m}']:.4f}, test {m} {metrics[f'test_{m}']:.4f}; "
               f"mining split: {mined.errors} errors, {mined.low_confidence} low-confidence, "
               f"{len(mined.hoods)} neighbourhoods")
    click.echo(f"{'id':>3} {'cases':>5} {'errors':>6} {'mass':>6} {'disagree':>8} {'prompts':>7}  confusion    exemplar")
    for h in mined.hoods:
        row = h.row()
        first = (h.exemplars[0].text if h.exemplars else "")[:60]
        click.echo(f"{row['neighbourhood']:>3} {row['hard_cases']:>5} {row['errors']:>6} {row['error_mass']:>6.1f} "
                   f"{row['label_disagreement']:>8.2f} {row['requests']:>7}  {row['confusion']:<12} {first}")
    click.echo(f"MLflow run {parts.tracker.parent_id}: mlflow ui --backend-store-uri {parts.tracker.uri}")


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
    click.echo(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


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


@main.group()
def bench():
    """Benchmarks that print figures (teacher throughput, ...)."""


@bench.command("teacher")
@CONFIG_OPT
@click.option("--backends", default="vllm,openai,transformers,llamacpp", show_default=True,
              help="Comma-separated back-ends; those not installed are skipped.")
@click.option("--model", default="packaged:smollm2-135m-instruct", show_default=True, help="Teacher model.")
@click.option("--requests", "n", default=16, show_default=True, help="Prompts in the batch.")
@click.option("--max-tokens", default=128, show_default=True, help="Completion tokens per prompt.")
@click.option("--repeats", default=3, show_default=True, help="Timed repeats per path (medians reported).")
@click.option("--single", default=4, show_default=True, help="vLLM: requests sent one at a time for the single rate.")
@click.option("--url", help="openai: an already running server (default: start `vllm serve` on loopback).")
@click.option("--port", default=8765, show_default=True, help="Port for the `vllm serve` the benchmark starts.")
@click.option("--out", default="bench/results/teacher.json", show_default=True, help="Where to write the JSON.")
@SET_OPT
@handle_errors
def bench_teacher(config, backends, model, n, max_tokens, repeats, single, url, port, out, sets):
    """Tokens/s of loop's generation path vs each back-end's plain call, and their ratio."""
    import json

    from loop.bench.teacher import run_bench

    _logging(False)
    overrides = _parse_sets(sets)
    overrides["teacher.model"] = model
    cfg = _load(config, overrides)
    rows = run_bench(cfg, [b.strip() for b in backends.split(",") if b.strip()], n, max_tokens, repeats, single,
                     url, port)
    click.echo(f"{'backend':14}{'loop tok/s':>12}{'raw tok/s':>12}{'loop/raw':>10}{'single tok/s':>14}"
               f"{'batch/single':>14}{'parse rate':>12}")
    for r in rows:
        click.echo(f"{r['backend']:14}{r['loop_tok_s']:12.1f}{r['raw_tok_s']:12.1f}{r['ratio']:10.2f}"
                   f"{r.get('single_tok_s', float('nan')):14.1f}{r.get('batched_over_single', float('nan')):14.1f}"
                   f"{r['parse_rate']:12.2f}")
    settings = {"model": model, "requests": n, "max_tokens": max_tokens, "repeats": repeats}
    path = Path(out)
    old = json.loads(path.read_text()) if path.is_file() else {}
    if {k: old.get(k) for k in settings} == settings:  # same settings: replace only the back-ends run now
        ran = {r["backend"] for r in rows}
        rows = [r for r in old.get("rows", []) if r["backend"] not in ran] + rows
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**settings, "rows": rows}, indent=2))
    click.echo(f"written: {out}")


@bench.command("mining")
@click.option("--pools", default="10000,100000,1000000", show_default=True, help="Pool sizes (vectors).")
@click.option("--hard-cases", default="1000,10000", show_default=True, help="Numbers of hard cases (queries).")
@click.option("--data", default="synthetic,real", show_default=True,
              help="synthetic (clustered unit vectors) and/or real (MiniLM embeddings of the tweet corpus).")
@click.option("--index", "index_kind", default="auto", show_default=True, help="auto, flat, hnsw or ivf.")
@click.option("--nprobe", default=32, show_default=True, help="IVF lists searched per query.")
@click.option("--seed", default=0, show_default=True)
@click.option("--out", default="bench/results/mining.json", show_default=True, help="Where to write the JSON.")
@handle_errors
def bench_mining(pools, hard_cases, data, index_kind, nprobe, seed, out):
    """Mining wall time, peak memory and recall@10 against exact brute force."""
    from loop.assets import cache_dir
    from loop.bench.mining import run_bench, write

    _logging(False)
    ints = lambda text: [int(x) for x in text.split(",") if x.strip()]  # noqa: E731
    rows = run_bench(ints(pools), ints(hard_cases), [d.strip() for d in data.split(",")], index_kind, seed,
                     cache_dir() / "bench" / "tweets-minilm.npy", nprobe)
    click.echo(f"{'data':10}{'pool':>9}{'hard':>7}{'index':>7}{'build s':>9}{'search s':>9}{'total s':>9}"
               f"{'exact s':>9}{'speed-up':>9}{'recall@10':>10}{'peak GiB':>9}")
    for r in rows:
        click.echo(f"{r['data']:10}{r['pool']:>9}{r['hard_cases']:>7}{r['kind']:>7}{r['build_s']:>9.2f}"
                   f"{r['search_s']:>9.2f}{r['total_s']:>9.2f}{r['exact_s']:>9.2f}{r['speedup_vs_exact']:>9.1f}"
                   f"{r['recall_at_10']:>10.3f}{r['peak_gib']:>9.2f}")
    write(rows, out)
    click.echo(f"written: {out}")


@bench.command("efficiency")
@CONFIG_OPT
@click.option("--strategies", default="none,random,targeted", show_default=True,
              help="Comma-separated arms: none, all_labels, random, targeted, real, active, crossval.")
@click.option("--seeds", default="0,1,2", show_default=True, help="Comma-separated seed offsets.")
@click.option("--budgets", default="8000,16000,24000", show_default=True,
              help="Comma-separated token budgets; each run spends up to the largest.")
@click.option("--rounds", type=int, help="Rounds per run (default: loop.rounds).")
@click.option("--out", type=click.Path(dir_okay=False),
              help="JSON to write (default: bench/results/efficiency-<config name>.json; the PNG goes beside it).")
@SET_OPT
@click.option("--verbose", "-v", is_flag=True, help="Debug logging.")
@handle_errors
def bench_efficiency(config, strategies, seeds, budgets, rounds, out, sets, verbose):
    """Test metric vs teacher tokens per arm over budgets and seeds, with paired differences and intervals."""
    from loop.bench.efficiency import run_bench

    _logging(verbose)
    cfg = _load(config, _parse_sets(sets))
    ints = lambda text: [int(x) for x in text.split(",") if x.strip()]  # noqa: E731
    name = Path(config).stem if config else "default"
    out_path = Path(out or f"bench/results/efficiency-{name}.json")
    result = run_bench(cfg, [s.strip() for s in strategies.split(",") if s.strip()], ints(seeds),
                       sorted(ints(budgets)), rounds or cfg.loop.rounds, out_path,
                       cfg.resolve(cfg.run.dir) / "bench-efficiency")
    from loop.bench.paired import table_lines

    for line in table_lines(result, result["summary"]):
        click.echo(line)
    click.echo(f"written: {out_path} and {out_path.with_suffix('.png')}")


@bench.command("noise")
@CONFIG_OPT
@click.option("--seeds", default="0,1,2,3,4", show_default=True, help="Comma-separated student seed offsets.")
@click.option("--variant", "variants", multiple=True, metavar="'KEY=VALUE ...'",
              help="student.* overrides fitted as one variant ('baseline': none); repeatable "
                   "(default: baseline, student.warmup=0, student.average_last=3, student.select_epoch=true).")
@click.option("--out", type=click.Path(dir_okay=False),
              help="JSON to write (default: bench/results/noise-<config name>.json).")
@SET_OPT
@click.option("--verbose", "-v", is_flag=True, help="Debug logging.")
@handle_errors
def bench_noise(config, seeds, variants, out, sets, verbose):
    """Spread of the student's test metric over seeds on identical data, per training variant."""
    import shlex

    from loop.bench.noise import DEFAULT_VARIANTS, check_variants, run_bench

    _logging(verbose)
    overrides = {v.strip() or "baseline": _parse_sets(tuple(w for w in shlex.split(v) if w != "baseline"))
                 for v in (variants or DEFAULT_VARIANTS)}
    check_variants(overrides)
    base = _parse_sets(sets)
    cfgs = {name: _load(config, {**base, **ov}) for name, ov in overrides.items()}  # all validated before a fit
    name = Path(config).stem if config else "default"
    out_path = Path(out or f"bench/results/noise-{name}.json")
    result = run_bench(cfgs, overrides, [int(x) for x in seeds.split(",") if x.strip()], out_path)
    click.echo(f"test {result['metric']} over seeds {result['seeds']} ({result['train']} training examples):")
    click.echo(f"{'variant':40}{'mean':>8}{'std':>8}{'min':>8}{'max':>8}{'range':>8}{'s/fit':>8}")
    for variant, row in result["summary"].items():
        click.echo(f"{variant:40}{row['mean']:8.4f}{row['std']:8.4f}{row['min']:8.4f}{row['max']:8.4f}"
                   f"{row['range']:8.4f}{row['fit_s']:8.1f}")
    click.echo(f"written: {out_path}")


@bench.command("seed")
@click.option("--config", "-c", default="configs/seed-codegen.yaml", show_default=True,
              type=click.Path(dir_okay=False), help="A codegen config.")
@click.option("--seeds", default="0,1,2", show_default=True, help="Comma-separated seed offsets.")
@click.option("--rounds", type=int, default=2, show_default=True, help="Loop rounds per seed.")
@click.option("--out", default="bench/results/seed-codegen.json", show_default=True,
              type=click.Path(dir_okay=False), help="JSON to write (the PNG goes beside it).")
@SET_OPT
@click.option("--verbose", "-v", is_flag=True, help="Debug logging.")
@handle_errors
def bench_seed(config, seeds, rounds, out, sets, verbose):
    """Held-out pass@1: base student, LoRA fine-tuning on references, the loop with self-revision."""
    from loop.bench.seed import run_bench

    _logging(verbose)
    cfg = _load(config, _parse_sets(sets))
    if cfg.task.name != "codegen":
        raise ConfigError(f"{config}: bench seed needs a codegen config (task.name codegen)")
    out_path = Path(out)
    result = run_bench(cfg, [int(x) for x in seeds.split(",") if x.strip()], rounds, out_path,
                       cfg.resolve(cfg.run.dir) / "bench-seed")
    s = result["summary"]
    click.echo(f"held-out pass@1 ({len(result['runs'])} seeds, {cfg.student.steps} steps per fit):")
    click.echo(f"  base student          {s['base']:.4f}")
    for key, name in (("finetune", "LoRA fine-tune"), ("loop_selected", "loop (selected)"),
                      ("loop_last", "loop (last round)")):
        click.echo(f"  {name:21} {s[key]['mean']:.4f} ± {s[key]['std']:.4f}  {s[key]['values']}")
    for key in ("relative_gain_selected", "relative_gain_last"):
        click.echo(f"{key}: {s[key]}")
    click.echo(f"written: {out_path} and {out_path.with_suffix('.png')}")


@bench.command("reliability")
@click.option("--config", "-c", type=click.Path(dir_okay=False), help="Config (default: the built-in defaults, "
              "shrunk so the trials fit in minutes).")
@click.option("--trials", type=int, default=20, show_default=True, help="Kill-and-resume trials (0: the corpora only).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the kill points and delays.")
@click.option("--workers", type=int, default=1, show_default=True, help="Trials run at once.")
@click.option("--cassette", type=click.Path(dir_okay=False, exists=True),
              help="Replay this cassette instead of recording one with the config's teacher first.")
@click.option("--out", default="bench/results/reliability.json", show_default=True,
              type=click.Path(dir_okay=False), help="JSON to write.")
@SET_OPT
@click.option("--verbose", "-v", is_flag=True, help="Debug logging.")
@handle_errors
def bench_reliability(config, trials, seed, workers, cassette, out, sets, verbose):
    """SIGKILL runs at random points and resume them (--trials 0 skips them); then the bad-input and
    hostile-program corpora. Prints what survived."""
    from loop.bench.reliability import report, run_bench

    _logging(verbose)
    overrides = _parse_sets(sets)
    cfg = _load(config, overrides)
    result = run_bench(config, overrides, trials, seed, workers, cassette, Path(out),
                       cfg.resolve(cfg.run.dir) / "bench-reliability" / time.strftime("%Y%m%d-%H%M%S"), main)
    for line in report(result):
        click.echo(line)
    click.echo(f"written: {out}")


if __name__ == "__main__":
    sys.exit(main())
