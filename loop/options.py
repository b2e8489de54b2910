"""How a setting is declared: a dataclass field with its help text and, for a number, its range.

Every config section and every component's own options are dataclasses built from `option(...)`;
`loop config --explain` prints the help, and the range is checked as the config is read. A component
(task, student, teacher back-end) declares its options as a nested dataclass named `Options`; the config
section of the chosen component is its common fields plus those, so a component's file is the only place its
settings are written down.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def option(default, help_: str, ge=None, gt=None, le=None, path: bool = False):
    """A dataclass field with help text (shown by `loop config --explain`) and, for a number, its range:
    ge / gt: the least allowed value (inclusive / exclusive), le: the largest (inclusive). `path`: a file
    path, relative to the config's folder (resolved before the component is built)."""
    meta = {"help": help_, **{k: v for k, v in (("ge", ge), ("gt", gt), ("le", le)) if v is not None}}
    if path:
        meta["path"] = True
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


class Component:
    """What every plug-in (task, student, teacher back-end) declares besides its behaviour: its own options
    (`Options`, a dataclass of `option(...)` fields, read from its config section) and the rules that tie
    them to the rest of the config (`config_rules`, checked as the config is read)."""

    @dataclass
    class Options:
        pass

    @staticmethod
    def config_rules(cfg) -> list[tuple[bool, str, str]]:
        """(holds, dotted key, message) for each rule across sections; a rule that does not hold is a
        ConfigError naming the key."""
        return []
