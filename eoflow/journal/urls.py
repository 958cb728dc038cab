"""Where a journal lives: a SQLite file's path, or a PostgreSQL URL (never shown with its
password)."""

from __future__ import annotations

import re

SCHEMES = ("postgresql://", "postgres://")


def is_url(journal: str) -> bool:
    """Whether `journal` names a PostgreSQL database (else it is a SQLite file's path)."""
    return journal.startswith(SCHEMES)


def redact(url: str) -> str:
    """The URL without its password, for messages, logs and `eoflow status` (a password may
    also come from PGPASSWORD or ~/.pgpass, which are never read here). Done on the raw text,
    so that a password holding '/', '?' or '#' (not percent-encoded) is masked too."""
    if not is_url(url):
        return url
    scheme, _, rest = url.partition("://")
    at = rest.rfind("@")
    if at != -1:
        rest = rest[:at].partition(":")[0] + rest[at:]
    return f"{scheme}://{_SECRET_PARAMS.sub('', rest)}"


_SECRET_PARAMS = re.compile(r"(?<=[?&])(?:ssl)?password=[^&]*&?")
