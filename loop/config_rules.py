"""The rules a config must keep across its settings: declared ranges and orderings, the label set, what pairs
with what (from the components' class attributes) and each chosen component's own rules."""

from __future__ import annotations

from typing import TYPE_CHECKING

from loop.config_check import check_ranges
from loop.errors import ConfigError
from loop.registry import SECTIONS

if TYPE_CHECKING:
    from loop.config import Config


def component(cfg: Config, section: str) -> type:
    """The class chosen for a component section (task, student, teacher)."""
    select, registry = SECTIONS[section]
    return registry[getattr(getattr(cfg, section), select)]


# (a, b): a must not exceed b
ORDERED = [("task.min_chars", "task.max_chars"), ("generation.cluster_floor", "generation.cluster_cap")]


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


def _pairing(cfg: Config) -> list[tuple[bool, str, str]]:
    """What pairs with what, from the classes: the task's student kind and metrics, crossval's classifier."""
    task, student = component(cfg, "task"), component(cfg, "student")
    fits = sorted(n for n, c in SECTIONS["student"][1].items() if task.student_kind in c.kinds)
    classifiers = {"text_classifier", "pair_classifier"}
    return [(task.student_kind in student.kinds, "student.name",
             f"task {cfg.task.name} needs a {task.student_kind} student: {', '.join(fits)}"),
            (cfg.loop.metric in task.metrics, "loop.metric",
             f"task {cfg.task.name} reports {', '.join(task.metrics)}"),
            (cfg.mining.source == "dev" or bool(classifiers & set(student.kinds)), "mining.source",
             "crossval needs a classifier student"),
            (not cfg.generation.minimal_pairs or task.teacher_labels, "generation.minimal_pairs",
             f"task {cfg.task.name} is labelled by running code: its targeted prompts already ask for "
             "variants on both sides"),
            (not set(cfg.data.drop_labels) & set(cfg.task.labels), "data.drop_labels",
             f"{', '.join(sorted(set(cfg.data.drop_labels) & set(cfg.task.labels)))} also in task.labels: a "
             "label left out of the data cannot be learnt")]


def validate(cfg: Config, where: str) -> None:
    """Declared ranges and orderings, then the rules that tie settings of different sections together: the
    pairings the components declare, then each chosen component's own rules."""
    check_ranges(cfg, where)
    _check_order(cfg, where)
    _check_labels(cfg.task.labels, where)
    checks = _pairing(cfg)
    for name in SECTIONS:
        checks += component(cfg, name).config_rules(cfg)
    for ok, key, msg in checks:
        if not ok:
            raise ConfigError(f"{where}:{key}: {msg}")
    if cfg.budget.money is not None \
            and not (cfg.budget.price_prompt_per_1k or cfg.budget.price_completion_per_1k):
        raise ConfigError(f"{where}:budget.money: a money cap needs price_prompt_per_1k or "
                          "price_completion_per_1k")
