"""Line scorer for fault localization: a pretrained encoder (MiniLM by default) reads the whole
function; each line's score is a learned projection of the mean of its tokens' final states.

The classes are line numbers ("1".."max_lines"): `predict` gives, per function, a softmax
over its own non-empty lines (lines it does not have, or that were truncated away, get
probability 0), so the loop's mining (margin, entropy) and its neighbourhoods (the mean
token state of the function) work as for any classifier. Every `fit` restarts from the
pretrained weights with the same seed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from loop.assets import resolve_model
from loop.embedder import mean_pool
from loop.index import normalize
from loop.options import Component, option
from loop.records import Example, Predictions
from loop.students.base import TrainingOptions, train_epochs

if TYPE_CHECKING:
    from loop.config import StudentConfig

log = logging.getLogger(__name__)


def line_starts(text: str) -> list[int]:
    """Character offset where each line starts."""
    starts, pos = [], 0
    for line in text.split("\n"):
        starts.append(pos)
        pos += len(line) + 1
    return starts


class LineStudent(Component):

    kinds = ("line_scorer",)

    @dataclass
    class Options(TrainingOptions):
        truncation_side: Literal["right", "left"] = option("right", "which end of a too-long function is "
                                                                    "cut: right, or left (keeps the body "
                                                                    "after a long docstring)")

    def __init__(self, cfg: StudentConfig, labels: list[str]):
        import torch
        from transformers import AutoTokenizer

        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.cfg, self.labels = cfg, list(labels)
        self.max_lines = len(self.labels)
        self.path = resolve_model(cfg.model)
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.tokenizer.truncation_side = cfg.truncation_side  # left: keep the body after a long docstring
        self.model = self.head = None
        self._fresh()

    def _fresh(self) -> None:
        import torch
        from transformers import AutoModel

        torch.manual_seed(self.cfg.seed)
        self.model = AutoModel.from_pretrained(self.path)
        self.head = torch.nn.Linear(self.model.config.hidden_size, 1)

    def _encode(self, texts: list[str]):
        """Token ids plus, per text, a (max_lines, tokens) matrix that averages tokens into lines."""
        import torch

        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.cfg.max_length,
                             return_offsets_mapping=True, return_tensors="pt")
        offsets = enc.pop("offset_mapping")
        n, t = enc["input_ids"].shape
        assign = torch.zeros(n, self.max_lines, t)
        for i, text in enumerate(texts):
            starts = np.array(line_starts(text))
            for j in range(t):
                a, b = offsets[i, j].tolist()
                if b <= a:  # special or padding token
                    continue
                line = int(np.searchsorted(starts, a, side="right")) - 1
                if line < self.max_lines:
                    assign[i, line, j] = 1.0
        has = assign.sum(-1) > 0  # lines with at least one token
        assign = assign / assign.sum(-1, keepdim=True).clamp(min=1.0)
        return enc, assign, has

    def _scores(self, enc, assign, has):
        import torch

        hidden = self.model(**enc).last_hidden_state  # (n, t, d)
        lines = assign @ hidden  # (n, max_lines, d)
        logits = self.head(lines).squeeze(-1).masked_fill(~has, float("-inf"))
        return torch.nan_to_num(logits, neginf=-1e9), hidden

    def fit(self, examples: list[Example]) -> None:
        """Cross-entropy over each function's lines, the faulty line the target."""
        import torch

        self._fresh()
        usable = [e for e in examples if e.label.isdigit() and 1 <= int(e.label) <= self.max_lines]
        if len(usable) < len(examples):
            log.warning("%d example(s) without a usable fault line skipped", len(examples) - len(usable))

        def batch_loss(idx):
            batch = [usable[i] for i in idx]
            enc, assign, has = self._encode([e.text for e in batch])
            target = torch.tensor([int(e.label) - 1 for e in batch])
            keep = has[torch.arange(len(batch)), target]  # the faulty line survived truncation
            if not keep.any():
                return None
            logits, _ = self._scores(enc, assign, has)
            return torch.nn.functional.cross_entropy(logits[keep], target[keep])

        params = list(self.model.parameters()) + list(self.head.parameters())
        train_epochs(self.model, params, len(usable), self.cfg, batch_loss)

    def predict(self, examples: list[Example]) -> Predictions:
        import torch

        texts = [e.text for e in examples]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        probs = np.zeros((len(texts), self.max_lines), np.float32)
        emb = np.zeros((len(texts), self.model.config.hidden_size), np.float32)
        with torch.inference_mode():
            for start in range(0, len(order), 32):
                idx = order[start:start + 32]
                enc, assign, has = self._encode([texts[i] for i in idx])
                logits, hidden = self._scores(enc, assign, has)
                probs[idx] = torch.softmax(logits, -1).numpy()
                emb[idx] = mean_pool(hidden, enc["attention_mask"]).numpy()
        labels = [self.labels[i] for i in probs.argmax(1)] if len(texts) else []
        return Predictions(labels=labels, probs=probs, embeddings=normalize(emb))

    def save(self, path: str) -> None:
        import torch

        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        torch.save(self.head.state_dict(), f"{path}/line_head.pt")
