"""Student noise: the seed-spread benchmark and the steadier-training options of the encoder."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import LABELS, TinyStudent, make_examples

from loop.bench import noise
from loop.cli import main
from loop.config import load_config, section
from loop.errors import ConfigError
from loop.records import Example, Predictions
from loop.students.base import train_epochs
from loop.students.encoder import (
    Checkpoints,
    EncoderStudent,
    holdout_split,
    lr_factor,
    run_epochs,
)

# --- training loop and what a fit keeps -------------------------------------------------------------------

def _linear():
    torch.manual_seed(0)
    return torch.nn.Linear(5, 3)


def _loss(model, x, y):
    return lambda idx: torch.nn.functional.cross_entropy(model(x[idx]), y[idx])


def test_without_options_the_encoder_loop_is_todays_training_step_for_step():
    x, y = torch.randn(37, 5), torch.randint(0, 3, (37,))
    cfg = section("student", epochs=3, batch_size=8, warmup=0.0)
    old, new = _linear(), _linear()
    train_epochs(old, old.parameters(), 37, cfg, _loss(old, x, y))
    run_epochs(new, 37, cfg, _loss(new, x, y))
    assert all(torch.equal(a, b) for a, b in zip(old.state_dict().values(), new.state_dict().values()))
    warm = _linear()
    run_epochs(warm, 37, section("student", epochs=3, batch_size=8, warmup=0.3), _loss(warm, x, y))
    assert not torch.equal(warm.weight, new.weight)  # the warmup changes the training


def test_lr_factor_ramps_up_then_decays_to_zero():
    assert [lr_factor(s, 10, 0) for s in (0, 5, 10)] == [1.0, 0.5, 0.0]
    ramp = [lr_factor(s, 10, 3) for s in range(11)]
    assert ramp[:4] == [0.25, 0.5, 0.75, 1.0] and ramp[-1] == 0.0
    assert all(a >= b for a, b in zip(ramp[3:], ramp[4:]))


def test_after_epoch_runs_once_per_epoch_in_eval_mode():
    model, seen = _linear(), []
    x, y = torch.randn(20, 5), torch.randint(0, 3, (20,))
    run_epochs(model, 20, section("student", epochs=4, batch_size=8), _loss(model, x, y),
               lambda epoch: seen.append((epoch, model.training)))
    assert seen == [(e, False) for e in range(4)] and not model.training


def test_after_epoch_returning_true_stops_training():
    model, seen = _linear(), []
    x, y = torch.randn(20, 5), torch.randint(0, 3, (20,))
    run_epochs(model, 20, section("student", epochs=6, batch_size=8), _loss(model, x, y),
               lambda epoch: seen.append(epoch) or epoch == 2)
    assert seen == [0, 1, 2] and not model.training


def test_patience_needs_select_epoch():
    with pytest.raises(ConfigError, match="student.patience: stopping early needs student.select_epoch"):
        load_config(None, {"student.patience": 2})
    assert load_config(None, {"student.patience": 2, "student.select_epoch": True}).student.patience == 2


def test_holdout_is_stratified_seeded_and_leaves_every_label_an_example():
    examples = make_examples(30) + make_examples(1, prefix="extra")  # 11 negative, 10 neutral, 10 positive
    train, held = holdout_split(examples, 0.2, seed=1)
    assert sorted(e.text for e in train + held) == sorted(e.text for e in examples)
    assert {lab: sum(e.label == lab for e in held) for lab in LABELS} == {lab: 2 for lab in LABELS}
    assert holdout_split(examples, 0.2, seed=1) == (train, held)
    assert holdout_split(examples, 0.2, seed=2)[1] != held
    lone = [Example("a", "negative"), Example("b", "negative"), Example("c", "neutral")]
    train, held = holdout_split(lone, 0.5, seed=0)
    assert [e.label for e in held] == ["negative"] and lone[2] in train  # the lone 'neutral' stays


class Fixed:
    """Stands in for the student in `_holdout_score`: predicts a fixed list of labels."""

    def __init__(self, labels):
        self.labels, self.said = LABELS, labels

    def predict(self, examples):
        probs = np.full((len(examples), 3), 0.1, np.float32)
        probs[np.arange(len(examples)), [LABELS.index(lab) for lab in self.said]] = 0.8
        return Predictions(labels=self.said, probs=probs, embeddings=np.zeros((len(examples), 2), np.float32))


def test_the_epoch_is_chosen_by_macro_f1_not_accuracy():
    """An early epoch that says 'negative' to everything beats a balanced one on accuracy when most
    held-out examples are negative; measured on the tweets, keeping such epochs cost 18 points of test
    macro-F1."""
    held = [Example(str(i), lab) for i, lab in enumerate(["negative"] * 6 + ["neutral", "positive"] * 2)]
    majority = Fixed(["negative"] * 10)  # accuracy 0.6, macro-F1 0.25
    balanced = Fixed(["negative"] * 2 + ["positive"] * 4
                     + ["neutral", "positive", "neutral", "negative"])  # 0.5, 0.58
    assert EncoderStudent._holdout_score(balanced, held) > EncoderStudent._holdout_score(majority, held)


def _set_weights(model, value):
    with torch.no_grad():
        model.weight.fill_(value)
        model.bias.fill_(-value)


def test_average_last_keeps_the_mean_of_the_last_epochs():
    model = _linear()
    keep = Checkpoints(model, epochs=4, select=False, average=3)
    for epoch, value in enumerate([10.0, 1.0, 2.0, 6.0]):
        _set_weights(model, value)
        keep.record(epoch)
    assert keep.restore() is None
    assert torch.allclose(model.weight, torch.full_like(model.weight, 3.0))
    assert torch.allclose(model.bias, torch.full_like(model.bias, -3.0))


def test_select_keeps_the_best_scoring_epoch_and_the_earlier_of_a_tie():
    model = _linear()
    keep = Checkpoints(model, epochs=4, select=True, average=0)
    for epoch, (value, score) in enumerate([(1.0, (0.5, -1.0)), (2.0, (0.8, -0.9)), (3.0, (0.8, -0.4)),
                                            (4.0, (0.8, -0.4))]):
        _set_weights(model, value)
        keep.record(epoch, score)
    assert keep.restore() == 2 and torch.all(model.weight == 3.0)


def test_without_options_the_last_epoch_is_kept():
    model = _linear()
    keep = Checkpoints(model, epochs=2, select=False, average=1)
    for epoch in range(2):
        _set_weights(model, epoch + 5.0)
        keep.record(epoch)
    assert keep.restore() is None and torch.all(model.weight == 6.0)


def test_config_checks_the_steadier_options():
    cfg = load_config(None)
    # warmup measured steadier: the default
    assert (cfg.student.warmup, cfg.student.select_epoch, cfg.student.average_last) == (0.1, False, 0)
    with pytest.raises(ConfigError, match="student.average_last"):
        load_config(None, {"student.average_last": 9, "student.epochs": 8})
    with pytest.raises(ConfigError, match="select_epoch"):
        load_config(None, {"student.average_last": 3, "student.select_epoch": True})
    with pytest.raises(ConfigError, match="student.holdout"):
        load_config(None, {"student.holdout": 0.9})
    with pytest.raises(ConfigError, match="student.warmup"):
        load_config(None, {"student.warmup": -0.1})


# --- the benchmark ------------------------------------------------------------------------------------------

class SeededStudent(TinyStudent):
    """The tiny student with seed-dependent noise on its centroids (larger without `steady`)."""

    def __init__(self, cfg, labels, log):
        super().__init__(labels)
        self.cfg, self.log = cfg, log

    def fit(self, examples):
        super().fit(examples)
        self.log.append((self.cfg.seed, self.cfg.warmup, len(examples)))
        scale = 0.02 if self.cfg.warmup else 0.5
        self.centroids += np.random.default_rng(self.cfg.seed).normal(0, scale, self.centroids.shape)


@pytest.fixture
def fits(monkeypatch):
    log = []
    monkeypatch.setattr("loop.components.build_student",
                        lambda cfg: SeededStudent(cfg.student, cfg.task.labels, log))
    return log


def test_bench_fits_every_variant_and_seed_on_the_same_data_and_resumes(tiny_config, fits, tmp_path):
    cfgs = {"baseline": tiny_config(**{"student.warmup": 0.0}),
            "steady": tiny_config(**{"student.warmup": 0.1})}
    overrides = {"baseline": {"student.warmup": 0.0}, "steady": {"student.warmup": 0.1}}
    out = tmp_path / "noise.json"
    result = noise.run_bench(cfgs, overrides, [0, 1, 2], out)
    assert sorted(fits) == sorted((s, w, 60) for s in (0, 1, 2) for w in (0.0, 0.1))
    table = json.loads(out.read_text())["summary"]
    for name in cfgs:
        values = [r["test"] for r in result["runs"] if r["variant"] == name]
        assert table[name]["values"] == values and table[name]["seeds"] == [0, 1, 2]
        assert table[name]["mean"] == pytest.approx(np.mean(values))
        assert table[name]["std"] == pytest.approx(np.std(values, ddof=1))
        assert table[name]["range"] == pytest.approx(max(values) - min(values))
    assert table["steady"]["std"] < table["baseline"]["std"]
    fits.clear()
    again = noise.run_bench(cfgs, overrides, [0, 1, 2, 3], out)  # only the new seed is fitted
    assert sorted(fits) == [(3, 0.0, 60), (3, 0.1, 60)]
    assert again["summary"]["baseline"]["values"][:3] == table["baseline"]["values"]
    fits.clear()
    renamed = noise.run_bench({"today": cfgs["baseline"]}, {"today": {}}, [0, 1], out)
    assert fits == [] and renamed["summary"]["today"]["values"] == table["baseline"]["values"][:2]


def test_another_data_setting_is_refitted_not_reused(tiny_config, fits, tmp_path):
    out = tmp_path / "noise.json"
    noise.run_bench({"baseline": tiny_config()}, {"baseline": {}}, [0], out)
    noise.run_bench({"baseline": tiny_config(**{"data.seed": 5})}, {"baseline": {}}, [0], out)
    assert len(fits) == 2
    assert len(json.loads(out.read_text())["summary"]["baseline"]["values"]) == 1


def test_variants_may_change_only_student_settings():
    noise.check_variants({"a": {"student.epochs": 3}})
    with pytest.raises(ConfigError, match="data.train_size"):
        noise.check_variants({"a": {"student.epochs": 3, "data.train_size": 50}})


def test_cli_prints_the_table_and_writes_the_json(tiny_config, tiny_data, fits, tmp_path):
    out = tmp_path / "n.json"
    sets = ["--set", f"data.source={tiny_data}", "--set", "data.train_size=60", "--set", "data.dev_size=200",
            "--set", "data.test_size=200"]
    res = CliRunner().invoke(main, ["bench", "noise", "--seeds", "0,1", "--variant", "baseline", "--variant",
                                    "student.warmup=0.2 student.epochs=3", "--out", str(out), *sets])
    assert res.exit_code == 0, res.output
    assert "student.warmup=0.2 student.epochs=3" in res.output and "baseline" in res.output
    assert set(json.loads(out.read_text())["summary"]) == {"baseline", "student.warmup=0.2 student.epochs=3"}
    bad = CliRunner().invoke(main, ["bench", "noise", "--variant", "data.seed=3", "--out", str(out), *sets])
    assert bad.exit_code == 1 and "only student.* settings may vary" in bad.output


# --- the real student ---------------------------------------------------------------------------------------

def _recorded(monkeypatch):
    """Copies of the weights at every Checkpoints.record, with the score it was given."""
    seen = []
    record = Checkpoints.record

    def spy(self, epoch, score=None):
        seen.append((epoch, score, {k: v.detach().clone() for k, v in self.model.state_dict().items()}))
        record(self, epoch, score)

    monkeypatch.setattr(Checkpoints, "record", spy)
    return seen


@pytest.mark.slow
def test_real_student_keeps_the_averaged_or_the_selected_weights(monkeypatch):
    from loop.students import encoder
    from loop.students.encoder import EncoderStudent

    train = make_examples(30, seed=3)
    seen = _recorded(monkeypatch)
    student = EncoderStudent(section("student", epochs=3, max_length=16, batch_size=8, average_last=2),
                             LABELS)
    student.fit(train)
    state = student.model.state_dict()
    last2 = [s for _, _, s in seen[1:]]
    moved = [k for k, v in state.items()
             if v.is_floating_point() and not torch.equal(last2[0][k], last2[1][k])]
    assert moved  # the last two epochs differ, so their mean is neither of them
    for k in moved:
        assert torch.allclose(state[k], (last2[0][k].double() + last2[1][k].double()).div(2).float(),
                              atol=1e-6)
        assert not torch.equal(state[k], last2[1][k])

    seen.clear()
    trained_on = []
    run = encoder.run_epochs
    monkeypatch.setattr(encoder, "run_epochs", lambda model, n, *a: trained_on.append(n) or run(model, n, *a))
    student = EncoderStudent(section("student", epochs=3, max_length=16, batch_size=8, select_epoch=True,
                                           holdout=0.2), LABELS)
    student.fit(train)
    assert trained_on == [24]  # 2 of each label's 10 held out to choose the epoch
    scores = [score for _, score, _ in seen]
    assert all(isinstance(s, tuple) for s in scores)
    best = max(range(3), key=lambda i: (scores[i], -i))
    state = student.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in seen[best][2].items())

    # with patience 1, training stops one epoch after the last held-out improvement
    seen.clear()
    student = EncoderStudent(section("student", epochs=8, max_length=16, batch_size=8, select_epoch=True,
                                     holdout=0.2, patience=1), LABELS)
    student.fit(train)
    scores = [score for _, score, _ in seen]
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    assert len(scores) == min(8, best + 2)
