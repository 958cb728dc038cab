"""Group commit: many writers share one database transaction and one fsync.

One writer thread owns the write connection. Callers submit *ops*; the writer takes every op
queued since its last commit, runs them all inside one write transaction, commits once,
and then releases the callers that asked to wait. While one batch is being committed (the fsync,
during which the GIL is free), the next batch accumulates: N concurrent writers pay about one
fsync between them, and a lone writer pays one fsync plus a thread hand-off (~10 µs).

Every op runs on the writer thread, user code too (a @transaction body, a Kafka handler): that
runs in its caller's context (`turn`), so it sees the caller's context variables (the run,
`eoflow.db()`, the current span). It once ran in the caller's own thread, the writer handing it
the open transaction and waiting: two more thread hand-offs per transaction, which cost the
Kafka workflow path 11-16% of its rate. Either way nothing is acknowledged before it is
durable, and an op with `savepoint=True` that raises rolls back alone.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, Literal, TypeVar, overload

from eoflow.errors import ContextError, EngineClosedError, ExecutorFencedError, JournalError
from eoflow.journal.backend import Backend, Conn, Fence
from eoflow.journal.savepoint import in_savepoint
from eoflow.latch import Latch

T = TypeVar("T")
Durable = Callable[[BaseException | None], None]
log = logging.getLogger(__name__)
_UNSET: Any = object()  # an op's result until it has one: typed Any to stand for any T


class _Batch:
    __slots__ = ("done", "error", "callbacks", "waiting", "callers")

    def __init__(self) -> None:
        self.done = Latch()
        self.error: BaseException | None = None
        self.callbacks: list[Durable] = []
        self.waiting = False  # does anyone wait for this batch to be durable?
        self.callers: set[int] = set()  # the threads that wait for it


class _Op(Generic[T]):
    __slots__ = ("work", "savepoint", "shared", "result", "error")

    def __init__(self, work: Callable[[Conn], T], savepoint: bool, shared: bool) -> None:
        self.work = work
        self.savepoint = savepoint
        self.shared = shared  # may run beside other engines' shared writes (Backend.begin)
        self.result: T = _UNSET
        self.error: BaseException | None = None


class GroupCommitter:
    """Owns one write connection and its writer thread; see the module docstring."""

    def __init__(
        self,
        conn: Conn,
        path: str,
        backend: Backend,
        *,
        linger: float = 0.002,
        gather: float = 0.0005,
    ) -> None:
        self.conn = conn
        self.path = path
        self.backend = backend
        # What beginning a batch may raise: the driver's errors, or ours (a server away).
        self._failures: tuple[type[BaseException], ...] = (JournalError, *backend.errors)
        self._linger = linger  # how long a batch nobody waits for may wait for company
        self._gather = gather  # how long after a commit the next one may wait for its callers
        self._expected = 0  # callers the next batch waits for (see _expect)
        self._history: tuple[set[int], set[int], set[int]] = (set(), set(), set())
        # Did the next batch have a waiting caller when the last one was released? (_expect)
        self._back_to_back = False
        self._cv = threading.Condition()
        self._ops: list[_Op[Any]] = []
        self._batch = _Batch()
        self._closed = False
        # Run first in every batch, when set: raises ExecutorFencedError once this engine's
        # runs were taken over (executors.py); from then on every batch fails at once.
        self.fence: Fence | None = None
        self.on_fenced: Callable[[ExecutorFencedError], None] | None = None
        self.fenced: ExecutorFencedError | None = None
        # Told (writes in the batch, seconds its commit took) after each commit (metrics).
        self.observer: Callable[[int, float], None] | None = None
        self._thread = threading.Thread(target=self._run, name="eoflow-writer", daemon=True)
        self._thread.start()

    # -- callers ------------------------------------------------------------------------------

    @overload
    def write(self, work: Callable[[Conn], T], *, wait: Literal[True] = ...,
              savepoint: bool = ..., on_durable: Durable | None = ...,
              urgent: bool = ..., shared: bool = ...) -> T: ...

    @overload
    def write(self, work: Callable[[Conn], object], *, wait: Literal[False],
              savepoint: bool = ..., on_durable: Durable | None = ...,
              urgent: bool = ..., shared: bool = ...) -> None: ...

    @overload
    def write(self, work: Callable[[Conn], T], *, wait: bool,
              savepoint: bool = ..., on_durable: Durable | None = ...,
              urgent: bool = ..., shared: bool = ...) -> T | None: ...

    def write(self, work: Callable[[Conn], T], *, wait: bool = True,
              savepoint: bool = False, on_durable: Durable | None = None,
              urgent: bool = False, shared: bool = False) -> T | None:
        """Run our own SQL `work(connection)` in the next batch; with `wait`, return its result
        once the batch is durable (raising work's error, or the batch's). A write that does not
        wait may linger briefly for company, unless `urgent` (someone waits on its callback).
        `shared`: see Backend.begin; a batch is shared when all its writes are."""
        if wait and threading.current_thread() is self._thread:
            # User code in a batch (a @transaction body, a Kafka handler) asked for a journal
            # write and would wait for the batch it runs in: for ever.
            raise ContextError("this eoflow call writes to the journal and waits for it, which "
                               "a @transaction body or Kafka handler cannot do (it runs inside "
                               "the journal's transaction); call it from the workflow instead")
        op: _Op[T] = _Op(work, savepoint, shared)
        batch = self._submit(op, wait or urgent, on_durable)
        if not wait:
            return None
        return self._outcome(op, batch)

    def turn(self, work: Callable[[Conn], T], *, savepoint: bool = True,
             shared: bool = False) -> T:
        """Run user code `work(connection)` in the next batch, in the caller's context (its
        context variables), and return its result once the batch is durable."""
        context = contextvars.copy_context()
        return self.write(lambda conn: context.run(work, conn), savepoint=savepoint,
                          shared=shared)

    def read(self, query: Callable[[Conn], T]) -> T:
        """Run a query on the write connection (it sees the open batch); waits for that batch."""
        return self.write(query)

    def close(self) -> None:
        """Commit what is queued, then stop the writer thread."""
        with self._cv:
            if self._closed:
                return
            self._closed = True
            self._cv.notify_all()
        self._thread.join()

    def _submit(self, op: _Op[Any], wait: bool, on_durable: Durable | None) -> _Batch:
        with self._cv:
            if self._closed:
                raise EngineClosedError(self.path)
            self._ops.append(op)
            batch = self._batch
            if on_durable is not None:
                batch.callbacks.append(on_durable)
            expected = self._expected
            if wait:
                batch.waiting = True
                batch.callers.add(threading.get_ident())
                # Wake the writer only when it has something to decide: the callers it
                # expects are all in, or it expects none (it is idle or lingering). Each wake
                # is a thread switch, and the GIL's, on the way of the callers still to come.
                if len(batch.callers) >= expected:
                    self._cv.notify()
            elif len(self._ops) == 1 and not expected:
                self._cv.notify()
        return batch

    @staticmethod
    def _outcome(op: _Op[T], batch: _Batch) -> T:
        batch.done.wait()
        if op.error is not None:
            raise op.error
        if batch.error is not None:
            raise batch.error
        return op.result

    def _perform(self, op: _Op[Any]) -> None:
        """Run an op, keeping its result or its error (as a JournalError if the database's)."""
        try:
            op.result = self._execute(op)
        except self.backend.errors as error:
            op.error = self.backend.translate(self.path, error)
        except BaseException as error:
            op.error = error

    def _execute(self, op: _Op[T]) -> T:
        if not op.savepoint:
            return op.work(self.conn)
        return in_savepoint(self.conn, self.backend, "eoflow_op", lambda: op.work(self.conn))

    # -- the writer thread --------------------------------------------------------------------

    def _take(self) -> tuple[list[_Op[Any]], _Batch] | None:
        with self._cv:
            expected = self._expected
            back_to_back = self._back_to_back  # its callers came while the last was written
            if expected and not self._closed:
                # Callers of the last batches are about to write again (the next step of a
                # workflow): gathering them makes one fsync serve all, where committing at
                # once makes each wait for two. Nobody wakes the writer until the last of them
                # is in, or the time is up.
                deadline = time.monotonic() + self._gather
                while len(self._batch.callers) < expected and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cv.wait(left)
                if not self._batch.waiting:  # none came: from now on the first write wakes it
                    self._expected = expected = 0
            while not self._ops and not self._closed:
                self._cv.wait()
            if not self._ops:
                return None  # closed and drained
            if not expected and not self._batch.waiting and not self._closed:
                # Nobody waits on these (outcomes): give the next waiting writer a moment to
                # carry them in its commit rather than paying an fsync of their own.
                self._cv.wait_for(lambda: self._batch.waiting or self._closed, self._linger)
            ops, batch = self._ops, self._batch
            self._ops, self._batch = [], _Batch()
            self._expect(batch.callers, back_to_back)
            return ops, batch

    def _expect(self, callers: set[int], back_to_back: bool) -> None:
        """The callers the next batch waits for: those of this one, back after its commit, and,
        when this one's came while the last batch was being written, the callers of that one
        that wrote in one of the two batches before it too: a group that takes turns with this
        one (one group writing while the other runs its next step, as the four partitions of a
        Kafka consumer fell into after one of them was late). Without them each group would pay
        a commit of its own for good. Threads that write one after another with the writer idle
        in between (a pool's workers, taking turns at a light load) are not waited for."""
        last, before, earlier = self._history
        self._expected = len(callers | (last & (before | earlier)) if back_to_back else callers)
        self._history = (callers, last, before)

    def _run(self) -> None:
        while True:
            taken = self._take()
            if taken is None:
                return
            ops, batch = taken
            if self.fenced is not None:
                self._fail(batch, self.fenced, quiet=True)
                continue
            try:
                self.backend.begin(self.conn, self.fence, all(op.shared for op in ops))
            except ExecutorFencedError as error:
                self._fenced(error)
                self._fail(batch, error, quiet=True)
                continue
            except self._failures as error:  # e.g. the server is away
                self._rollback()
                self._fail(batch, self.backend.translate(self.path, error))
                continue
            lost: BaseException | None = None
            for op in ops:
                if lost is not None:  # the whole batch is rolled back: run nothing more
                    op.error = lost
                    continue
                self._perform(op)
                if op.error is not None and self.backend.aborted(self.conn):
                    lost = op.error  # e.g. a full disk, an I/O error, a lost connection
            if lost is None:
                try:
                    began = time.perf_counter()
                    self.backend.commit(self.conn)
                    self._observe(len(ops), time.perf_counter() - began)
                except JournalError as error:
                    lost = error
                    self._rollback()
                except self.backend.errors as error:
                    lost = self.backend.translate(self.path, error)
                    self._rollback()
            if isinstance(lost, ExecutorFencedError):
                self._fenced(lost)  # found by the first statement (PostgreSQL: see pg.py)
            if lost is not None:
                self._rollback()  # SQLite did already; PostgreSQL keeps a failed one open
                log.error("journal %s: a batch of %d writes was rolled back: %s",
                          self.path, len(ops), lost)
                batch.error = lost
            self._release(batch)

    def _observe(self, writes: int, seconds: float) -> None:
        if self.observer is not None:
            try:
                self.observer(writes, seconds)
            except Exception:  # a metric must never fail a commit that happened
                log.exception("journal %s: the commit observer failed", self.path)

    def mark_fenced(self, error: ExecutorFencedError) -> None:
        """This executor was found taken over outside a batch (its heartbeat): refuse every
        batch from now on."""
        if self.fenced is None:
            self._fenced(error)

    def _fenced(self, error: ExecutorFencedError) -> None:
        self.fenced = error
        log.error("%s", error)
        if self.on_fenced is not None:
            try:
                self.on_fenced(error)
            except Exception:
                log.exception("journal %s: the fencing callback failed", self.path)

    def _fail(self, batch: _Batch, error: BaseException, quiet: bool = False) -> None:
        if not quiet:
            log.error("journal %s: cannot begin a write transaction: %s", self.path, error)
        batch.error = error
        self._release(batch)

    def _rollback(self) -> None:
        try:
            if not self.conn.getautocommit():
                self.conn.execute("ROLLBACK")
        except self.backend.errors:
            pass

    def _release(self, batch: _Batch) -> None:
        with self._cv:  # read here, not when the writer is back in _take: a caller that came
            # after this release (the writer slow to get back) did not write back to back
            self._back_to_back = self._batch.waiting
        batch.done.set()
        for callback in batch.callbacks:
            try:
                callback(batch.error)
            except Exception:  # a callback must not stop the writer
                log.exception("journal %s: durability callback failed", self.path)
