"""`eoflow journal export`: the journal's runs as JSON Lines, one run per line with its steps.

Streaming: runs are read a page at a time in the order they were created and
written as they are read, so a journal of any size exports in constant memory, while the app
runs. Each page is its own read snapshot: a run finishing during a long export appears as it
was when its page was read.

Values (inputs, outputs, errors) appear as eoflow stores them: tagged JSON, where a value JSON
has no form for is an object {"$eoflow": TAG, "v": ...} (bytes in base64, tuples, sets,
datetimes, Decimals, UUIDs, dataclasses; errors as {"$eoflow": "error", ...}). A value the
journal cannot read back is exported as {"$eoflow": "unreadable", "v": its stored text (or
base64 of its bytes), "error": why}, never left out.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any, TextIO, cast

from eoflow.errors import UndecodableValueError
from eoflow.journal import codec
from eoflow.journal.opening import open_side
from eoflow.journal.records import Status
from eoflow.journal.sql import Q

PAGE = 500  # runs per read


def _value(stored: str | bytes | None) -> Any:
    if stored is None:
        return None
    try:
        text = codec.as_text(stored)
        assert text is not None
        return json.loads(text)
    except (UndecodableValueError, ValueError) as error:
        raw = stored if isinstance(stored, str) else base64.b64encode(stored).decode()
        return {codec.TAG: "unreadable", "v": raw, "error": str(error)}


def runs(path: str, *, since_ms: int | None = None, status: Status | None = None,
         workflow_id: str | None = None) -> Iterator[dict[str, Any]]:
    """Each run matching the filters (finished or changed at or after `since_ms`), oldest
    first, as a dict ready for JSON."""
    side = open_side(path, readonly=True)
    conn = side.conn
    try:
        after = 0
        while True:
            side.backend.snapshot(conn)
            try:
                page = conn.execute(Q["export_runs"], (
                    after, since_ms, None if status is None else status.value, workflow_id,
                    PAGE)).fetchall()
                steps = {str(r[1]): list(conn.execute(Q["steps_of"], (r[1],)))
                         for r in page}
            finally:
                conn.execute("ROLLBACK")  # read only
            if not page:
                return
            for row in page:
                yield _run(row, steps[str(row[1])])
            after = cast(int, page[-1][0])
    except side.backend.errors as error:
        raise side.backend.translate(side.where, error) from error
    finally:
        conn.close()


def _run(row: Any, steps: list[Any]) -> dict[str, Any]:
    (_, workflow_id, name, status, inputs, output, error, created_ms, updated_ms, recoveries,
     parent_id, queue) = row
    return {
        "workflow_id": workflow_id, "name": name, "status": status,
        "created_ms": created_ms, "updated_ms": updated_ms, "recovery_attempts": recoveries,
        "parent_id": parent_id, "queue": queue,
        "inputs": _value(inputs), "output": _value(output), "error": _value(error),
        "steps": [{"step": s[1], "name": s[2], "kind": s[3], "output": _value(s[4]),
                   "error": _value(s[5]), "attempts": s[6], "started_ms": s[7],
                   "ended_ms": s[8]} for s in steps],
    }


def export(path: str, out: TextIO, **filters: Any) -> int:
    """Write the runs of `runs(path, **filters)` to `out`, one JSON object per line; return
    how many."""
    count = 0
    for run in runs(path, **filters):
        out.write(json.dumps(run, ensure_ascii=False, separators=(",", ":")))
        out.write("\n")
        count += 1
    return count
