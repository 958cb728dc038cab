"""The named SQL sections of queries.sql, loaded once (and of queries_pg.sql, by pg.py)."""

from __future__ import annotations

import re
from importlib import resources

_SECTION = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def load(filename: str) -> dict[str, str]:
    """The named sections of a .sql file of this package."""
    text = resources.files("eoflow.journal").joinpath(filename).read_text("utf-8")
    parts = _SECTION.split(text)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


Q: dict[str, str] = load("queries.sql")
