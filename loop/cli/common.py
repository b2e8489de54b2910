"""What every command shares: the environment, logging, the error boundary, config loading and options.

Errors become CLI messages here (`handle_errors`) and nowhere else."""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

import click
import yaml

from loop.errors import LoopError
from loop.redact import install as redact_logs
from loop.redact import redact

log = logging.getLogger("loop")
DEFAULT_CONFIG = "configs/default.yaml"


def _environment() -> None:
    """Offline by default; quiet third-party loggers unless asked."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def _logging(verbose: bool, quiet: bool = False) -> None:
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "INFO" if verbose else "ERROR")
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("transformers", "mlflow", "alembic", "urllib3", "httpx", "filelock", "faiss"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("vllm.triton_utils").setLevel(logging.ERROR)  # "Triton is installed, but ..." on CPU
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


CONFIG_OPT = click.option("--config", "-c", type=click.Path(dir_okay=False),
                          help=f"YAML config (default: {DEFAULT_CONFIG} if present, else built-in defaults).")
SET_OPT = click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                       help="Override any config key, e.g. --set budget.tokens=20000 (repeatable).")


