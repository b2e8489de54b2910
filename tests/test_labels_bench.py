"""`loop bench labels`: a reference probe judges the labels of the samples each run accepted."""

import json

from loop.bench.labels import run_bench, table_lines
from loop.data import load_splits
from loop.records import Candidate
from loop.store import RunStore


def test_label_precision_tells_right_labels_from_wrong_ones(tiny_config, tmp_path):
    cfg = tiny_config(**{"student.max_length": 32})
    splits = load_splits(cfg)
    shown = splits["dev_stop"][:30]
    labels = cfg.task.labels
    wrong = {lab: labels[(i + 1) % len(labels)] for i, lab in enumerate(labels)}
    store = RunStore(tmp_path / "store.sqlite")
    for arm, relabel in (("targeted", lambda lab: lab), ("random", wrong.get)):
        run_id = f"bench-k-{arm}-s0"
        store.start_run(run_id, cfg.to_dict())
        for rnd, part in ((1, shown[:15]), (2, shown[15:])):
            cands = [Candidate(e.text, relabel(e.label), f"r{i}", "targeted" if i % 2 else "self_revise",
                               verdict="accepted") for i, e in enumerate(part)]
            cands[0].kind = "pairs"  # kinds beyond targeted and self-revision are reported too
            cands.append(Candidate("a rejected text", labels[0], "rx", "targeted", verdict="rejected"))
            store.add_candidates(run_id, rnd, cands)
    store.close()
    result = tmp_path / "efficiency.json"
    runs = [{"strategy": arm, "seed": 0} for arm in ("none", "targeted", "random")]
    result.write_text(json.dumps({"config": "tiny", "settings": "k", "runs": runs}))
    report = run_bench(cfg, result, tmp_path / "store.sqlite", tmp_path / "labels.json")
    assert json.loads((tmp_path / "labels.json").read_text())["summary"] == report["summary"]
    labelled = ("train", "dev_mine", "dev_stop", "oracle")  # every labelled row outside test
    assert report["reference"]["trained_on"] == sum(len(splits[s]) for s in labelled)
    right, flipped = report["summary"]["targeted"], report["summary"]["random"]
    assert right["label_precision"]["mean"] > 0.8 > 0.3 > flipped["label_precision"]["mean"]
    assert right["label_precision_self_revise"]["mean"] > 0.8  # split by the kind of request
    rounds = report["runs"][0]["rounds"]
    assert [r["accepted"] for r in rounds] == [15, 15] and rounds[0]["accepted_targeted"] == 7
    assert rounds[0]["accepted_pairs"] == 1
    assert "none" not in report["summary"]  # arms that generate nothing are not judged
    assert any(line.startswith("| `targeted` | ") for line in table_lines(report))
    assert right["label_precision_pairs"]["values"] and "from pairs requests" in table_lines(report)[1]
