"""Patches: one version of a workflow's code serving the runs started before a change and
those started after it.

    if eoflow.patched("charge-v2"):
        charge_with_tax(order)      # the new code
    else:
        charge(order)               # what runs from before the change did here

`patched(id)` records a PATCH marker as the run's next step the first time a run reaches it,
and returns True; on replay it returns True if the marker is there. A run whose history
already has another step at that point passed it without the patch: False, and no step is
taken. Once no live run is from before the patch, `deprecated_patch(id)` replaces the branch
(it takes the marker of the runs that have one, and records nothing); once no live run has
the marker, remove that call too. Removing either too early is a determinism error naming
the patch.
"""

from __future__ import annotations

from eoflow.engine.context import RunContext, require_run
from eoflow.engine.executor import begin, journal_step
from eoflow.errors import ContextError
from eoflow.journal import codec
from eoflow.journal.records import StepKind, StepRecord


def patched(patch_id: str) -> bool:
    """True if this run takes the code of patch `patch_id` (see the module's docstring)."""
    run = _run("eoflow.patched()", patch_id)
    recorded = run.recorded.get(run.step + 1)
    if recorded is not None and not _is_marker(recorded, patch_id):
        return False  # its history passed this point without the patch
    number, replayed = begin(run, patch_id, StepKind.PATCH)
    if replayed is None:
        now = run.runtime.clock.now_ms()
        journal_step(run, StepRecord(run.workflow_id, number, patch_id, StepKind.PATCH,
                                     codec.encode(True), None, 1, now, now))
    return True


def deprecated_patch(patch_id: str) -> None:
    """The code of patch `patch_id` is the only code now: take the run's marker if it has one,
    record nothing otherwise."""
    run = _run("eoflow.deprecated_patch()", patch_id)
    recorded = run.recorded.get(run.step + 1)
    if recorded is not None and _is_marker(recorded, patch_id):
        begin(run, patch_id, StepKind.PATCH)


def _run(what: str, patch_id: str) -> RunContext:
    if not isinstance(patch_id, str) or not patch_id:
        raise ContextError(f"{what} needs a patch id: a non-empty string")
    run = require_run(what)
    if run.in_step or run.in_transaction:
        raise ContextError(f"{what} belongs in a workflow's own code, not in a step or a "
                           "transaction")
    return run


def _is_marker(record: StepRecord, patch_id: str) -> bool:
    return record.kind is StepKind.PATCH and record.name == patch_id
