"""Encoder classifier: a pretrained sentence encoder (MiniLM by default) plus a new head.

Every `fit` starts again from the pretrained weights with the same seed, so a round's
student depends only on its training set (seed + accepted samples), not on history.
"""

from __future__ import annotations

import logging

import numpy as np

from loop.assets import resolve_model
from loop.config import StudentConfig
from loop.data import PAIR_SEP, Example
from loop.embedder import mean_pool
from loop.index import normalize
from loop.students.base import Predictions, train_epochs

log = logging.getLogger(__name__)


class EncoderStudent:
    def __init__(self, cfg: StudentConfig, labels: list[str]):
        import torch
        from transformers import AutoTokenizer

        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.cfg, self.labels = cfg, list(labels)
        self.path = resolve_model(cfg.model)
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.tokenizer.truncation_side = cfg.truncation_side
        self.model = None
        self._fresh()

    def _fresh(self) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification

        torch.manual_seed(self.cfg.seed)
        self.model = AutoModelForSequenceClassification.from_pretrained(
            self.path, num_labels=len(self.labels),
            id2label=dict(enumerate(self.labels)), label2id={lab: i for i, lab in enumerate(self.labels)})

    def _encode(self, batch: list[str]):
        if any(PAIR_SEP in t for t in batch):  # pair examples: encoded as text pairs, truncated evenly
            firsts, seconds = zip(*[(t.split(PAIR_SEP, 1) + [""])[:2] for t in batch])
            return self.tokenizer(list(firsts), list(seconds), padding=True, truncation="longest_first",
                                  max_length=self.cfg.max_length, return_tensors="pt")
        return self.tokenizer(batch, padding=True, truncation=True, max_length=self.cfg.max_length,
                              return_tensors="pt")

    def _batches(self, texts: list[str], order: list[int], size: int):
        for start in range(0, len(order), size):
            idx = order[start:start + size]
            yield idx, self._encode([texts[i] for i in idx])

    def fit(self, examples: list[Example]) -> None:
        """Train from the pretrained weights on `examples` (AdamW, linear decay)."""
        import torch

        self._fresh()
        texts = [e.text for e in examples]
        y = torch.tensor([self.labels.index(e.label) for e in examples])

        def batch_loss(idx):
            enc = self._encode([texts[i] for i in idx])
            return torch.nn.functional.cross_entropy(self.model(**enc).logits, y[idx])

        train_epochs(self.model, self.model.parameters(), len(texts), self.cfg, batch_loss)

    def predict(self, examples: list[Example]) -> Predictions:
        import torch

        texts = [e.text for e in examples]
        # sort by length so batches pad little; results go back to input order
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        probs = np.zeros((len(texts), len(self.labels)), np.float32)
        dim = self.model.config.hidden_size
        emb = np.zeros((len(texts), dim), np.float32)
        with torch.inference_mode():
            for idx, enc in self._batches(texts, order, 64):
                out = self.model(**enc, output_hidden_states=True)
                probs[idx] = torch.softmax(out.logits, -1).numpy()
                emb[idx] = mean_pool(out.hidden_states[-1], enc["attention_mask"]).numpy()
        labels = [self.labels[i] for i in probs.argmax(1)] if len(texts) else []
        return Predictions(labels=labels, probs=probs, embeddings=normalize(emb))

    def save(self, path: str) -> None:
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)

    def state_digest(self) -> str:
        """A hash of the weights (tests use it to check that training changed them)."""
        import hashlib

        h = hashlib.sha1()
        for name, tensor in sorted(self.model.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().float().numpy().tobytes())
        return h.hexdigest()
