"""`loop bench ...`: the benchmarks, each printing its figures and writing its JSON."""

from __future__ import annotations

import time
from pathlib import Path

import click

from loop.cli.common import (
    CONFIG_OPT,
    SET_OPT,
    _load,
    _logging,
    _parse_sets,
    handle_errors,
)
from loop.errors import ConfigError


def efficiency_dir(cfg) -> Path:
    """Where `loop bench efficiency` keeps its runs (and `loop bench labels` reads them)."""
    return cfg.resolve(cfg.run.dir) / "bench-efficiency"


@click.group()
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
@click.option("--single", default=4, show_default=True,
              help="vLLM: requests sent one at a time for the single rate.")
@click.option("--url", help="openai: an already running server (default: start `vllm serve` on loopback).")
@click.option("--port", default=8765, show_default=True,
              help="Port for the `vllm serve` the benchmark starts.")
@click.option("--servers", type=click.IntRange(1), default=None,
              help="Instead: loop's client over 1..K fixed-latency servers on loopback, requests/s.")
@click.option("--latency", default=0.2, show_default=True,
              help="--servers: seconds each server takes a request.")
@click.option("--slots", default=4, show_default=True, help="--servers: requests each server serves at once.")
@click.option("--out", default=None, help="Where to write the JSON [bench/results/teacher.json, or "
                                          "teacher-fleet.json with --servers].")
@SET_OPT
@handle_errors
def bench_teacher(config, backends, model, n, max_tokens, repeats, single, url, port, servers, latency, slots,
                  out, sets):
    """Tokens/s of loop's generation path vs each back-end's plain call, and their ratio; or, with
    --servers K, requests/s over 1..K servers."""
    import json

    if servers:
        return _bench_fleet(servers, n, latency, slots, repeats, out or "bench/results/teacher-fleet.json")
    out = out or "bench/results/teacher.json"
    from loop.bench.teacher import run_bench

    _logging(False)
    overrides = _parse_sets(sets)
    overrides["teacher.model"] = model
    cfg = _load(config, overrides)
    rows = run_bench(cfg, [b.strip() for b in backends.split(",") if b.strip()], n, max_tokens, repeats,
                     single, url, port)
    click.echo(f"{'backend':14}{'loop tok/s':>12}{'raw tok/s':>12}{'loop/raw':>10}{'single tok/s':>14}"
               f"{'batch/single':>14}{'parse rate':>12}")
    for r in rows:
        click.echo(f"{r['backend']:14}{r['loop_tok_s']:12.1f}{r['raw_tok_s']:12.1f}{r['ratio']:10.2f}"
                   f"{r.get('single_tok_s', float('nan')):14.1f}"
                   f"{r.get('batched_over_single', float('nan')):14.1f}"
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


def _bench_fleet(servers, n, latency, slots, repeats, out):
    import json

    from loop.bench.fleet import run_fleet_bench

    _logging(False)
    rows = run_fleet_bench(servers, n, latency, slots, repeats)
    click.echo(f"{'servers':>8}{'requests/s':>12}{'ideal/s':>10}{'speed-up':>10}  answered by server")
    for r in rows:
        click.echo(f"{r['servers']:8d}{r['requests_per_s']:12.1f}{r['ideal_per_s']:10.1f}"
                   f"{r['speedup']:10.2f}  {r['answered_by_server']}")
    settings = {"requests": n, "latency_s": latency, "slots": slots, "repeats": repeats}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps({**settings, "rows": rows}, indent=2))
    click.echo(f"written: {out}")


@bench.command("mining")
@click.option("--pools", default="10000,100000,1000000", show_default=True, help="Pool sizes (vectors).")
@click.option("--hard-cases", default="1000,10000", show_default=True,
              help="Numbers of hard cases (queries).")
@click.option("--data", default="synthetic,real", show_default=True,
              help="synthetic (clustered unit vectors) and/or real (MiniLM embeddings of the tweet corpus).")
@click.option("--index", "index_kind", default="auto", show_default=True,
              help="auto, flat, ivfsq, ivf or hnsw.")
@click.option("--nprobe", default=32, show_default=True, help="IVF lists searched per query.")
@click.option("--dtype", type=click.Choice(["float32", "float16"]), default="float32", show_default=True,
              help="How the pool's vectors are stored.")
@click.option("--disk", type=click.Path(file_okay=False), default=None,
              help="Write the pool to a file in this folder and memory-map it (pools larger than memory).")
@click.option("--seed", default=0, show_default=True)
@click.option("--out", default="bench/results/mining.json", show_default=True,
              help="Where to write the JSON.")
