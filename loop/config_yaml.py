"""Reading a YAML config file strictly: a key given twice in one mapping is an error naming both lines.

PyYAML keeps the last of two equal keys without a word, so a setting written twice (a section
pasted again further down, say) would silently undo the first.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from loop.errors import ConfigError

MERGE_TAG = "tag:yaml.org,2002:merge"


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key, line: int, first: int):
        super().__init__(f"duplicate key '{key}'")
        self.key, self.line, self.first = key, line, first


class UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key repeated in one mapping; `<<` merges may still be overridden."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: SafeLoader's own error says so below
                continue
            line = key_node.start_mark.line + 1
            if first is not None:
                raise _DuplicateKey(key, line, first)
            seen[key] = line
        return super().construct_mapping(node, deep)


def read_yaml(path: Path) -> dict:
    """The mapping in a YAML file; not YAML, not a mapping or a repeated key is a ConfigError."""
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=UniqueKeyLoader) or {}
    except _DuplicateKey as exc:
        raise ConfigError(f"{path}:{exc.line}: duplicate key '{exc.key}' at line {exc.line} "
                          f"(first at line {exc.first})") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    return data
