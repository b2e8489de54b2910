"""The probe student: frozen MiniLM embeddings + logistic regression (real model; it fits in seconds)."""

import numpy as np
import pytest
from conftest import LABELS, make_examples

from loop.config import load_config, section
from loop.errors import ConfigError
from loop.records import Example
from loop.students.probe import ProbeStudent

FOUR = LABELS + ["question"]


@pytest.fixture(scope="module")
def probe():
    return ProbeStudent(section("student", name="probe", max_length=32), FOUR)


def test_the_probe_learns_and_gives_the_same_weights_for_the_same_examples(probe):
    train = make_examples(60, seed=3)
    probe.fit(train)
    first = probe.state_digest()
    pred = probe.predict(train)
    assert pred.probs.shape == (60, 4) and np.allclose(pred.probs.sum(1), 1, atol=1e-5)
    assert np.allclose(np.linalg.norm(pred.embeddings, axis=1), 1, atol=1e-4)
    assert np.mean([p == e.label for p, e in zip(pred.labels, train)]) > 0.8  # it fitted its training set
    assert np.all(pred.probs[:, 3] == 0)  # a label with no training example is never predicted
    probe.fit(list(reversed(train)))
    assert probe.state_digest() == first  # no seed spread: same examples, same weights
    probe.fit(train + [Example("what time does the branch open on sundays?", "question", source="generated")])
    assert probe.state_digest() != first
    assert probe.predict([Example("is the branch open on a sunday?", "neutral")]).labels == ["question"]


def test_two_labels_and_one_label_train_without_error(probe):
    two = [e for e in make_examples(30, seed=1) if e.label != "neutral"]
    probe.fit(two)
    pred = probe.predict(two)
    assert set(pred.labels) <= {"negative", "positive"}
    assert np.mean([p == e.label for p, e in zip(pred.labels, two)]) > 0.8
    assert np.allclose(pred.probs.sum(1), 1, atol=1e-5)
    one = [e for e in two if e.label == "positive"]
    probe.fit(one)
    assert probe.predict(two[:5]).labels == ["positive"] * 5


def test_the_probe_saves_its_weights(probe, tmp_path):
    probe.fit(make_examples(30, seed=2))
    probe.save(str(tmp_path / "best"))
    saved = np.load(tmp_path / "best" / "probe.npz")
    assert np.array_equal(saved["coef"], probe.coef) and (tmp_path / "best" / "probe.json").exists()


def test_predicting_before_fit_is_an_error():
    with pytest.raises(RuntimeError, match="after fit"):
        ProbeStudent(section("student", name="probe"), LABELS).predict(make_examples(2))


def test_the_probe_classifies_single_texts_only(tiny_config):
    with pytest.raises(ConfigError,
                       match="student.name: task clones needs a pair_classifier student: encoder$"):
        load_config("configs/clones.yaml", {"student.name": "probe"})
    cfg = tiny_config(**{"student.name": "probe", "mining.source": "crossval"})
    assert cfg.student.name == "probe"


def test_crossval_mining_with_the_probe(tiny_config):
    from loop.stages import crossval_predict

    cfg = tiny_config(**{"student.name": "probe", "mining.source": "crossval", "student.max_length": 24})
    gold = make_examples(30, seed=4)
    labels, probs = crossval_predict(cfg, gold, [])
    assert len(labels) == 30 and probs.shape == (30, 3) and np.allclose(probs.sum(1), 1, atol=1e-4)
    assert np.mean([p == e.label for p, e in zip(labels, gold)]) > 0.5  # out of fold, yet better than chance
