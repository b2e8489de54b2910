"""Data files as users have them: a spreadsheet's CSV with a byte-order mark is read; a record longer
than data.max_record_chars is refused with its file and line, without being read whole."""

import gzip
import json
import tracemalloc

import pytest
from conftest import make_examples

from loop.data import iter_jsonl, load_splits, read_rows
from loop.errors import DataError


def _rows(n: int = 600):
    return [(ex.text, ex.label) for ex in make_examples(n, seed=1, prefix="row")]


def _csv(rows, bom: bool = True) -> bytes:
    body = "text,label\n" + "".join(f"{t},{lab}\n" for t, lab in rows)
    return (b"\xef\xbb\xbf" if bom else b"") + body.encode("utf-8")


def test_csv_with_a_byte_order_mark_is_read(tmp_path, tiny_config):
    p = tmp_path / "export.csv"
    p.write_bytes(_csv(_rows()))
    splits = load_splits(tiny_config(**{"data.source": str(p)}))
    assert len(splits["train"]) == 60
    assert not any(e.text.startswith("\ufeff") for s in splits.values() for e in s)


def test_jsonl_with_a_byte_order_mark_is_read(tmp_path, tiny_config):
    p = tmp_path / "export.jsonl"
    p.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps({"text": t, "label": lab}) + "\n"
                                           for t, lab in _rows()).encode())
    assert len(load_splits(tiny_config(**{"data.source": str(p)}))["train"]) == 60


def test_a_long_csv_field_under_the_limit_is_read(tmp_path, tiny_config):
    """csv's own field limit (128 KiB) is not the one that applies: data.max_record_chars is."""
    rows = _rows()
    rows[5] = ("x " * 100_000, rows[5][1])
    p = tmp_path / "long.csv"
    p.write_bytes(_csv(rows, bom=False))
    _, got = read_rows(tiny_config(**{"data.source": str(p)}))
    assert got[5][1] == rows[5][0]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".jsonl.gz"])
def test_a_record_over_the_limit_names_file_and_line(tmp_path, tiny_config, suffix):
    rows = _rows(20)
    rows.insert(7, ("w " * 1500, "neutral"))  # 3,000 characters: line 8 of JSONL, line 9 of CSV (header)
    p = tmp_path / f"data{suffix}"
    if suffix == ".csv":
        p.write_bytes(_csv(rows, bom=False))
    else:
        text = "".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in rows)
        p.write_bytes(gzip.compress(text.encode()) if suffix.endswith(".gz") else text.encode())
    cfg = tiny_config(**{"data.source": str(p), "data.max_record_chars": 2000})
    line = 9 if suffix == ".csv" else 8
    with pytest.raises(DataError, match=rf"data{suffix.replace('.', '[.]')}:{line}: record longer than 2,000 "
                                        r"characters \(data\.max_record_chars\)"):
        read_rows(cfg)
    assert len(read_rows(tiny_config(**{"data.source": str(p), "data.max_record_chars": 4000}))[1]) == 21


def test_a_quoted_csv_record_over_many_lines_is_bounded(tmp_path, tiny_config):
    """An unclosed quote makes the rest of the file one record: refused at its first line, not read whole."""
    p = tmp_path / "quote.csv"
    p.write_text("text,label\nfine row,neutral\n\"never closed,neutral\n" + "more words,neutral\n" * 500)
    with pytest.raises(DataError, match=r"quote\.csv:3: record longer than 2,000 characters"):
        read_rows(tiny_config(**{"data.source": str(p), "data.max_record_chars": 2000}))


def test_a_huge_line_is_refused_without_being_read_whole(tmp_path):
    p = tmp_path / "huge.jsonl"
    with open(p, "w") as fh:
        fh.write('{"text": "a", "label": "neutral"}\n{"text": "')
        for _ in range(30):
            fh.write("w " * 500_000)  # a 30 MB line
        fh.write('", "label": "neutral"}\n')
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"huge\.jsonl:2: record longer than 1,000,000 characters"):
            list(iter_jsonl(p, max_chars=1_000_000))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8_000_000, f"peak {peak:,} bytes while refusing a 30 MB line"
