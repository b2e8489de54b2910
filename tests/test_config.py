from pathlib import Path

import pytest

from loop.config import explain, load_config
from loop.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return str(p)


def test_defaults_validate():
    cfg = load_config(None)
    assert cfg.task.labels == ["negative", "neutral", "positive"]
    assert cfg.budget.tokens > 0


def test_unknown_key_names_file_and_key(tmp_path):
    path = write(tmp_path, "budget:\n  tokenz: 5\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:budget: unknown key 'tokenz'.*valid: .*tokens"):
        load_config(path)


def test_unknown_section(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'teachr'"):
        load_config(write(tmp_path, "teachr: {}\n"))


def test_wrong_type_names_key(tmp_path):
    with pytest.raises(ConfigError, match=r"budget\.tokens: expected int, got str"):
        load_config(write(tmp_path, "budget:\n  tokens: lots\n"))


@pytest.mark.parametrize("text,key", [("budget:\n  tokens: 0\n", "budget.tokens"),
                                      ("budget:\n  samples: -3\n", "budget.samples"),
                                      ("generation:\n  strategy: clever\n", "generation.strategy"),
                                      ("budget:\n  money: 5\n", "budget.money")])
def test_range_checks(tmp_path, text, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(write(tmp_path, text))


def test_missing_file():
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("/nonexistent/config.yaml")


def test_overrides_apply_and_are_checked():
    cfg = load_config(None, {"budget.tokens": 123, "loop.rounds": 1})
    assert cfg.budget.tokens == 123 and cfg.loop.rounds == 1
    with pytest.raises(ConfigError, match="unknown key 'nope'"):
        load_config(None, {"loop.nope": 1})


def test_paths_resolve_from_project_root_for_configs_folder(tmp_path):
    (tmp_path / "configs").mkdir()
    p = tmp_path / "configs" / "x.yaml"
    p.write_text("data:\n  source: data/x.jsonl\n")
    cfg = load_config(str(p))
    assert cfg.resolve(cfg.data.source) == tmp_path / "data" / "x.jsonl"


def test_explain_covers_every_key():
    keys = {row[1] for row in explain()}
    assert {"budget.tokens", "teacher.model", "mining.threshold", "generation.strategy"} <= keys
    assert all(help_ for _, _, _, help_ in explain())
    groups = {row[0] for row in explain()}  # every component's own options, grouped under it
    assert {"teacher backend openai", "student name encoder", "task name codegen"} <= groups
    assert ("teacher backend openai", "teacher.base_urls") in {row[:2] for row in explain()}


@pytest.mark.parametrize("text,message", [
    ("task:\n  labels: [[negative], [positive]]\n",
     r"task\.labels\[0\]: expected str, got list \['negative'\]"),
    ("task:\n  labels: [1, 2, 3]\n", r"task\.labels\[0\]: expected str, got int 1 \(quote it"),
    ("task:\n  labels: [a, '']\n", r"task\.labels\[1\]: must not be empty"),
    ("filters:\n  contamination_splits: [[test]]\n", r"filters\.contamination_splits\[0\]: must be one of "
                                                      r"dev_mine, dev_stop, test, got list"),
    ("filters:\n  contamination_splits: [train]\n", r"filters\.contamination_splits\[0\]: must be one of"),
    ("teacher:\n  backend: openai\n  base_urls: [3]\n", r"teacher\.base_urls\[0\]: expected str, got int 3"),
    ("teacher:\n  backend: openai\n  base_urls: http://x\n", r"teacher\.base_urls: expected list, got str"),
    ("teacher:\n  openai:\n    base_urls: [3]\n", r"teacher\.openai\.base_urls\[0\]: expected str"),
])
def test_list_elements_are_type_checked(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_generic_container_types():
    from typing import Literal, Optional

    from loop.config_check import check_type as _check_type

    assert _check_type([1, "a"], tuple[int, str], "k") == (1, "a")
    assert _check_type(["a", "b", "c"], tuple[str, ...], "k") == ("a", "b", "c")
    assert _check_type({"a": 1}, dict[str, int], "k") == {"a": 1}
    assert _check_type(None, Optional[list[str]], "k") is None
    with pytest.raises(ConfigError, match=r"k\[1\]: expected str, got int 2"):
        _check_type([1, 2], tuple[int, str], "k")
    with pytest.raises(ConfigError, match=r"k: expected 2 items, got 3"):
        _check_type([1, "a", "b"], tuple[int, str], "k")
    with pytest.raises(ConfigError, match=r"k\.a: expected int, got str"):
        _check_type({"a": "x"}, dict[str, int], "k")
    with pytest.raises(ConfigError, match=r"k: must be one of x, y, got str 'z'"):
        _check_type("z", Literal["x", "y"], "k")


@pytest.mark.parametrize("text,message", [
    ("generation:\n  exemplars: -1\n", r"generation\.exemplars: must be >= 1, got -1"),
    ("generation:\n  contrasts: -3\n", r"generation\.contrasts: must be >= 0, got -3"),
    ("teacher:\n  top_p: 1.5\n", r"teacher\.top_p: must be within \(0, 1\], got 1\.5"),
    ("teacher:\n  gpu_memory_utilization: 0\n", r"teacher\.gpu_memory_utilization: must be within \(0, 1\]"),
    ("filters:\n  contamination_cosine: 2\n", r"filters\.contamination_cosine: must be within \(0, 1\]"),
    ("student:\n  batch_size: 0\n", r"student\.batch_size: must be >= 1"),
    ("student:\n  learning_rate: -0.1\n", r"student\.learning_rate: must be > 0"),
    ("mining:\n  top_k: -2\n", r"mining\.top_k: must be >= 0"),
    ("budget:\n  price_prompt_per_1k: -1\n", r"budget\.price_prompt_per_1k: must be >= 0"),
    ("data:\n  max_record_chars: 0\n", r"data\.max_record_chars: must be >= 1"),
])
def test_ranges_are_checked(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_every_number_declares_its_range():
    """Ranges are declared on the fields; only seeds may be any integer."""
    import dataclasses

    from loop.config import Config

    for section in dataclasses.fields(Config):
        if section.metadata.get("internal"):
            continue
        for f in dataclasses.fields(section.default_factory()):
            numeric = any(t in str(f.type) for t in ("int", "float")) and "list" not in str(f.type)
            if numeric and f.name != "seed":
                assert {"ge", "gt"} & set(f.metadata), f"{section.name}.{f.name} declares no range"


@pytest.mark.parametrize("text,message", [
    ("task:\n  min_chars: 100\n  max_chars: 5\n", r"task\.min_chars: must be <= task\.max_chars \(100 > 5\)"),
    ("generation:\n  cluster_floor: 5\n  cluster_cap: 2\n", r"generation\.cluster_floor: must be <= "
                                                           r"generation\.cluster_cap"),
])
def test_ordered_pairs(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


@pytest.mark.parametrize("text,message", [
    ("budget:\n  tokens: 5\n  tokens: 6\n",
     r"c\.yaml:3: duplicate key 'tokens' at line 3 \(first at line 2\)"),
    ("budget:\n  tokens: 5\nloop:\n  rounds: 1\nbudget:\n  samples: 3\n",
     r"c\.yaml:5: duplicate key 'budget' at line 5 \(first at line 1\)"),
    ("task: {labels: [a, b], labels: [c, d]}\n", r"duplicate key 'labels' at line 1 \(first at line 1\)"),
])
def test_duplicate_keys_name_both_lines(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_yaml_merge_keys_may_still_be_overridden(tmp_path):
    path = write(tmp_path, "budget:\n  <<: {tokens: 5, samples: 3}\n  tokens: 7\n")
    cfg = load_config(path)
    assert (cfg.budget.tokens, cfg.budget.samples) == (7, 3)


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "configs").glob("*.yaml")))
def test_shipped_configs_load(name):
    load_config(str(ROOT / "configs" / name))


def test_run_dir_must_be_writable(tmp_path):
    import os

    from loop.runs import check_run_dir

    check_run_dir(load_config(None, {"run.dir": str(tmp_path / "new" / "runs")}))
    assert not (tmp_path / "new").exists()  # checked, not created
    with pytest.raises(ConfigError,
                       match=r"run\.dir: cannot write /dev/null/runs \(/dev/null is not a folder\)"):
        check_run_dir(load_config(None, {"run.dir": "/dev/null/runs"}))
    if os.geteuid() != 0:  # root writes into read-only folders
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with pytest.raises(ConfigError, match=r"run\.dir: cannot write .*ro/runs"):
            check_run_dir(load_config(None, {"run.dir": str(ro / "runs")}))


def test_a_component_rule_names_its_key():
    with pytest.raises(ConfigError, match=r"task\.pass_k: must be <= task\.samples"):
        load_config("configs/seed-codegen.yaml",
                    {"task.samples": 2, "task.pass_k": 3, "task.temperature": 0.8})


def test_a_component_section_takes_the_chosen_components_options(tmp_path, caplog):
    cfg = load_config(write(tmp_path, "teacher:\n  backend: openai\n  base_urls: [http://h/v1]\n"
                                      "  concurrency: 3\n  vllm:\n    kv_cache_gb: 7\n"))
    assert cfg.teacher.concurrency == 3 and not hasattr(cfg.teacher, "kv_cache_gb")
    cfg = load_config(write(tmp_path, "teacher:\n  kv_cache_gb: 5\n  openai:\n    concurrency: 2\n"),
                      {"teacher.backend": "openai", "teacher.base_urls": ["http://h/v1"]})
    assert cfg.teacher.concurrency == 2  # the chosen back-end's block is used
    assert "teacher.kv_cache_gb: an option of teacher backend vllm, not of 'openai': not used" in caplog.text
    assert load_config(write(tmp_path, "teacher:\n  vllm:\n    kv_cache_gb: 5\n")).teacher.kv_cache_gb == 5


@pytest.mark.parametrize("text,message", [
    ("teacher:\n  backend: vlm\n", r"teacher\.backend: unknown name 'vlm' \(valid: llamacpp, openai, replay"),
    ("teacher:\n  kv_cach_gb: 5\n", r"teacher: unknown key 'kv_cach_gb' \(valid: backend, cache, dtype"),
    ("teacher:\n  openai:\n    concurency: 5\n", r"teacher\.openai: unknown key 'concurency'"),
    ("student:\n  name: lines\n",
     r"student\.name: task classify needs a text_classifier student: encoder, probe"),
    ("loop:\n  metric: top1\n", r"loop\.metric: task classify reports accuracy, macro_f1"),
    ("student:\n  name: probe\n  epochs: 3\n  probe_c: -1\n", r"student\.probe_c: must be > 0"),
])
def test_component_names_pairings_and_options_are_checked(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_the_default_prompts_come_from_the_project_for_a_config_written_elsewhere(tmp_path):
    """A user's config that leaves task.prompts at its default finds the built-in templates; a prompts folder
    of that name next to the config is the user's own and wins."""
    from conftest import ROOT

    from loop.tasks.classify import ClassifyTask

    mine = tmp_path / "my.yaml"
    mine.write_text("task:\n  labels: [a, b]\n")
    cfg = load_config(mine)
    assert cfg.prompts_folder() == ROOT / "prompts" / "classify"
    ClassifyTask(cfg)  # its templates load
    own = tmp_path / "prompts" / "classify"
    own.mkdir(parents=True)
    assert load_config(mine).prompts_folder() == own


def test_runs_and_mlruns_go_in_the_working_folder_for_every_config(tmp_path, monkeypatch):
    """A config elsewhere that leaves run.dir and tracking.uri at their defaults writes where `loop` runs,
    like every other config; set, they resolve from the config's folder like any path."""
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(work)
    plain = elsewhere / "plain.yaml"
    plain.write_text("loop: {rounds: 1}\n")
    cfg = load_config(str(plain))
    assert cfg.resolve(cfg.run.dir) == work / "runs"
    assert cfg.tracking.uri == f"sqlite:///{work}/mlruns/mlflow.db"
    from loop.runs import runs_root
    assert runs_root(str(plain), {}) == (work / "runs").resolve()
    own = elsewhere / "own.yaml"
    own.write_text("run: {dir: out}\ntracking: {uri: 'sqlite:///track/m.db'}\n")
    cfg = load_config(str(own))
    assert cfg.resolve(cfg.run.dir) == elsewhere / "out" and runs_root(str(own), {}) == elsewhere / "out"
    assert cfg.tracking.uri == "sqlite:///track/m.db"  # resolved from the config's folder by the tracker
