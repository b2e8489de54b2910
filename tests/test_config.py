import pytest

from loop.config import explain, load_config
from loop.errors import ConfigError


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
    keys = {row[0] for row in explain()}
    assert {"budget.tokens", "teacher.model", "mining.threshold", "generation.strategy"} <= keys
    assert all(help_ for _, _, help_ in explain())
