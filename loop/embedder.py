"""A fixed sentence embedder (mean-pooled MiniLM) for dedup and contamination checks.

It does not change across rounds, so "too close" means the same thing in every round.
Embeddings are cached by text id inside one process.
"""

from __future__ import annotations

import numpy as np

from loop.assets import resolve_model
from loop.index import normalize
from loop.records import text_id


def mean_pool(hidden, mask):
    """Mean of the token states under the attention mask."""
    mask = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


class SentenceEmbedder:
    def __init__(self, model_ref: str, max_length: int = 128, batch_size: int = 64):
        from transformers import AutoModel, AutoTokenizer

        path = resolve_model(model_ref)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval()
        self.max_length, self.batch_size = max_length, batch_size
        self._cache: dict[str, np.ndarray] = {}

    def encode(self, texts: list[str]) -> np.ndarray:
        import torch

        todo = [t for t in dict.fromkeys(texts) if text_id(t) not in self._cache]
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start:start + self.batch_size]
            enc = self.tokenizer(batch, padding=True, truncation=True, max_length=self.max_length,
                                 return_tensors="pt")
            with torch.inference_mode():
                out = self.model(**enc).last_hidden_state
            vecs = normalize(mean_pool(out, enc["attention_mask"]).numpy())
            for text, vec in zip(batch, vecs):
                self._cache[text_id(text)] = vec
        dim = self.model.config.hidden_size
        if not texts:
            return np.zeros((0, dim), np.float32)
        return np.stack([self._cache[text_id(t)] for t in texts]).astype(np.float32)
