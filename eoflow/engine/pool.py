"""A bounded pool of worker threads, with lanes.

Tasks of one lane (say, one Kafka partition) run one at a time in submission order; tasks without
a lane run concurrently. A worker that picks a lane runs a few of its tasks in a row, then puts
the lane back at the end of the queue so that no lane starves the others.
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
    __slots__ = ("name", "tasks", "scheduled")

    def __init__(self, name: str) -> None:
        self.name = name
        self.tasks: deque[Task] = deque()
        self.scheduled = False


class WorkerPool:
    def __init__(self, workers: int, name: str = "eoflow-worker") -> None:
        self._size = workers
        self._name = name
        self._cv = threading.Condition()
        self._queue: deque[Task | _Lane] = deque()
        self._lanes: dict[str, _Lane] = {}
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._busy = 0
        self._stopping = False

    def submit(self, task: Task, lane: str | None = None) -> None:
        with self._cv:
            if self._stopping:
                return
            if lane is None:
                self._queue.append(task)
            else:
                entry = self._lanes.get(lane)
                if entry is None:
                    entry = self._lanes[lane] = _Lane(lane)
                entry.tasks.append(task)
                if entry.scheduled:
                    return
                entry.scheduled = True
                self._queue.append(entry)
            if self._idle:
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
                if not lane.tasks or self._stopping:
                    lane.scheduled = False
                    self._lanes.pop(lane.name, None)
                    return
                task = lane.tasks.popleft()
            self._run(task)
        with self._cv:
            if lane.tasks and not self._stopping:
                self._queue.append(lane)  # still scheduled: back of the line
                self._cv.notify()
            else:
                lane.scheduled = False
                self._lanes.pop(lane.name, None)

    @staticmethod
    def _run(task: Task) -> None:
        try:
            task()
        except BaseException:  # a task reports its own failures; this is a last resort
            log.exception("eoflow worker: unexpected error in a task")
