"""Text classification (single text, one label from a fixed set)."""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from loop.data import clean_text
from loop.errors import ConfigError
from loop.options import option
from loop.prompts import Prompts
from loop.records import Candidate, GenRequest
from loop.tasks.base import Task

if TYPE_CHECKING:
    from loop.config import Config

FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)
# a sample that talks about labelling, classifiers or the prompt is about the request, not an example of the
# task ("A small seller mislabelled a tweet as 'positive'...")
LEAK_WORDS = re.compile(r"\bmislabel\w*|\blabel(?:l?ed|l?ing)\b|\bclassif(?:ier|iers|ication|ied|y)\b"
                        r"|\bannotat\w*|\btraining (?:data|examples?|sets?|samples?)\b"
                        r"|\b(?:the|this|above|following) prompts?\b|\binstructions? above\b", re.I)


MAX_STARTS = 64  # '{' / '[' positions tried in a reply with prose around its JSON
# what json raises on hostile but well-formed-looking text besides JSONDecodeError (a ValueError):
# RecursionError for absurdly deep nesting, ValueError for an integer over Python's 4,300-digit int(str)
# limit
UNDECODABLE = (ValueError, RecursionError)


def extract_json(text: str) -> Any:
    """The JSON value in a reply: whole text, a fenced block, or the first decodable {...}/[...]."""
    candidates = [text.strip()] + [m.group(1).strip() for m in FENCE.finditer(text)]
    for chunk in candidates:
        try:
            return json.loads(chunk)
        except UNDECODABLE:
            pass
    decoder = json.JSONDecoder()
    starts = (i for i, ch in enumerate(text) if ch in "{[")
    for i in itertools.islice(starts, MAX_STARTS):
        try:
            return decoder.raw_decode(text, i)[0]
        except UNDECODABLE:
            continue
    return None


def salvage_items(text: str) -> list[dict]:
    """Complete {"text": ..., "label": ...} objects from a truncated reply."""
    decoder = json.JSONDecoder()
    items = []
    for m in re.finditer(r"\{\s*\"text\"", text):
        try:
            obj = decoder.raw_decode(text, m.start())[0]
        except UNDECODABLE:
            continue
        if isinstance(obj, dict):
            items.append(obj)
    return items


def _items(value: Any) -> list | None:
    if isinstance(value, dict) and isinstance(value.get("samples"), list):
        return value["samples"]
    if isinstance(value, list):
        return value
    if isinstance(value, dict) and "text" in value:
        return [value]
    return None


def scores(pred: list[str], gold: list[str], labels: list[str]) -> dict[str, float]:
    """Accuracy, macro-F1 and per-class precision / recall / F1. Macro-F1 averages over the labels present in
    the scored split's gold labels (all labels when it has none): a label the split lacks would add a zero
    no student could avoid."""
    p, g = np.array(pred), np.array(gold)
    out = {"accuracy": float((p == g).mean()) if len(g) else 0.0}
    f1s = []
    present = {lab for lab in labels if (g == lab).any()} or set(labels)
    for lab in labels:
        tp = float(((p == lab) & (g == lab)).sum())
        prec = tp / max(1.0, float((p == lab).sum()))
        rec = tp / max(1.0, float((g == lab).sum()))
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        out.update({f"precision_{lab}": prec, f"recall_{lab}": rec, f"f1_{lab}": f1})
        if lab in present:
            f1s.append(f1)
    out["macro_f1"] = float(np.mean(f1s))
    return out


def focus_labels(variables: dict, labels: list[str]) -> list[str]:
    """The labels a request is about, in the task's order: its exemplars' and contrasts', its confused pair,
    the revised example's and the student's wrong prediction."""
    named = ([e.label for e in variables.get("exemplars") or []]
             + [e.label for e in variables.get("contrasts") or []])
    named += list(variables.get("confusion") or ())
    if variables.get("example") is not None:
        named.append(variables["example"].label)
    named.append(variables.get("predicted") or "")
    chosen = set(named)
    return [lab for lab in labels if lab in chosen]


def leak_pattern(labels: list[str]) -> re.Pattern:
    """What marks a sample as leaking its request: words about labelling and prompts, a label quoted as a
    label ('positive'), or a label name no text would hold verbatim (one with '_' or other non-letters)."""
    quoted = "|".join(rf"[\"'‘’“”]{re.escape(lab)}[\"'‘’“”]" for lab in labels)
    odd = "|".join(rf"\b{re.escape(lab)}" for lab in labels if not re.fullmatch(r"[A-Za-z][A-Za-z -]*", lab))
    return re.compile("|".join(p for p in (LEAK_WORDS.pattern, quoted, odd) if p), re.I)


