"""Prompt templates: prompts/<task>/*.j2, rendered with StrictUndefined into chat messages."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import jinja2

from loop.errors import ConfigError

TEMPLATES = ("system.j2", "targeted.j2", "self_revise.j2")  # required; others (label.j2, ...) are optional
DECLARED = re.compile(r"\{#\s*version:\s*(\S+)\s*#\}")


class Prompts:
    """Loads one task's templates; a missing file or variable is an error, not a blank."""

    def __init__(self, folder: Path):
        self.folder = folder
        for name in TEMPLATES:
            if not (folder / name).is_file():
                raise ConfigError(f"task.prompts: {folder / name} not found")
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(folder)),
                                      undefined=jinja2.StrictUndefined, trim_blocks=True,
                                      lstrip_blocks=True, keep_trailing_newline=False)

    @property
    def version(self) -> str:
        """'<declared version>@<hash of every template>', logged so results name the prompts they used.

        The declared version is the `{# version: ... #}` header of system.j2; the hash catches
        edits that forgot to bump it.
        """
        h = hashlib.sha1()
        for path in sorted(self.folder.glob("*.j2")):
            h.update(path.name.encode() + b"\0" + path.read_bytes())
        m = DECLARED.search((self.folder / "system.j2").read_text(encoding="utf-8"))
        return f"{m.group(1) if m else 'unversioned'}@{h.hexdigest()[:10]}"

    def has(self, name: str) -> bool:
        return (self.folder / name).is_file()

    def render(self, name: str, **variables) -> str:
        try:
            return self.env.get_template(name).render(**variables).strip()
        except jinja2.UndefinedError as exc:
            raise ConfigError(f"{self.folder / name}: {exc.message}") from None

    def messages(self, kind: str, common: dict, **variables) -> list[dict]:
        """System + user chat messages for `kind` (targeted, self_revise, label, ...).

        The system message is `<kind>_system.j2` where the folder has one, else system.j2.
        """
        if not self.has(f"{kind}.j2"):
            raise ConfigError(f"task.prompts: {self.folder / (kind + '.j2')} not found (needed for "
                              f"'{kind}' requests)")
        system = f"{kind}_system.j2" if self.has(f"{kind}_system.j2") else "system.j2"
        return [{"role": "system", "content": self.render(system, **common)},
                {"role": "user", "content": self.render(f"{kind}.j2", **common, **variables)}]
