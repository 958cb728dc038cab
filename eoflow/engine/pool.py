"""A bounded pool of worker threads, with lanes.

Tasks of one lane (say, one Kafka partition) run one at a time in submission order; tasks without
a lane run concurrently. A worker that picks a lane runs a few of its tasks in a row, then puts
the lane back at the end of the queue so that no lane starves the others.

A task may *hold* its lane (`hold_current_lane`) and end without finishing its work: a workflow
that suspends itself in a long sleep. The lane's later tasks then wait, without a thread, until
the work comes back with `release`, at the head of the lane: order survives the suspension.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

log = logging.getLogger("eoflow.engine")
Task = Callable[[], None]
LANE_TURN = 32  # tasks of a lane run in a row before other work gets a turn


class _Lane:
    __slots__ = ("name", "tasks", "scheduled", "held")

    def __init__(self, name: str) -> None:
        self.name = name
        self.tasks: deque[Task] = deque()
        self.scheduled = False  # in the pool's queue, or being run by a worker
        self.held = False  # a suspended task owns the lane: run nothing until it comes back


class WorkerPool:
    def __init__(self, workers: int, name: str = "eoflow-worker") -> None:
        self._size = workers
        self._name = name
        self._cv = threading.Condition()
        self._queue: deque[Task | _Lane] = deque()
        self._lanes: dict[str, _Lane] = {}
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._waking = 0  # idle workers notified that have not woken yet
        self._busy = 0
        self._stopping = False
        self._running = threading.local()  # .lane: the lane of the task this worker runs

    def submit(self, task: Task, lane: str | None = None) -> None:
        with self._cv:
            if self._stopping:
                return
            if lane is None:
                self._queue.append(task)
                self._wake_worker()
            else:
                entry = self._lane(lane)
                entry.tasks.append(task)
                self._schedule(entry)

    def hold_current_lane(self) -> str | None:
        """Called by a running task: keep its lane for it after it returns (its later tasks
        wait) until `release`. Returns the lane's name, or None outside a lane task."""
        lane: _Lane | None = getattr(self._running, "lane", None)
        if lane is None:
            return None
        with self._cv:
            lane.held = True
        return lane.name

    def release(self, lane: str, task: Task) -> None:
        """Give a held lane back, with `task` (the held work) to run first."""
        with self._cv:
            if self._stopping:
                return
            entry = self._lane(lane)
            entry.held = False
            entry.tasks.appendleft(task)
            self._schedule(entry)

    def _lane(self, name: str) -> _Lane:
        entry = self._lanes.get(name)
        if entry is None:
            entry = self._lanes[name] = _Lane(name)
        return entry

    def _schedule(self, lane: _Lane) -> None:
        if lane.scheduled or lane.held or not lane.tasks:
            return
        lane.scheduled = True
        self._queue.append(lane)
        self._wake_worker()

    def _wake_worker(self) -> None:
        # An idle worker that was notified counts as taken until it wakes: a second task
        # submitted before then gets a worker of its own.
        if self._idle > self._waking:
            self._waking += 1
            self._cv.notify()
        elif len(self._threads) < self._size:
            thread = threading.Thread(
                target=self._work, name=f"{self._name}-{len(self._threads) + 1}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def shutdown(self, grace: float) -> bool:
        """Drop queued tasks, wait up to `grace` seconds for running ones; True if all ended."""
        with self._cv:
            self._stopping = True
            self._queue.clear()
            for lane in self._lanes.values():
                lane.tasks.clear()
            self._cv.notify_all()
            return self._cv.wait_for(lambda: self._busy == 0, timeout=grace)

    def _take(self) -> Task | _Lane | None:
        with self._cv:
            while not self._queue and not self._stopping:
                self._idle += 1
                self._cv.wait()
                self._idle -= 1
                self._waking = max(0, self._waking - 1)
            if self._stopping:
                return None
            self._busy += 1
            return self._queue.popleft()

    def _work(self) -> None:
        while True:
            entry = self._take()
            if entry is None:
                return
            try:
                if isinstance(entry, _Lane):
                    self._run_lane(entry)
                else:
                    self._run(entry)
            finally:
                with self._cv:
                    self._busy -= 1
                    if self._busy == 0:
                        self._cv.notify_all()

    def _run_lane(self, lane: _Lane) -> None:
        for _ in range(LANE_TURN):
            with self._cv:
                if not lane.tasks or lane.held or self._stopping:
                    self._leave(lane)
                    return
                task = lane.tasks.popleft()
            self._running.lane = lane
            try:
                self._run(task)
            finally:
                self._running.lane = None
        with self._cv:
            if lane.tasks and not lane.held and not self._stopping:
                self._queue.append(lane)  # still scheduled: back of the line
                self._cv.notify()
            else:
                self._leave(lane)

    def _leave(self, lane: _Lane) -> None:
        """A worker stops running `lane` (under the lock): forget it unless it has work."""
        lane.scheduled = False
        if not lane.held and not lane.tasks:
            self._lanes.pop(lane.name, None)

    @staticmethod
    def _run(task: Task) -> None:
        try:
            task()
        except BaseException:  # a task reports its own failures; this is a last resort
            log.exception("eoflow worker: unexpected error in a task")
