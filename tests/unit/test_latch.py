"""Latch: the one-shot event under every durable write and every run's wakeup."""

from __future__ import annotations

import threading
import time

from eoflow.latch import Latch


def test_wait_times_out_then_returns_true_once_set() -> None:
    latch = Latch()
    started = time.monotonic()
    assert latch.wait(0.05) is False and not latch.is_set()
    assert time.monotonic() - started >= 0.04
    latch.set()
    assert latch.wait(0) is True and latch.wait() is True and latch.is_set()


def test_one_set_wakes_every_waiter() -> None:
    latch, woken = Latch(), []
    waiters = [threading.Thread(target=lambda: woken.append(latch.wait(5))) for _ in range(8)]
    for thread in waiters:
        thread.start()
    latch.set()
    for thread in waiters:
        thread.join(5)
    assert woken == [True] * 8
