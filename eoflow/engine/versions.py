"""The version of an app's code, which every run records (`eoflow_workflows.app_version`).

Explicit (`Engine(app_version=...)`, `--app-version`, EOFLOW_APP_VERSION), or by default a hash
of the code of every workflow, step and transaction registered when the engine starts: for
each, sorted by kind and name, its kind, its registered name and its source text as written
(`inspect.getsource`, dedented). The same files give the same version in any process, on any
machine and any Python; a change to one of those functions' bodies, names or decorators'
lines changes it. Helpers they call are not in it (set the version by hand when they decide a
workflow's control flow). A function whose source cannot be read (defined in a REPL) counts
by its bytecode instead, which is stable only on one Python version.
"""

from __future__ import annotations

import hashlib
import inspect
import textwrap
from collections.abc import Iterable

from eoflow.engine.registry import Definition

LENGTH = 12  # hex digits of the hash kept: short enough to read, far from colliding


def code_version(definitions: Iterable[Definition]) -> str:
    digest = hashlib.sha256()
    for definition in sorted(definitions, key=lambda d: (d.kind.value, d.name)):
        digest.update(f"{definition.kind.value}\0{definition.name}\0".encode())
        digest.update(_source(definition).encode())
        digest.update(b"\0")
    return digest.hexdigest()[:LENGTH]


def uses_patches(definitions: Iterable[Definition]) -> bool:
    """Whether any of these functions' code calls eoflow.patched() or deprecated_patch()."""
    return any("patched(" in text or "deprecated_patch(" in text
               for text in map(_source, definitions))


def _source(definition: Definition) -> str:
    fn = inspect.unwrap(definition.fn)
    try:
        return textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        code = getattr(fn, "__code__", None)
        return repr(fn) if code is None else code.co_code.hex() + repr(code.co_consts)