@handle_errors
def bench_mining(pools, hard_cases, data, index_kind, nprobe, dtype, disk, seed, out):
    """Mining wall time, peak memory and recall@10 against exact brute force."""
    from loop.assets import cache_dir
    from loop.bench.mining import run_bench, write

    _logging(False)
    ints = lambda text: [int(x) for x in text.split(",") if x.strip()]  # noqa: E731
    if disk:
        Path(disk).mkdir(parents=True, exist_ok=True)
    rows = run_bench(ints(pools), ints(hard_cases), [d.strip() for d in data.split(",")], index_kind, seed,
                     cache_dir() / "bench" / "tweets-minilm.npy", nprobe, dtype, Path(disk) if disk else None)
    click.echo(f"{'data':10}{'pool':>9}{'hard':>7}{'index':>7}{'build s':>9}{'search s':>9}{'total s':>9}"
               f"{'exact s':>9}{'speed-up':>9}{'recall@10':>10}{'peak GiB':>9}{'own GiB':>8}")
    for r in rows:
        speedup = f"{r['speedup_vs_exact']:>9.1f}" if r["speedup_vs_exact"] is not None else f"{'-':>9}"
        click.echo(f"{r['data']:10}{r['pool']:>9}{r['hard_cases']:>7}{r['kind']:>7}{r['build_s']:>9.2f}"
                   f"{r['search_s']:>9.2f}{r['total_s']:>9.2f}{r['exact_s']:>9.2f}{speedup}"
                   f"{r['recall_at_10']:>10.3f}{r['peak_gib']:>9.2f}{r['peak_anon_gib']:>8.2f}")
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
              help="JSON to write (default: bench/results/efficiency-<config name>.json; the PNG goes "
                   "beside it).")
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
                       efficiency_dir(cfg))
    from loop.bench.paired import table_lines

    for line in table_lines(result, result["summary"]):
        click.echo(line)
    click.echo(f"written: {out_path} and {out_path.with_suffix('.png')}")


@bench.command("labels")
@CONFIG_OPT
@click.option("--result", type=click.Path(dir_okay=False),
              help="The efficiency result to read (default: bench/results/efficiency-<config name>.json).")
@click.option("--store", type=click.Path(dir_okay=False),
              help="Its run store (default: <run.dir>/bench-efficiency/store.sqlite).")
@click.option("--out", type=click.Path(dir_okay=False),
              help="JSON to write (default: bench/results/labels-<config name>.json).")
@SET_OPT
@click.option("--verbose", "-v", is_flag=True, help="Debug logging.")
@handle_errors
def bench_labels(config, result, store, out, sets, verbose):
    """Label precision of the samples an efficiency benchmark accepted, by arm and request kind, against a
    reference classifier trained on every labelled row outside test."""
    from loop.bench.labels import run_bench, table_lines

    _logging(verbose)
    cfg = _load(config, _parse_sets(sets))
    name = Path(config).stem if config else "default"
    store_path = Path(store) if store else efficiency_dir(cfg) / "store.sqlite"
    report = run_bench(cfg, Path(result or f"bench/results/efficiency-{name}.json"), store_path,
                       Path(out or f"bench/results/labels-{name}.json"))
    for line in table_lines(report):
        click.echo(line)


@bench.command("noise")
@CONFIG_OPT
@click.option("--seeds", default="0,1,2,3,4", show_default=True, help="Comma-separated student seed offsets.")
@click.option("--variant", "variants", multiple=True, metavar="'KEY=VALUE ...'",
              help="student.* overrides fitted as one variant ('baseline': none); repeatable (default: "
                   "baseline, student.warmup=0, student.average_last=3, student.select_epoch=true).")
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
    cfgs = {name: _load(config, {**base, **ov}) for name, ov in overrides.items()}  # checked before any fit
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
@click.option("--config", "-c", type=click.Path(dir_okay=False),
              help="Config (default: the built-in defaults, shrunk so the trials fit in minutes).")
@click.option("--trials", type=int, default=20, show_default=True,
              help="Kill-and-resume trials (0: the corpora only).")
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
    from loop.bench.outcomes import report
    from loop.bench.reliability import run_bench

    _logging(verbose)
    overrides = _parse_sets(sets)
    cfg = _load(config, overrides)
    result = run_bench(config, overrides, trials, seed, workers, cassette, Path(out),
                       cfg.resolve(cfg.run.dir) / "bench-reliability" / time.strftime("%Y%m%d-%H%M%S"),
                       click.get_current_context().find_root().command)  # the `loop` group: bad inputs use it
    for line in report(result):
        click.echo(line)
    click.echo(f"written: {out}")




@bench.command("compare")
@click.argument("baseline", type=click.Path(exists=True, dir_okay=False))
@click.argument("variant", type=click.Path(exists=True, dir_okay=False))
@click.option("--arm", default="targeted", show_default=True, help="The arm compared in both results.")
@click.option("--baseline-arm", help="The baseline's arm, when another (e.g. none).")
@click.option("--out", type=click.Path(dir_okay=False), help="JSON to write as well.")
@handle_errors
def bench_compare(baseline, variant, arm, baseline_arm, out):
    """One change against its baseline: two efficiency results' ARM paired by seed (test and stopping-split
    differences with 95% intervals; accepted samples per 1,000 teacher tokens)."""
    import json

    from loop.bench.compare import compare, table_lines

    report = compare(Path(baseline), Path(variant), arm, baseline_arm)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(report, indent=1))
    for line in table_lines(report):
        click.echo(line)
