"""The student contract."""

from __future__ import annotations

import logging
import random
from typing import Callable, Protocol

from loop.records import Example, Predictions

log = logging.getLogger(__name__)


class Student(Protocol):
    def fit(self, examples: list[Example]) -> None: ...

    def predict(self, examples: list[Example]) -> Predictions: ...

    def save(self, path: str) -> None: ...


def train_epochs(model, params, n: int, cfg, batch_loss: Callable) -> None:
    """AdamW with linear decay over `cfg.epochs` shuffled passes (seeded by `cfg.seed`) of `n` examples.
    `batch_loss(indices)` returns the batch's mean loss, or None to skip the batch."""
    import torch

    steps = cfg.epochs * ((n + cfg.batch_size - 1) // cfg.batch_size)
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / max(1, steps)))
    rng = random.Random(cfg.seed)
    model.train()
    for epoch in range(cfg.epochs):
        order = list(range(n))
        rng.shuffle(order)
        total = 0.0
        for start in range(0, n, cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            loss = batch_loss(idx)
            if loss is None:
                continue
            loss.backward()
            opt.step()
            sched.step()
            opt.zero_grad()
            total += loss.item() * len(idx)
        log.debug("epoch %d loss %.4f", epoch, total / max(1, n))
    model.eval()
