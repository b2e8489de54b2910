"""A new teacher back-end with options of its own and a new task are one class each plus one registry line:
both are defined here, registered, configured from YAML (their options validated) and run for a round."""

import json
from dataclasses import dataclass

import pytest
from conftest import LABELS, WORDS, TinyStudent

from loop import registry
from loop.components import assemble
from loop.controller import run_loop
from loop.data import load_splits
from loop.errors import ConfigError
from loop.options import Component, option
from loop.prompts import Prompts
from loop.records import Candidate, GenResult
from loop.tasks.base import Task
from loop.tasks.classify import scores


class EchoTeacher(Component):
    """Answers every request with `per_request` samples whose texts start with `prefix`."""

    @dataclass
    class Options:
        prefix: str = option("echo", "what every generated text starts with")
        per_request: int = option(2, "samples per reply", ge=1)

    @staticmethod
    def config_rules(cfg):
        return [(cfg.teacher.prefix.strip() != "", "teacher.prefix", "must not be blank")]

    def __init__(self, cfg):
        self.cfg, self.name, self.sent = cfg, f"echo:{cfg.prefix}", 0

    def prompt_tokens(self, messages):
        return sum(len(m["content"].split()) for m in messages)

    def generate(self, requests):
        out = []
        for req in requests:
            self.sent += 1
            samples = [{"text": f"{self.cfg.prefix} {self.sent} {i} " + " ".join(WORDS[lab]), "label": lab}
                       for i, lab in enumerate(LABELS[:self.cfg.per_request])]
            text = json.dumps({"samples": samples})
            out.append(GenResult(req.id, text, self.prompt_tokens(req.messages), len(text.split()), "stop",
                                 0.0))
        return out

    def unload(self):
        pass


class TinyTask(Task):
    """Sentiment in as few members as the contract allows."""

    name = "tiny"

    @dataclass
    class Options:
        shout: bool = option(False, "describe the labels in capitals")

    def __init__(self, cfg):
        super().__init__(cfg)
        self.prompts = Prompts(cfg.resolve(cfg.task.prompts))

    def load_splits(self):
        return load_splits(self.full)

    def common(self):
        text = self.cfg.description.upper() if self.cfg.shout else self.cfg.description
        return {"description": text, "labels": self.labels}

    def messages(self, kind, **variables):
        return self.prompts.messages(kind, self.common(), **variables)

    def json_schema(self, n, kind="targeted"):
        return {"type": "object"}

    def parse(self, text, req):
        return [Candidate(s["text"], s["label"], req.id, req.kind, meta=dict(req.meta))
                for s in json.loads(text)["samples"]]

    def label_schema(self):
        return {"type": "object"}

    def read_label(self, text):
        return json.loads(text).get("label")

    def metric(self, pred, examples):
        return scores(pred.labels, [e.label for e in examples], self.labels)


class TinyStudentPlugin(TinyStudent, Component):
    kinds = ("text_classifier",)

    def __init__(self, cfg, labels):
        super().__init__(labels)


@pytest.fixture
def plugged(monkeypatch, tmp_path):
    monkeypatch.setitem(registry.TEACHERS, "echo", EchoTeacher)
    monkeypatch.setitem(registry.TASKS, "tiny", TinyTask)
    monkeypatch.setitem(registry.STUDENTS, "tiny", TinyStudentPlugin)
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "system.j2").write_text("You write {{ description }} examples: {{ labels | join(', ') }}.")
    (prompts / "targeted.j2").write_text("Write {{ n }} like: "
                                         "{% for e in exemplars %}{{ e.text }}; {% endfor %}")
    (prompts / "self_revise.j2").write_text("Write {{ n }} like {{ example.text }} ({{ example.label }}).")
    return prompts


def config(tiny_config, prompts, **teacher):
    return tiny_config(**{"task.name": "tiny", "task.prompts": str(prompts), "task.shout": True,
                          "student.name": "tiny", "teacher.backend": "echo", "teacher.per_request": 3,
                          "filters.near_dup_cosine": 0.999, "filters.diversity_cosine": 0.999,
                          **{f"teacher.{k}": v for k, v in teacher.items()}})


def test_a_plugged_in_task_and_teacher_run_a_round(plugged, tiny_config, tmp_path):
    cfg = config(tiny_config, plugged, prefix="plug")
    assert (cfg.teacher.prefix, cfg.teacher.per_request, cfg.task.shout) == ("plug", 3, True)
    parts = assemble(cfg, tmp_path / "runs" / "p")
    assert isinstance(parts.teacher, EchoTeacher) and isinstance(parts.task, TinyTask)
    summary = run_loop(cfg, parts, "p", tmp_path / "runs" / "p")
    assert summary["rounds_run"] == 2 and parts.teacher.sent > 0
    accepted = parts.store.accepted("p")
    assert accepted and all(e.text.startswith("plug ") for e in accepted)
    system = parts.task.messages("targeted", n=2, exemplars=[])[0]["content"]
    assert "THE SENTIMENT OF A TWEET" in system  # the task's own option reached its prompts


@pytest.mark.parametrize("override,message", [
    ({"prefix": " "}, r"teacher\.prefix: must not be blank"),
    ({"per_request": 0}, r"teacher\.per_request: must be >= 1"),
    ({"prefixx": "a"}, r"teacher: unknown key 'prefixx' \(valid: backend, .*per_request, prefix"),
])
def test_a_plugged_in_components_options_are_validated(plugged, tiny_config, override, message):
    with pytest.raises(ConfigError, match=message):
        config(tiny_config, plugged, **override)
