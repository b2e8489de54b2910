"""Encoder classifier: a pretrained sentence encoder (MiniLM by default) plus a new head.

Every `fit` starts again from the pretrained weights with the same seed, so a round's
student depends only on its training set (seed + accepted samples), not on history.

Steadier training (the test metric of a few hundred examples moves by points with the
seed; `loop bench noise` measures it): `student.warmup` ramps the learning rate up before the
linear decay (the default 0.1 halved the spread on the tweet task),
`student.select_epoch` keeps the epoch that scores best on a held-out slice of the
training examples, `student.average_last` averages the weights of the last epochs.

`student.processes: N` trains in N processes, data parallel under accelerate
(loop/students/parallel.py); the run's process loads the result.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Literal

import numpy as np

from loop import progress
from loop.assets import resolve_model
from loop.embedder import mean_pool
from loop.index import normalize
from loop.options import Component, option
from loop.records import PAIR_SEP, Example, Predictions
from loop.students.base import TrainingOptions

if TYPE_CHECKING:
    from loop.config import Config, StudentConfig

log = logging.getLogger(__name__)


def lr_factor(step: int, steps: int, warmup: int) -> float:
    """Linear warmup over `warmup` steps, then linear decay to 0 at `steps` (warmup 0: decay from the
    start)."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    return max(0.0, 1 - (step - warmup) / max(1, steps - warmup))


def run_epochs(model, n: int, cfg: StudentConfig, batch_loss: Callable,
               after_epoch: Callable | None = None) -> None:
    """AdamW over `cfg.epochs` shuffled passes (seeded by `cfg.seed`) of `n` examples, the learning rate
    following `lr_factor`; `after_epoch(epoch)` runs after each pass and stops training by returning
    True. With warmup 0 this is
    `students.base.train_epochs` step for step (a test holds them together)."""
    import torch

    steps = cfg.epochs * ((n + cfg.batch_size - 1) // cfg.batch_size)
    warmup = int(cfg.warmup * steps)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, steps, warmup))
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
            loss.backward()
            opt.step()
            sched.step()
            opt.zero_grad()
            total += loss.item() * len(idx)
            progress.NOW.advance(1, f"epoch {epoch + 1}/{cfg.epochs} loss {loss.item():.3f}")
        log.debug("epoch %d loss %.4f", epoch, total / max(1, n))
        if after_epoch is not None:
            model.eval()
            if after_epoch(epoch):
                break
            model.train()
    model.eval()


def holdout_split(examples: list[Example], share: float, seed: int) -> tuple[list[Example], list[Example]]:
    """(train, held out): `share` of each label's examples held out, chosen by `seed`; a label keeps at
    least one training example."""
    rng = random.Random(seed)
    held: set[int] = set()
    for label in sorted({e.label for e in examples}):
        idx = [i for i, e in enumerate(examples) if e.label == label]
        rng.shuffle(idx)
        held.update(idx[:min(len(idx) - 1, int(share * len(idx) + 0.5))])
    return ([e for i, e in enumerate(examples) if i not in held],
            [e for i, e in enumerate(examples) if i in held])


class Checkpoints:
    """What a fit keeps of its epochs: the last weights, the best-scoring epoch's (select), or the mean
    of the last `average` epochs' (floating tensors; the others are taken from the last epoch)."""

    def __init__(self, model, epochs: int, select: bool, average: int):
        self.model, self.epochs, self.select, self.average = model, epochs, select, average
        self.best: tuple[tuple, int, dict] | None = None  # (score, epoch, weights)
        self.sum: dict | None = None
        self.count = 0

    def _state(self) -> dict:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def record(self, epoch: int, score: tuple | None = None) -> None:
        """After `epoch`; `score` (higher is better) only when selecting. Ties keep the earlier epoch."""
        if self.select and (self.best is None or score > self.best[0]):
            self.best = (score, epoch, self._state())
        if self.average > 1 and epoch >= self.epochs - self.average:
            state = self.model.state_dict()
            if self.sum is None:
                self.sum = {k: v.detach().double().clone() for k, v in state.items() if v.is_floating_point()}
            else:
                for k in self.sum:
                    self.sum[k] += state[k].detach().double()
            self.count += 1

    def restore(self) -> int | None:
        """Load the kept weights into the model; returns the selected epoch (None unless selecting)."""
        if self.best is not None:
            self.model.load_state_dict(self.best[2])
            return self.best[1]
        if self.sum is not None:
            state = self.model.state_dict()
            self.model.load_state_dict({k: (self.sum[k] / self.count).to(v.dtype) if k in self.sum else v
                                        for k, v in state.items()})
        return None


