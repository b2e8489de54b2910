"""Which run a `loop run` is: a new run never takes a name in use, a resumed run takes its resolved
config from the run store (flags given again must match it), and one process works on a run at a time."""

from __future__ import annotations

import contextlib
import json
import shlex
import tempfile
from pathlib import Path

import yaml

from loop.config import Config, load_config
from loop.errors import ConfigError, RunStateError
from loop.tracking import flatten

STORE = "store.sqlite"
IGNORED = ("loop.rounds", "run.dir")  # rounds may extend a run; the store may have moved with its folder


def _open(store_path: Path):
    from loop.store import RunStore

    return RunStore(store_path)


def _config_base(path: str) -> Path:
    """The folder a config file's relative paths resolve from, as load_config does (configs/: the project)."""
    p = Path(path).resolve()
    return p.parent.parent if p.parent.name == "configs" else p.parent


def config_keys(path: str | None) -> dict:
    """The dotted keys a config file sets (nothing for no file)."""
    if path is None:
        return {}
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError:
        raise ConfigError(f"{path}: config file not found") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    return flatten(data)


def runs_root(config: str | None, flags: dict) -> Path:
    """Where a run with these flags keeps its store: run.dir from the flags or the config file, relative to
    the config file's base folder (without a file: the working folder), else `runs` in the working folder."""
    where = flags.get("run.dir") or config_keys(config).get("run.dir")
    base = _config_base(config) if config and where else Path.cwd()  # the default is the working folder's
    where = where or Config().run.dir
    return (base / Path(str(where)).expanduser()).resolve()


def _info(store_path: Path, run_id: str) -> dict:
    if not store_path.is_file():
        raise RunStateError(f"--resume {run_id}: no run store at {store_path}")
    store = _open(store_path)
    try:
        info = store.run_info(run_id)
        if info is not None:  # finished rounds MLflow missed (a tracking server away): resuming logs them
            info["untracked"] = [r["round"] for r in store.round_rows(run_id) if not r["mlflow_run_id"]]
    finally:
        store.close()
    if info is None:
        raise RunStateError(f"--resume {run_id}: no such run in {store_path}")
    return info


def resume_config(run_id: str, config: str | None, flags: dict, locate: str | None = None) -> Config:
    """The config of run `run_id` as stored, with `config`'s keys and the flags on top; refused if they
    change it.

    `locate` is the config file that only tells where the store is (the default config when none is given).
    """
    root = runs_root(config or locate, flags)
    info = _info(root / STORE, run_id)
    stored = flatten(info["config"])
    if stored.get("task.name") == "faultloc":  # its labels are derived from task.max_lines, never given
        stored.pop("task.labels", None)
    cfg = load_config(None, {**stored, **config_keys(config), **flags, "run.dir": str(root)})
    cfg.base_dir = info["base_dir"] or str(_config_base(config) if config else Path.cwd())
    check_resumable(cfg, run_id, root / STORE)
    return cfg


def check_resumable(cfg: Config, run_id: str, store_path: Path) -> None:
    """A run can be resumed only from its store, with the config it was started with (rounds aside)."""
    info = _info(store_path, run_id)
    if info["status"] == "done" and cfg.loop.rounds <= info["config"]["loop"]["rounds"] \
            and not info["untracked"]:
        raise RunStateError(f"--resume {run_id}: the run has finished (raise --rounds to extend it)")
    old, new = flatten(info["config"]), flatten(cfg.to_dict())
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and k not in IGNORED)
    if changed:
        raise RunStateError(f"--resume {run_id}: the config differs from the run's in {', '.join(changed)} "
                            "(the run's config is in its store: leave those flags out, or give its values)")


def check_new(run_id: str, store_path: Path) -> None:
    """A new run may not take the name of a run in the store (it would merge into it); the record of a run
    that failed before it started (no MLflow run, request or round) is dropped instead."""
    if not store_path.is_file():
        return
    store = _open(store_path)
    try:
        if store.run_info(run_id) is None:
            return
        if store.started(run_id):
            raise RunStateError(f"run {run_id} already exists in {store_path}: continue it with "
                                f"`loop run --resume {run_id}`, or give the new run another --name")
        store.forget_unstarted(run_id)
    finally:
        store.close()


def resume_command(cfg: Config, run_id: str, locate: str | None = None) -> str:
    """The command that continues the run, as it can be pasted in this folder."""
    words = ["loop", "run", "--resume", run_id]
    root = cfg.resolve(cfg.run.dir).resolve()
    if root != runs_root(locate, {}):
        value = str(root) if yaml.safe_load(str(root)) == str(root) else json.dumps(str(root))
        words += ["--set", f"run.dir={value}"]
    return shlex.join(words)


@contextlib.contextmanager
def run_lock(run_dir: Path):
    """One process per run: a second `loop run` on a run in use is refused."""
    import fcntl

    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / ".lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunStateError(f"run {run_dir.name} is in use by another loop process "
                                f"({run_dir / '.lock'})") from None
        yield


def check_run_dir(cfg: Config) -> None:
    """run.dir can be created and written: checked by writing a temporary file into its nearest existing
    folder, so a dry run finds what a real run would fail on, and creates nothing."""
    target = cfg.resolve(cfg.run.dir)
    probe = target
    try:
        while not probe.exists():
            probe = probe.parent
        if not probe.is_dir():
            raise ConfigError(f"run.dir: cannot write {target} ({probe} is not a folder)")
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        raise ConfigError(f"run.dir: cannot write {target} ({exc.strerror}: {probe})") from None
