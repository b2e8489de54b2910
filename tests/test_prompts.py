import shutil

import pytest
from conftest import ROOT

from loop.errors import ConfigError
from loop.prompts import Prompts


def test_version_names_the_declared_version_and_hashes_every_template(tmp_path):
    folder = tmp_path / "p"
    shutil.copytree(ROOT / "prompts" / "classify", folder)
    before = Prompts(folder).version
    assert before.startswith("classify-v3@")
    (folder / "label.j2").write_text((folder / "label.j2").read_text() + "\nBe brief.")
    after = Prompts(folder).version
    assert after != before and after.startswith("classify-v3@")  # an edit without a bump still shows


def test_kind_specific_system_message_and_missing_template(tmp_path):
    prompts = Prompts(ROOT / "prompts" / "classify")
    common = {"description": "sentiment", "labels": ["a", "b"]}
    label = prompts.messages("label", common, text="hello")
    assert "annotator" in label[0]["content"] and "hello" in label[1]["content"]
    assert "training data" in prompts.messages("targeted", common, n=2, exemplars=[], contrasts=[],
                                               confusion=None)[0]["content"]
    with pytest.raises(ConfigError, match="nope.j2"):
        prompts.messages("nope", common)