class EncoderStudent(Component):

    kinds = ("text_classifier", "pair_classifier")

    @dataclass
    class Options(TrainingOptions):
        truncation_side: Literal["right", "left"] = option("right", "which end of a too-long example is cut: "
                                                                    "right, or left (keeps the end: for "
                                                                    "code, the body after a long docstring)")
        warmup: float = option(0.1, "share of the optimizer steps over which the learning rate ramps up "
                                    "linearly before its linear decay (0: decay from the first step)",
                               ge=0, le=0.5)
        select_epoch: bool = option(False, "after each epoch score a held-out slice of the training examples "
                                           "(student.holdout; macro-F1, then loss) and keep the best epoch's "
                                           "weights")
        holdout: float = option(0.2, "with select_epoch: share of each label's training examples held out to "
                                     "choose the epoch (not trained on; every label keeps one)", gt=0, le=0.5)
        average_last: int = option(0, "keep the mean of the weights after each of the last N epochs "
                                      "(checkpoint averaging; 0 or 1: the last epoch's)", ge=0)
        patience: int = option(0, "with select_epoch: stop training once the held-out score has not "
                                  "improved for this many epochs (0: train every epoch)", ge=0)
        processes: int = option(1, "training processes, data parallel under accelerate (gloo on CPU; one "
                                   "GPU each where there are GPUs); 1: train in the run's process", ge=1)

    @staticmethod
    def config_rules(cfg: Config) -> list[tuple[bool, str, str]]:
        s = cfg.student
        return [(not (s.select_epoch and s.average_last > 1), "student.average_last",
                 "choose one of select_epoch (best epoch) and average_last (mean of the last epochs)"),
                (s.average_last <= s.epochs, "student.average_last",
                 f"must be <= student.epochs ({s.average_last} > {s.epochs})"),
                (not s.patience or s.select_epoch, "student.patience",
                 "stopping early needs student.select_epoch (the held-out score it watches)")]

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
        self.shard, self.wrap = (0, 1), (lambda model: model)  # set in a data-parallel worker
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
        """Train from the pretrained weights on `examples` (AdamW, warmup then linear decay), keeping the
        last epoch's weights, the best epoch's on a held-out slice, or the mean of the last epochs'."""
        import torch

        self._fresh()
        cfg = self.cfg
        if cfg.processes > 1:
            from loop.students.parallel import fit_parallel

            self.model.load_state_dict(fit_parallel(type(self), cfg, self.labels, examples))
            self.model.eval()
            return
        train, held = holdout_split(examples, cfg.holdout, cfg.seed) if cfg.select_epoch else (examples, [])
        texts = [e.text for e in train]
        y = torch.tensor([self.labels.index(e.label) for e in train])
        keep = Checkpoints(self.model, cfg.epochs, cfg.select_epoch, cfg.average_last)
        model, (rank, world) = self.wrap(self.model), self.shard
        if world > 1:  # the same initial weights everywhere, but each share its own dropout masks
            torch.manual_seed(cfg.seed * 1000 + rank)

        def batch_loss(idx):
            mine = idx[rank::world]  # this process's share; weighted so that the shares' mean is the batch's
            enc = self._encode([texts[i] for i in (mine or idx[:1])]).to(self.device)
            loss = torch.nn.functional.cross_entropy(model(**enc).logits, y[mine or idx[:1]].to(self.device))
            return loss * (world * len(mine) / len(idx)) if world > 1 else loss

        def after_epoch(epoch) -> bool:
            keep.record(epoch, self._holdout_score(held) if held else None)
            return bool(cfg.patience and keep.best and epoch - keep.best[1] >= cfg.patience)

        run_epochs(model, len(texts), cfg, batch_loss, after_epoch)
        chosen = keep.restore()
        if chosen is not None:
            log.info("student: epoch %d of %d kept (best on %d held-out examples)", chosen + 1, cfg.epochs,
                     len(held))

    @property
    def device(self):
        return next(self.model.parameters()).device

    def _holdout_score(self, held: list[Example]) -> tuple[float, float]:
        """(macro-F1, -mean cross-entropy) on the held-out slice, higher is better. Macro-F1, not accuracy:
        on a few dozen examples an early epoch that predicts mostly the commonest label can win on accuracy
        (measured: epochs 2-3 kept, test macro-F1 0.44); the loss separates epochs that classify alike."""
        from loop.tasks.classify import scores

        pred = self.predict(held)
        gold = [e.label for e in held]
        probs = pred.probs[np.arange(len(held)), [self.labels.index(g) for g in gold]]
        nll = -np.log(np.clip(probs, 1e-12, 1)).mean()
        return scores(pred.labels, gold, sorted(set(gold)))["macro_f1"], -float(nll)

    def predict(self, examples: list[Example]) -> Predictions:
        import torch

        texts = [e.text for e in examples]
        # sort by length so batches pad little; results go back to input order
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        probs = np.zeros((len(texts), len(self.labels)), np.float32)
        dim = self.model.config.hidden_size
        emb = np.zeros((len(texts), dim), np.float32)
        with torch.inference_mode():
            progress.NOW.work(len(texts), "examples")
            for idx, enc in self._batches(texts, order, 64):
                enc = enc.to(self.device)
                out = self.model(**enc, output_hidden_states=True)
                progress.NOW.advance(len(idx))
                probs[idx] = torch.softmax(out.logits, -1).cpu().numpy()
                emb[idx] = mean_pool(out.hidden_states[-1], enc["attention_mask"]).cpu().numpy()
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
