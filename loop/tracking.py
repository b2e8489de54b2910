"""MLflow tracking: a parent run per `loop run`, a nested child run per round.

The parent holds the resolved config (params) and the metric curves over rounds; each
child holds the round's metrics, the error-analysis table, accepted / rejected samples
and a confusion-matrix PNG.

A tracking server (`tracking.uri: http://...`) that does not answer at start is an error
before anything loads. One that goes away mid-run costs no work: the first call that fails
(after MLflow's own retries) marks the tracker `lost`, later calls are skipped, the run goes
on in the store, and `loop run --resume` logs the rounds MLflow missed (`log_missing`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import posixpath
import re
import tempfile
from pathlib import Path

import numpy as np

from loop.errors import TrackingError
from loop.plots import confusion_png, embedding_map_png

log = logging.getLogger(__name__)

# MLflow's client retries a failing call for about 4 minutes by default; a run waits a few seconds
RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
           "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


def is_remote(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def check_server(uri: str) -> None:
    """A TrackingError naming the URI unless something answers at its /health."""
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=10)
    except urllib.error.HTTPError:
        return  # something answers (behind a proxy or auth, say): MLflow's own calls say what is wrong
    except (OSError, ValueError) as exc:
        raise TrackingError(f"tracking.uri: no MLflow tracking server answers at {uri} "
                            f"({getattr(exc, 'reason', exc)}); start it (`mlflow server --host HOST --port "
                            "PORT ...`) or leave tracking.uri out for the local store") from None


def _soft(method):
    """On a remote tracker, a call that fails marks the tracker lost (and later calls are skipped)
    instead of stopping the run; on a local store it raises."""
    @functools.wraps(method)
    def call(self, *args, **kwargs):
        if self.lost:
            return None
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:
            if not is_remote(self.uri):
                raise
            self.lost = f"{type(exc).__name__}: {str(exc)[:300]}"
            log.warning("the MLflow tracking server %s stopped answering (%s); the run goes on in the store, "
                        "and `loop run --resume <run id>` logs what MLflow missed once the server is back",
                        self.uri, self.lost)
            while self.mlflow.active_run() is not None:  # nothing left active for MLflow to end at exit
                self._end("FAILED")
            return None
    return call


def flatten(d: dict, prefix: str = "") -> dict:
    """A nested mapping as dotted keys: {'a': {'b': 1}} -> {'a.b': 1}."""
    out = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


# what MLflow takes in a metric name (on POSIX), and its longest name
_NOT_IN_NAME = re.compile(r"[^/\w.\- :]")
MAX_NAME = 250


def _safe(key: str) -> str:
    name = _NOT_IN_NAME.sub("_", key)
    # MLflow also refuses a name that reads as another path ('a/', 'a//b', 'x/../y', '/a')
    if posixpath.normpath(name) != name or name.startswith(("/", "..")) or name == ".":
        name = name.replace("/", "_")
        name = "_" + name if name.startswith(".") else name
    return name[:MAX_NAME]


# per-class scores, rejections by reason and stage seconds go in groups of their own, so that a run's
# overview shows the headline figures (stop / test metric, tokens, accepted) first
_GROUPS = ((re.compile(r"^(stop|test)_(precision|recall|f1)_"), "per_class"),
           (re.compile(r"^rejected_"), "rejected"), (re.compile(r"^seconds_"), "seconds"))


def _grouped(key: str) -> str:
    """The name a key would have if MLflow took any character: its group's folder, then the key."""
    for pattern, group in _GROUPS:
        if pattern.match(key):
            return f"{group}/{key}"
    return key


def _name(key: str) -> str:
    grouped = _grouped(key)
    if grouped == key:
        return _safe(key)
    return f"{grouped.split('/', 1)[0]}/{_safe(key.replace('/', '_'))}"[:MAX_NAME]


