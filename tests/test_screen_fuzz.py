"""Fuzzing the whole screening path (`screen_candidates`: parse, verify, filters) for every task and both
request kinds: arbitrary Unicode (lone surrogates, bidi controls, zero-width characters), deep nesting and
huge numbers end as accepted or counted rejections, never as an exception, and every candidate is storable."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_screen_boundary import CODE_TASKS, _screen, _setup, code_task

from loop.data import clean_text, generated_side
from loop.filters import CONTROL
from loop.tasks.classify import ClassifyTask

# characters that broke or fooled the parsers and filters: surrogates, bidi overrides and isolates,
# zero-width and other invisible characters, controls
HOSTILE = ("\ud800\udbff\udc00\udfff\u202a\u202e\u2066\u2069\u200b\u200c\u200d\u200e\ufeff\u2060"
           "\u00ad\x00\x1b\x85")
chars = st.one_of(st.characters(blacklist_categories=()), st.sampled_from(HOSTILE))  # () lets surrogates in
texts = st.text(alphabet=chars, max_size=40)
depth = st.integers(200, 3000)

# raw JSON values: strings (escaped or raw), deep nesting (closed or not), integers past the 4,300-digit limit
values = st.one_of(
    st.builds(lambda s, ascii_: json.dumps(s, ensure_ascii=ascii_), texts, st.booleans()),
    depth.map(lambda n: "[" * n + "]" * n), depth.map(lambda n: "[" * n),
    st.integers(4200, 4600).map(lambda n: "9" * n), st.integers(-5, 200).map(str),
)
# code that stresses the Python parser: deep unary chains, deep brackets, huge literals, hostile characters
code = st.one_of(
    st.builds(lambda n, op: "def {f}(*a):\n    return " + op * n + "1\n", depth,
              st.sampled_from(["-", "~", "not "])),
    st.builds(lambda n: "def {f}(*a):\n    return " + "(" * n + "1" + ")" * n + "\n", depth),
    st.builds(lambda n: "def {f}(*a):\n    return " + "9" * n + "\n", st.integers(4200, 4600)),
    st.builds(lambda s: "def {f}(*a):\n    return '" + s + "'\n", texts),
    texts,
)
KEYS = {"classify": ["text", "label"], "code": ["intent", "code"], "faultloc": ["line", "original", "faulty"],
        "codegen": ["function", "tests", "code"]}


@st.composite
def replies(draw, family: str, entry: str, lines: tuple = ()):
    """A reply of about the task's shape with hostile values in its fields, sometimes wrapped or cut. With
    `lines` (a reference's), a fault-localization edit often names a real line, so that it gets applied."""
    fields = []
    for key in KEYS[family]:
        if lines and key in ("line", "original") and draw(st.booleans()):
            n = draw(st.integers(1, len(lines)))
            value = str(n) if key == "line" else json.dumps(lines[n - 1])
        elif draw(st.booleans()) and key in ("code", "function", "original", "faulty"):
            value = json.dumps(draw(code).replace("{f}", entry), ensure_ascii=draw(st.booleans()))
        elif key == "tests":
            value = "[" + ", ".join(draw(st.lists(values, max_size=3))) + "]"
        else:
            value = draw(values)
        fields.append(f'"{key}": {value}')
    body = '{"samples": [{' + ", ".join(fields) + "}]}"
    wrap = draw(st.sampled_from(["plain", "fence", "prose", "cut", "raw"]))
    if wrap == "fence":
        return f"```json\n{body}\n```"
    if wrap == "prose":
        return draw(texts) + body + draw(texts)
    if wrap == "cut":
        return body[:draw(st.integers(0, len(body)))]
    return draw(texts) if wrap == "raw" else body


def _storable(text) -> bool:
    try:
        str(text).encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _check(cands):
    assert cands
    for c in cands:
        assert c.verdict in ("accepted", "rejected") and (c.verdict == "accepted" or c.reason)
        assert _storable(c.text) and _storable(c.label)
        json.dumps(c.meta)  # what the store writes
        if c.reason == "malformed":
            assert c.meta.get("error")
        if c.verdict == "accepted":
            assert not CONTROL.search(c.text) and clean_text(generated_side(c.text))


def test_classify_screening_never_raises(tiny_config):
    cfg = tiny_config()
    task = ClassifyTask(cfg)
    setup = _setup(cfg, task)

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(text=replies("classify", "f"), kind=st.sampled_from(["targeted", "self_revise"]))
    def run(text, kind):
        _check(_screen(task, cfg, setup, text, kind))

    run()


@pytest.mark.parametrize("name", sorted(CODE_TASKS))
def test_code_task_screening_never_raises(code_config, name):
    task, cfg, setup = code_task(code_config, name)
    problem = task.problems[setup[0]["self_revise"].meta["problem"]]
    family = name if name in ("faultloc", "codegen") else "code"
    lines = tuple(problem.reference.split("\n")) if name == "faultloc" else ()

    # few examples: a candidate that parses runs in the sandbox (a tenth of a second each)
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(text=replies(family, problem.entry_point, lines),
           kind=st.sampled_from(["targeted", "self_revise"]))
    def run(text, kind):
        _check(_screen(task, cfg, setup, text, kind))

    run()
