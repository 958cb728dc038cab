"""Where a journal lives: a SQLite file's path, or a PostgreSQL URL (never shown with its
password)."""

from __future__ import annotations

import urllib.parse

SCHEMES = ("postgresql://", "postgres://")


def is_url(journal: str) -> bool:
    """Whether `journal` names a PostgreSQL database (else it is a SQLite file's path)."""
    return journal.startswith(SCHEMES)


def redact(url: str) -> str:
    """The URL without its password, for messages, logs and `eoflow status` (a password may
    also come from PGPASSWORD or ~/.pgpass, which are never read here)."""
    if not is_url(url):
        return url
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}@{host}"
    query = "&".join(p for p in parts.query.split("&") if not p.startswith("password="))
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
