"""The named SQL sections of queries.sql, loaded once."""

from __future__ import annotations

import re
from importlib import resources

_SECTION = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def _load() -> dict[str, str]:
    text = resources.files("eoflow.journal").joinpath("queries.sql").read_text("utf-8")
    parts = _SECTION.split(text)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


Q: dict[str, str] = _load()
