"""The student contracts, by what a student does, and the training options students share.

Every student is a `Student`: it trains from the pretrained weights on a list of examples, predicts, saves.
What it can be used for is its `kinds`, which a task's `student_kind` must be among:
text_classifier (one text, one label), pair_classifier (two texts, one label), line_scorer (scores each line
of a function) and generator (a `Generator` samples programs and can chat, as its own reviser).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, ClassVar, Protocol

from loop import progress
from loop.options import option
from loop.records import Example, Predictions

if TYPE_CHECKING:
    from loop.config import StudentConfig

log = logging.getLogger(__name__)


@dataclass
class TrainingOptions:
    """Options of a student trained by gradient steps."""

    epochs: int = option(8, "training epochs per round (training restarts from the pretrained weights)", ge=1)
    batch_size: int = option(16, "training batch size", ge=1)
    learning_rate: float = option(1e-4, "AdamW learning rate", gt=0)


class Student(Protocol):
    kinds: ClassVar[tuple[str, ...]]  # what tasks may use it for (a task's student_kind is one of these)
    Options: ClassVar[type]  # its own settings, a dataclass of `option(...)` fields (section `student`)

    def __init__(self, cfg: StudentConfig, labels: list[str]) -> None: ...

    def fit(self, examples: list[Example]) -> None:
        """Train from the pretrained weights on `examples` (the result depends only on them and the seed)."""

    def predict(self, examples: list[Example]) -> Predictions:
        """Labels, class probabilities and embeddings of `examples`."""

    def save(self, path: str) -> None:
        """Write the trained student to the folder `path`."""


class Generator(Student, Protocol):
    """A student that writes programs (codegen) and, as its own reviser, answers chats."""

    cfg: StudentConfig
    tokenizer: object

    def sample(self, prompts: list[str], n: int = 1, temperature: float = 0.0,
               seed: int = 0) -> list[list[str]]:
        """`n` completions per prompt."""

    def chat(self, messages: list[list[dict]], max_tokens: int, temperature: float,
             seed: int = 0) -> list[str]:
        """One reply per chat."""

    def count_tokens(self, text: str) -> int: ...

    def fingerprint(self) -> str:
        """A digest of the current weights (replies of one round's student are cached apart from
        another's)."""


def train_epochs(model, params, n: int, cfg, batch_loss: Callable) -> None:
    """AdamW with linear decay over `cfg.epochs` shuffled passes (seeded by `cfg.seed`) of `n` examples.
    `batch_loss(indices)` returns the batch's mean loss, or None to skip the batch."""
    import torch

    steps = cfg.epochs * ((n + cfg.batch_size - 1) // cfg.batch_size)
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / max(1, steps)))
    rng = random.Random(cfg.seed)
    model.train()
    progress.NOW.work(steps, "steps")
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
            progress.NOW.advance(1, f"epoch {epoch + 1}/{cfg.epochs} loss {loss.item():.3f}")
        log.debug("epoch %d loss %.4f", epoch, total / max(1, n))
    model.eval()