def metric_names(keys, taken: dict[str, str] | None = None) -> dict[str, str]:
    """An MLflow metric name for each key: the key itself where MLflow takes it (per-class scores,
    rejections and seconds under a group folder: 'per_class/test_f1_x'), else the key with the
    characters MLflow refuses replaced by '_' (a label may hold any: Banking77's 'reverted_card_payment?'),
    with a suffix where two keys would share a name. `taken` (earlier answers) keeps a key's name the same
    across rounds; the answer does not depend on the order of the keys."""
    names = dict(taken or {})
    used = set(names.values())
    fresh = sorted({k for k in keys if k not in names})
    for key in sorted(fresh, key=lambda k: _name(k) != _grouped(k)):  # keys MLflow takes keep theirs first
        name, base, n = _name(key), _name(key), 1
        while name in used:
            n += 1
            name = f"{base[:MAX_NAME - len(str(n)) - 1]}_{n}"
        names[key] = name
        used.add(name)
    return {k: names[k] for k in keys}


CURVES = ("accuracy", "macro_f1", "pass_at_1", "top1")
EXPERIMENT_KIND, TRAINING = "mlflow.experimentKind", "custom_model_development"
ML_VIEW = "machine_learning"


def parent_curve(key: str) -> bool:
    """Whether a round metric is also drawn on the parent run, over rounds: spending, accepted samples and
    the headline stopping-split and test metrics."""
    split, _, name = key.partition("_")
    return key in ("tokens_spent_total", "accepted_total") or (split in ("stop", "test") and name in CURVES)


ROUND_PARAMS = ("generation.strategy", "teacher.backend", "teacher.model", "student.model", "budget.tokens",
                "generation.targeted_requests", "generation.revise_requests", "teacher.max_tokens")


def round_params(config: dict, tags: dict) -> dict:
    """A round's key parameters: strategy, teacher, student, budget, prompts (the rest is on the parent)."""
    flat = flatten(config)
    params = {k: str(flat[k])[:500] for k in ROUND_PARAMS if k in flat}
    if "prompt_version" in tags:
        params["prompts"] = tags["prompt_version"]
    return params


