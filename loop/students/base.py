"""The student contract."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from loop.data import Example


@dataclass
class Predictions:
    """Per example: predicted label, class probabilities (n, k) and an L2-normalised embedding (n, d)."""

    labels: list[str]
    probs: np.ndarray
    embeddings: np.ndarray


class Student(Protocol):
    def fit(self, examples: list[Example]) -> None: ...

    def predict(self, examples: list[Example]) -> Predictions: ...

    def save(self, path: str) -> None: ...