class ClassifyTask(Task):
    name = "classify"

    @dataclass
    class Options:
        list_labels: int = option(20, "most labels a prompt lists; with more, a request lists only the "
                                      "labels it is about (its examples', its confused pair) while the JSON "
                                      "schema still allows all", ge=2)
        reject_leaks: bool = option(True, "reject samples that talk about labels, classifiers or the prompt, "
                                          "or hold a label name no text would (prompt_leak)")

    def __init__(self, cfg: Config):
        super().__init__(cfg)
        self.prompts = Prompts(cfg.prompts_folder())
        if cfg.generation.minimal_pairs and not self.prompts.has("pairs.j2"):
            raise ConfigError(f"generation.minimal_pairs: {self.prompts.folder / 'pairs.j2'} not found")
        self._lower = {lab.lower(): lab for lab in self.labels}
        self._leak = leak_pattern(self.labels) if cfg.task.reject_leaks else None

    def common(self) -> dict:
        """Variables every template sees."""
        return {"description": self.cfg.description, "labels": self.labels, "label_total": len(self.labels)}

    def load_splits(self) -> dict:
        from loop.data import load_splits

        self.data_notes = {}  # what reading found, for the data report
        return load_splits(self.full, self.data_notes)

    def json_schema(self, n: int, kind: str = "targeted") -> dict:
        item = {"type": "object", "properties": {"text": {"type": "string"},
                                                  "label": {"type": "string", "enum": self.labels}},
                "required": ["text", "label"], "additionalProperties": False}
        return {"type": "object", "properties": {"samples": {"type": "array", "items": item,
                                                            "minItems": 1, "maxItems": n}},
                "required": ["samples"], "additionalProperties": False}

    def messages(self, kind: str, **variables) -> list[dict]:
        common = self.common()
        if len(self.labels) > self.cfg.list_labels and kind != "label":
            common["labels"] = focus_labels(variables, self.labels)
        return self.prompts.messages(kind, common, **variables)

    def _candidate(self, item: Any, req: GenRequest) -> Candidate:
        if not isinstance(item, dict) or not isinstance(item.get("text"), str) \
                or not isinstance(item.get("label"), str):
            return Candidate(text=str(item)[:500], label="", request_id=req.id, kind=req.kind,
                             verdict="rejected", reason="schema")
        text = clean_text(item["text"])  # '' when only invisible characters: rejected as 'length'
        label = self._lower.get(item["label"].strip().lower())
        cand = Candidate(text=text, label=label or item["label"][:50], request_id=req.id, kind=req.kind,
                         meta=dict(req.meta))
        if label is None:
            cand.verdict, cand.reason = "rejected", "label"
        elif not self.cfg.min_chars <= len(text) <= self.cfg.max_chars:
            cand.verdict, cand.reason = "rejected", "length"
        elif self._leak is not None and self._leak.search(text):
            cand.verdict, cand.reason = "rejected", "prompt_leak"
        return cand

    def parse(self, text: str, req: GenRequest) -> list[Candidate]:
        """Candidates from one reply; unparseable output is one rejected candidate ('parse')."""
        items = _items(extract_json(text))
        if items is None:
            items = salvage_items(text) or None
        if not items:
            return [Candidate(text=text[:500], label="", request_id=req.id, kind=req.kind,
                              verdict="rejected", reason="parse")]
        return [self._candidate(item, req) for item in items]

    def label_schema(self) -> dict:
        return {"type": "object", "properties": {"label": {"type": "string", "enum": self.labels}},
                "required": ["label"], "additionalProperties": False}

    def read_label(self, text: str) -> str | None:
        """The label of a blind-labelling reply, or None if there is none from the label set."""
        value = extract_json(text)
        raw = value.get("label") if isinstance(value, dict) else None
        if not isinstance(raw, str):
            found = [lab for lab in self.labels if re.search(rf"\b{re.escape(lab)}\b", text, re.I)]
            return found[0] if len(found) == 1 else None
        return self._lower.get(raw.strip().lower())

    def metric(self, pred, examples: list) -> dict[str, float]:
        return scores(pred.labels, [e.label for e in examples], self.labels)
