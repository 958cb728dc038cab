"""`eoflow verify`: replay recorded runs against the current code, offline, before a deploy.

Each run's workflow function is called with its recorded inputs, under a replay context whose
history is the run's recorded steps: every step, transaction, sleep, send, recv, event, child
start and patch returns what was recorded, and nothing runs (a call past the end of the
history ends the check of that run: the code may do anything new from there). What the replay
needs from a live engine (waiting for a child that has not finished) also ends the check
there. A step called where the history has another is a divergence, reported with the run,
the step number, the recorded name, the name called and the patch involved, if any; so is
code that returns or raises while recorded steps remain. The journal is only read.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from eoflow.engine.context import RunContext, current_run
from eoflow.engine.executor import decode_inputs
from eoflow.engine.registry import REGISTRY
from eoflow.errors import DeterminismError
from eoflow.journal.reader import Reader
from eoflow.journal.records import StepRecord

LIVE = ("PENDING", "ENQUEUED")
FAR_FUTURE_MS = 2**62  # the replay's clock: every recorded sleep is over


@dataclass(frozen=True)
class Divergence:
    workflow_id: str
    name: str
    step: int | None
    recorded: str | None
    called: str | None
    patch: str | None
    problem: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Report:
    checked: int = 0
    seconds: float = 0.0
    divergences: list[Divergence] | None = None
    # Runs checked only up to a step whose replay needs a live engine: (id, step, what).
    partial: list[tuple[str, int, str]] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"checked": self.checked, "seconds": round(self.seconds, 3),
                "runs_per_second": round(self.checked / self.seconds, 1) if self.seconds else 0,
                "divergences": [d.as_dict() for d in self.divergences or []],
                "partial": [{"workflow_id": w, "step": n, "needs": what}
                            for w, n, what in self.partial or []]}


class _EndOfHistory(Exception):
    """The code went past the run's recorded steps: checked up to here."""


class _NeedsEngine(Exception):
    """The replay needs something only a live engine has: checked up to here."""


class _History(dict[int, StepRecord]):
    def pop(self, number: int, default: Any = None) -> Any:
        if number not in self:
            raise _EndOfHistory(number)
        return super().pop(number)


class _Clock:
    def now_ms(self) -> int:
        return FAR_FUTURE_MS

    def wait(self, seconds: float, latch: Any = None) -> bool:
        return False


class _ReplayRuntime:
    """What a replayed workflow may touch: a far-future clock and the journal's records."""

    closed = False

    def __init__(self, reader: Reader) -> None:
        self.clock = _Clock()
        self.journal = reader
        self.txstore = _TxStore()
        self.queue_wakeup = self.runs = _Nothing()  # an enqueue's wake-up and its handle

    def check_open(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        raise _NeedsEngine(name)


class _TxStore:
    in_journal = True


class _Nothing:
    def set(self) -> None:
        pass

    def track(self, workflow_id: str) -> None:
        return None


def candidates(reader: Reader, statuses: tuple[str, ...], since_ms: int | None,
               limit: int | None) -> Iterator[tuple[str, str, str, str | bytes]]:
    """(workflow id, name, status, inputs) of the runs to check, oldest first: those with one
    of `statuses`, and those updated since `since_ms` (None: no such window)."""
    rows = reader._all("verify_candidates", (
        "," + ",".join(statuses) + ",", FAR_FUTURE_MS if since_ms is None else since_ms,
        FAR_FUTURE_MS if limit is None else limit))
    for wid, name, status, inputs in rows:
        yield str(wid), str(name), str(status), inputs


def verify(reader: Reader, runs: Iterator[tuple[str, str, str, str | bytes]]) -> Report:
    report = Report(divergences=[], partial=[])
    started = time.perf_counter()
    runtime = _ReplayRuntime(reader)
    for workflow_id, name, _status, inputs in runs:
        report.checked += 1
        found = _check(runtime, reader, workflow_id, name, inputs)
        assert report.divergences is not None and report.partial is not None
        if isinstance(found, Divergence):
            report.divergences.append(found)
        elif found is not None:
            report.partial.append(found)
    report.seconds = time.perf_counter() - started
    return report


def _check(runtime: _ReplayRuntime, reader: Reader, workflow_id: str, name: str,
           inputs: str | bytes) -> Divergence | tuple[str, int, str] | None:
    definition = REGISTRY.workflow(name)
    if definition is None:
        return Divergence(workflow_id, name, None, None, None, None,
                          f"no workflow named {name!r} in this code")
    history = _History({s.step: s for s in reader.steps_of(workflow_id)})
    context = RunContext(runtime, definition, workflow_id, history)  # type: ignore[arg-type]
    token = current_run.set(context)
    try:
        args, kwargs = decode_inputs(inputs)
        definition.fn(*args, **kwargs)
    except _EndOfHistory:
        return None
    except _NeedsEngine as needs:
        return workflow_id, context.step, str(needs)
    except DeterminismError as error:
        return Divergence(workflow_id, name, error.step, error.recorded, error.called,
                          error.patch, str(error))
    except Exception as error:  # a recorded failure raised again, or the code's own
        if not history:
            return None  # the run failed there too, or fails there for the first time now
        return _left(workflow_id, name, history, f"the code raised {type(error).__name__} "
                                                 f"({error})")
    finally:
        current_run.reset(token)
    if history:
        return _left(workflow_id, name, history, "the code returned")
    return None


def _left(workflow_id: str, name: str, history: _History, what: str) -> Divergence:
    first = min(history)
    recorded = history[first]
    return Divergence(workflow_id, name, first, recorded.name, None, None,
                      f"{what} before step {first}, recorded as {recorded.name!r} "
                      f"({recorded.kind.value})")