def resolve_uri(uri: str, base_dir: str = ".") -> str:
    """A tracking URI with a relative SQLite path made absolute against `base_dir`."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str((Path(base_dir) / uri[len("sqlite:///"):]).resolve())
    return uri


class Tracker:
    """Thin MLflow wrapper; the tracking URI's folder is created on demand."""

    def __init__(self, uri: str, experiment: str, base_dir: str = "."):
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        import mlflow

        uri = resolve_uri(uri, base_dir)
        self.lost: str | None = None  # why a remote server stopped answering mid-run
        if is_remote(uri):
            for key, value in RETRIES.items():
                os.environ.setdefault(key, value)
            check_server(uri)
        if uri.startswith("sqlite:///"):
            Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        self.uri, self.experiment = uri, experiment
        self.mlflow = mlflow
        mlflow.set_tracking_uri(uri)
        existing = mlflow.get_experiment_by_name(experiment)
        if existing is not None and EXPERIMENT_KIND not in existing.tags:  # made before the tag was set
            client = mlflow.tracking.MlflowClient()
            client.set_experiment_tag(existing.experiment_id, EXPERIMENT_KIND, TRAINING)
        if existing is None:
            location = None
            if uri.startswith("sqlite:///"):
                location = Path(uri[len("sqlite:///"):]).parent.resolve().as_uri()
            # a model-training experiment: the UI opens its runs in the training view, not under GenAI
            mlflow.create_experiment(experiment, artifact_location=location, tags={EXPERIMENT_KIND: TRAINING})
        self.experiment_id = mlflow.set_experiment(experiment).experiment_id
        self.parent_id: str | None = None
        self.round_params: dict = {}  # what each round's child run shows as its parameters
        self.names: dict[str, str] = {}  # metric key -> the name MLflow knows it by

    def _names(self, keys) -> dict[str, str]:
        self.names.update(metric_names(keys, self.names))
        return {k: self.names[k] for k in keys}

    @contextlib.contextmanager
    def parent(self, name: str, config: dict, tags: dict, resume_id: str | None = None):
        """The run's parent MLflow run: a new one, or (on resume) the one it had, continued. It yields None
        when a remote server has stopped answering."""
        self.round_params = round_params(config, tags)
        with self._active(self._start_parent, name, config, tags, resume_id) as run:
            yield run

    @_soft
    def _start_parent(self, name: str, config: dict, tags: dict, resume_id: str | None):
        # tagged at creation, so a run killed before its store learnt this id can still find it
        run = (self.mlflow.start_run(run_id=resume_id) if resume_id
               else self.mlflow.start_run(run_name=name, tags=tags))
        self.parent_id = run.info.run_id
        if not resume_id:
            self.mlflow.log_params({k: str(v)[:500] for k, v in flatten(config).items()})
        self.mlflow.set_tags(tags)
        return run

    @contextlib.contextmanager
    def _active(self, start, *args):
        """An MLflow run started by `start(*args)` (None if the server is lost), ended FINISHED or FAILED."""
        run, status = start(*args), "FAILED"
        try:
            yield run
            status = "FINISHED"
        finally:
            if run is not None:
                self._end(status)

    def _end(self, status: str) -> None:
        try:  # MLflow takes the run off its stack first, so a lost server leaves nothing active
            self.mlflow.end_run(status)
        except Exception as exc:
            if not is_remote(self.uri):
                raise
            log.debug("end_run: %s", exc)

    def run_url(self, mlflow_run_id: str, ui: str | None = None) -> str | None:
        """The run's page in the MLflow UI at `ui`, or on the tracking server itself; None for a local store
        with no UI given (`loop ui` starts one)."""
        base = ui or (self.uri if self.uri.startswith(("http://", "https://")) else None)
        if not base:
            return None
        # the UI's model-training view (its default is the GenAI one, whatever the experiment's kind)
        page = f"#/experiments/{self.experiment_id}/runs/{mlflow_run_id}"
        return f"{base.rstrip('/')}/{page}?workflowType={ML_VIEW}"

    def find_parent(self, run_id: str, since: float) -> str | None:
        """The parent MLflow run of `run_id` created since `since` (epoch seconds), if there is one."""
        exp = self.mlflow.get_experiment_by_name(self.experiment)
        runs = self.mlflow.tracking.MlflowClient().search_runs(
            [exp.experiment_id], f"tags.run_id = '{run_id}'", order_by=["attributes.start_time DESC"])
        parents = [r for r in runs
                   if "mlflow.parentRunId" not in r.data.tags and r.info.start_time >= since * 1000]
        return parents[0].info.run_id if parents else None

    @contextlib.contextmanager
    def round(self, rnd: int):
        """The round's child run; an attempt that died (killed, or failed) is continued, not repeated. It
        yields None when a remote server has stopped answering."""
        with self._active(self._start_child, rnd) as run:
            yield run

    @_soft
    def _start_child(self, rnd: int):
        earlier = self._unfinished_child(rnd)
        run = (self.mlflow.start_run(run_id=earlier, nested=True) if earlier
               else self.mlflow.start_run(run_name=f"round-{rnd}", nested=True))
        self.mlflow.set_tag("round", rnd)
        if not earlier:  # a continued attempt has them
            self.mlflow.log_params({"round": rnd, **self.round_params})
        return run

    @_soft
    def log_missing(self, rows: list[dict]) -> dict[int, str]:
        """Child runs for finished rounds that MLflow missed (the server was away): their metrics and error
        analysis from the store. Returns {round: new MLflow run id}."""
        logged = {}
        for row in rows:
            if row["mlflow_run_id"]:
                continue
            with self.round(row["round"]) as run:
                self.mlflow.set_tag("logged_on_resume", "true")
                self.log_round(row["round"], row["metrics"])
                if row.get("analysis"):
                    self.mlflow.log_dict(row["analysis"], "error_analysis/analysis.json")
            if run is None or self.lost:
                break
            logged[row["round"]] = run.info.run_id
            log.info("round %d: logged to MLflow now (the tracking server was away when it finished)",
                     row["round"])
        return logged

    def _unfinished_child(self, rnd: int) -> str | None:
        if self.parent_id is None:
            return None
        exp = self.mlflow.get_experiment_by_name(self.experiment)
        runs = self.mlflow.tracking.MlflowClient().search_runs(
            [exp.experiment_id], f"tags.mlflow.parentRunId = '{self.parent_id}' and tags.round = '{rnd}'")
        left = [r for r in runs if r.info.status != "FINISHED"]
        return left[0].info.run_id if left else None

    @_soft
    def log_round(self, rnd: int, metrics: dict[str, float]) -> None:
        """Metrics into the child run, and the same curve points into the parent (the stop / test metrics
        also under by_tokens/, their step the teacher tokens spent). Metric names that differ from their key
        (grouped, or holding what MLflow refuses) are listed in the child run's metric_names.json."""
        clean = {k: float(v) for k, v in metrics.items() if v is not None}
        names = self._names(clean)
        self.mlflow.log_metrics({names[k]: v for k, v in clean.items()}, step=rnd)
        renamed = {name: key for key, name in names.items() if name != key}
        if renamed:
            self.mlflow.log_dict(renamed, "metric_names.json")
        client = self.mlflow.tracking.MlflowClient()
        tokens = int(clean.get("tokens_spent_total", 0))
        for key, value in clean.items():
            if parent_curve(key):
                client.log_metric(self.parent_id, names[key], value, step=rnd)
                if key.startswith(("stop_", "test_")):  # the same curve with teacher tokens as its steps
                    client.log_metric(self.parent_id, f"by_tokens/{names[key]}", value, step=tokens)

    @_soft
    def log_table(self, rows: list[dict], name: str) -> None:
        """A table artifact (JSON, shown as a table in the MLflow UI), skipped when empty."""
        if rows:
            import pandas as pd

            self.mlflow.log_table(pd.DataFrame(rows), artifact_file=name)

    @_soft
    def log_confusion(self, mat: np.ndarray, labels: list[str], name: str, title: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            confusion_png(mat, labels, path, title)
            self.mlflow.log_artifact(str(path))

    @_soft
    def log_embedding_map(self, vectors, status, new_vecs, name: str, marks=()) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(name).name
            embedding_map_png(vectors, status, new_vecs, path, "mining split (PCA of embeddings)", marks)
            self.mlflow.log_artifact(str(path), artifact_path=str(Path(name).parent))

    @_soft
    def log_json(self, obj, name: str) -> None:
        """A JSON artifact of the active run."""
        self.mlflow.log_dict(obj, name)

    @_soft
    def log_file(self, path: Path) -> None:
        """A file, as an artifact of the active run."""
        self.mlflow.log_artifact(str(path))

    @_soft
    def set_tag(self, key: str, value: str) -> None:
        """A tag on the active run (the round's, inside `round`)."""
        self.mlflow.set_tag(key, value)

    @_soft
    def log_metric(self, key: str, value: float) -> None:
        """One metric on the active run, under the name MLflow takes for `key`."""
        self._names([key])
        self.mlflow.log_metric(self.names[key], value)

    @_soft
    def log_parent_summary(self, summary: dict) -> None:
        client = self.mlflow.tracking.MlflowClient()
        names = self._names(summary)
        for key, value in summary.items():
            if parent_curve(key):  # already a curve over rounds: a point at step 0 would break it
                continue
            if isinstance(value, (int, float)):
                client.log_metric(self.parent_id, names[key], float(value))
            else:
                client.set_tag(self.parent_id, names[key], str(value))
