"""Fuzzing the teacher-output parsers: any text gives candidates or counted rejections, never an exception."""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loop.components import build_task
from loop.records import GenRequest
from loop.tasks.classify import ClassifyTask, extract_json

REQ = GenRequest(messages=[{"role": "user", "content": "x"}], max_tokens=10, temperature=0.0, top_p=1.0,
                 seed=0)
REVISE = GenRequest(messages=[{"role": "user", "content": "y"}], max_tokens=10, temperature=0.0, top_p=1.0,
                    seed=0, kind="self_revise", meta={"problem": "HumanEval/0"})

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                           lambda inner: (st.lists(inner, max_size=4)
                                          | st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                           max_leaves=12)
# replies that look like what a teacher sends: JSON (whole, cut short, in prose or fences), code, noise
replies = st.one_of(
    st.text(max_size=400),
    json_values.map(json.dumps),
    st.builds(lambda v, cut: json.dumps(v)[:cut], json_values, st.integers(0, 200)),
    st.builds(lambda items: json.dumps({"samples": items}),
              st.lists(st.dictionaries(
                  st.sampled_from(["text", "label", "code", "intent", "function", "tests", "line"]),
                  json_values, max_size=4), max_size=4)),
    st.builds(lambda pre, v: f"{pre}\n```json\n{json.dumps(v)}\n```", st.text(max_size=40), json_values),
    st.builds(lambda code: f"```python\n{code}\n```", st.text(max_size=200)),
    st.text(alphabet=st.characters(max_codepoint=0x1F), max_size=100),  # control characters
)


@settings(max_examples=300, deadline=None)
@given(text=replies)
def test_extract_json_never_raises(text):
    extract_json(text)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=replies)
def test_classify_parse_counts_every_reply(tiny_config, text):
    task = ClassifyTask(tiny_config())
    cands = task.parse(text, REQ)
    assert cands and all(c.verdict in ("pending", "rejected") for c in cands)
    assert all(c.reason for c in cands if c.verdict == "rejected")
    assert all(c.label in task.labels for c in cands if c.verdict == "pending")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=replies, kind=st.sampled_from(["targeted", "self_revise"]))
def test_code_parsers_count_every_reply(code_config, text, kind):
    for name in ("defects", "codegen", "faultloc"):
        cfg = code_config(name) if name != "codegen" else code_config(
            "seed-codegen", **{"data.train_size": 8, "data.dev_size": 4, "data.test_size": 4})
        task = build_task(cfg)
        task.problems = {"HumanEval/0": _problem()}
        req = REVISE if kind == "self_revise" else REQ
        cands = task.parse(text, req)
        assert cands and all(c.verdict in ("pending", "rejected") for c in cands)
        task.verify(cands)  # pending candidates run in the sandbox; nothing raises
        assert all(c.verdict in ("pending", "rejected") for c in cands)


def _problem():
    from loop.humaneval import Problem

    return Problem("HumanEval/0", "def f(x):\n    \"\"\"Return x.\"\"\"\n", "    return x\n",
                   "def check(candidate):\n    assert candidate(1) == 1\n", "f",
                   reference="def f(x):\n    \"\"\"Return x.\"\"\"\n    return x\n")
