"""Prompt templates: prompts/<task>/*.j2, rendered with StrictUndefined into chat messages."""

from __future__ import annotations

import hashlib
from pathlib import Path

import jinja2

from loop.errors import ConfigError

TEMPLATES = ("system.j2", "targeted.j2", "self_revise.j2")


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
        """A short hash of the templates' text, logged so results name the prompts they used."""
        h = hashlib.sha1()
        for name in TEMPLATES:
            h.update((self.folder / name).read_bytes())
        return h.hexdigest()[:10]

    def render(self, name: str, **variables) -> str:
        try:
            return self.env.get_template(name).render(**variables).strip()
        except jinja2.UndefinedError as exc:
            raise ConfigError(f"{self.folder / name}: {exc.message}") from None

    def messages(self, kind: str, common: dict, **variables) -> list[dict]:
        """System + user chat messages for `kind` ('targeted' or 'self_revise')."""
        return [{"role": "system", "content": self.render("system.j2", **common)},
                {"role": "user", "content": self.render(f"{kind}.j2", **common, **variables)}]
