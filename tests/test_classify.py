import json

import pytest
from conftest import ROOT

from loop.config import load_config
from loop.records import GenRequest
from loop.tasks.classify import ClassifyTask, extract_json, scores


@pytest.fixture
def task():
    return ClassifyTask(load_config(None, {"task.prompts": str(ROOT / "prompts" / "classify")}))


def req(kind="targeted"):
    return GenRequest(messages=[{"role": "user", "content": "x"}], max_tokens=10, temperature=0, top_p=1,
                      seed=0, kind=kind, meta={"neighbourhood": 2})


def test_parses_guided_json(task):
    text = json.dumps({"samples": [{"text": "I love it", "label": "positive"},
                                   {"text": "It rains", "label": "Neutral"}]})
    cands = task.parse(text, req())
    assert [(c.text, c.label, c.verdict) for c in cands] == [("I love it", "positive", "pending"),
                                                             ("It rains", "neutral", "pending")]
    assert cands[0].meta["neighbourhood"] == 2


def test_parses_fenced_and_prose(task):
    text = 'Sure! Here you go:\n```json\n[{"text": "meh day", "label": "neutral"}]\n```\nEnjoy.'
    assert [c.label for c in task.parse(text, req())] == ["neutral"]
    assert extract_json('blah {"text": "a", "label": "b"} trailing') == {"text": "a", "label": "b"}


def test_truncated_output_salvages_complete_items(task):
    text = '{"samples":[{"text":"great game","label":"positive"},{"text":"awful ref","label":"nega'
    cands = task.parse(text, req())
    assert [(c.text, c.verdict) for c in cands] == [("great game", "pending")]


@pytest.mark.parametrize("text", ["", "no json here", "```\n{broken\n```", "\x00\x01\x02", "[]"])
def test_unparseable_is_a_counted_rejection(task, text):
    cands = task.parse(text, req())
    assert len(cands) == 1 and cands[0].verdict == "rejected" and cands[0].reason == "parse"


def test_schema_label_length_rejections(task):
    text = json.dumps({"samples": [{"text": 5, "label": "positive"}, {"text": "fine text", "label": "angry"},
                                   {"text": "x", "label": "neutral"},
                                   {"text": "y" * 400, "label": "neutral"}]})
    assert [c.reason for c in task.parse(text, req())] == ["schema", "label", "length", "length"]


def test_json_schema_enumerates_labels(task):
    schema = task.json_schema(4)
    item = schema["properties"]["samples"]["items"]
    assert item["properties"]["label"]["enum"] == ["negative", "neutral", "positive"]
    assert schema["properties"]["samples"]["maxItems"] == 4


def test_templates_render_with_strict_variables(task):
    from loop.records import Example
    msgs = task.messages("targeted", n=3, exemplars=[Example("hi there", "neutral")], contrasts=[],
                         confusion=("neutral", "positive"))
    assert msgs[0]["role"] == "system" and "negative, neutral, positive" in msgs[0]["content"]
    assert "[neutral] hi there" in msgs[1]["content"] and "Write 3 new" in msgs[1]["content"]
    from loop.errors import ConfigError
    with pytest.raises(ConfigError, match="targeted.j2"):
        task.messages("targeted", n=3)


def test_macro_f1_averages_over_the_labels_the_split_holds():
    s = scores(["a", "b", "c"], ["a", "b", "b"], ["a", "b", "c"])  # no gold "c": its zero is not averaged in
    assert s["macro_f1"] == pytest.approx((1.0 + 2 / 3) / 2) and s["f1_c"] == 0.0


def test_scores():
    s = scores(["a", "a", "b", "b"], ["a", "b", "b", "b"], ["a", "b"])
    assert s["accuracy"] == 0.75
    assert s["f1_a"] == pytest.approx(2 / 3) and s["f1_b"] == pytest.approx(0.8)
    assert s["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)


@pytest.mark.parametrize("text", [
    "A small seller mislabelled a tweet as 'positive' when it should have been 'negative'.",
    "This tweet should be labeled neutral by the classifier",
    "Here is another training example about the weather",
    "As the prompt says, the flight was late",
    'My review was "negative" because the food was cold',
])
def test_samples_that_leak_the_request_are_rejected(task, text):
    cands = task.parse(json.dumps({"samples": [{"text": text, "label": "negative"}]}), req())
    assert [(c.verdict, c.reason) for c in cands] == [("rejected", "prompt_leak")]


def test_ordinary_texts_and_label_words_in_use_are_not_leaks(task):
    texts = ["Feeling so positive about today's match!", "The flight label on my bag was torn, so negative",
             "neutral ground for the meeting"]
    cands = task.parse(json.dumps({"samples": [{"text": t, "label": "neutral"} for t in texts]}), req())
    assert [c.verdict for c in cands] == ["pending"] * 3


def test_a_label_name_no_text_would_hold_is_a_leak_and_the_check_can_be_off():
    cfg = load_config(None, {"task.prompts": str(ROOT / "prompts" / "classify"),
                             "task.labels": ["card_arrival", "lost_or_stolen_card"]})
    reply = json.dumps({"samples": [{"text": "Where is my card? card_arrival please",
                                     "label": "card_arrival"},
                                    {"text": "My card never arrived", "label": "card_arrival"}]})
    assert [c.reason for c in ClassifyTask(cfg).parse(reply, req())] == ["prompt_leak", ""]
    off = load_config(None, {"task.prompts": str(ROOT / "prompts" / "classify"), "task.reject_leaks": False,
                             "task.labels": ["card_arrival", "lost_or_stolen_card"]})
    assert [c.verdict for c in ClassifyTask(off).parse(reply, req())] == ["pending", "pending"]
