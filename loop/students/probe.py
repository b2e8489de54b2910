"""A linear probe: the sentence encoder stays frozen and a multinomial logistic regression learns the labels.

Few-shot intent data is where it earns its place: on Banking77 with 5 examples per intent the probe on
MiniLM's mean-pooled embeddings scores 0.79 macro-F1 on the stopping split where the fine-tuned encoder
scores 0.56 after 16 epochs, fits in under a second instead of minutes, and gives the same weights for the
same examples (no seed spread: a difference between two training sets is the data's, not the seed's).
Embeddings are cached by text, so a round re-embeds only the new samples. Classification only.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from loop.embedder import SentenceEmbedder
from loop.options import Component, option
from loop.records import Example, Predictions, text_id

if TYPE_CHECKING:
    from loop.config import StudentConfig

log = logging.getLogger(__name__)


class ProbeStudent(Component):

    kinds = ("text_classifier",)

    @dataclass
    class Options:
        probe_c: float = option(10.0, "inverse L2 strength of the logistic regression (larger: weaker "
                                      "regularisation)", gt=0)
        probe_iter: int = option(2000, "most L-BFGS iterations of the logistic regression", ge=1)

    def __init__(self, cfg: StudentConfig, labels: list[str]):
        if cfg.threads:
            import torch

            torch.set_num_threads(cfg.threads)
        self.cfg, self.labels = cfg, list(labels)
        self.embedder = SentenceEmbedder(cfg.model, max_length=cfg.max_length)
        self.coef: np.ndarray | None = None  # (labels, dim); labels absent from training keep -inf bias
        self.bias: np.ndarray | None = None

    def fit(self, examples: list[Example]) -> None:
        """Fit the logistic regression (L2, C = student.probe_c) on the frozen embeddings of `examples`."""
        from sklearn.linear_model import LogisticRegression

        examples = sorted(examples, key=lambda e: (e.label, text_id(e.text)))  # the set decides, not order
        x = self.embedder.encode([e.text for e in examples])
        y = np.array([self.labels.index(e.label) for e in examples])
        dim = x.shape[1]
        self.coef = np.zeros((len(self.labels), dim), np.float64)
        self.bias = np.full(len(self.labels), -np.inf)
        present = np.unique(y)
        if len(present) == 1:  # one label: it is the only prediction
            self.bias[present[0]] = 0.0
            return
        model = LogisticRegression(C=self.cfg.probe_c, max_iter=self.cfg.probe_iter)
        model.fit(x, y)
        coef, bias = model.coef_, model.intercept_
        if len(present) == 2:  # sklearn keeps one weight vector for two classes: logit(b) - logit(a)
            coef, bias = np.vstack([-coef / 2, coef / 2]), np.array([-bias[0] / 2, bias[0] / 2])
        self.coef[model.classes_] = coef
        self.bias[model.classes_] = bias
        log.debug("probe: %d examples, %d labels, %d iterations", len(examples), len(present),
                  model.n_iter_[0])

    def predict(self, examples: list[Example]) -> Predictions:
        if self.coef is None:
            raise RuntimeError("the probe student predicts only after fit")
        x = self.embedder.encode([e.text for e in examples])
        logits = x.astype(np.float64) @ self.coef.T + self.bias
        logits -= logits.max(1, keepdims=True) if len(x) else 0
        probs = np.exp(logits)
        probs /= probs.sum(1, keepdims=True)
        labels = [self.labels[i] for i in probs.argmax(1)] if len(x) else []
        return Predictions(labels=labels, probs=probs.astype(np.float32), embeddings=x)

    def save(self, path: str) -> None:
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        np.savez(out / "probe.npz", coef=self.coef, bias=self.bias)
        (out / "probe.json").write_text(json.dumps({"encoder": self.cfg.model, "labels": self.labels,
                                                    "probe_c": self.cfg.probe_c}, indent=1))

    def state_digest(self) -> str:
        h = hashlib.sha1()
        if self.coef is not None:
            h.update(self.coef.tobytes())
            h.update(self.bias.tobytes())
        return h.hexdigest()
