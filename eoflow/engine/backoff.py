"""Capped exponential backoff: the one formula for step retries and for loops that retry."""

from __future__ import annotations


def delay(first: float, factor: float, cap: float, attempt: int) -> float:
    """The wait after failed attempt number `attempt` (from 1): first * factor**(attempt-1),
    at most `cap` seconds."""
    return float(min(first * factor ** (attempt - 1), cap))


class Backoff:
    """Successive waits of a retrying loop: 0.5 s, 1 s, 2 s ... up to `cap`; `reset` after a
    success starts again from `first`."""

    def __init__(self, first: float = 0.5, cap: float = 30.0, factor: float = 2.0) -> None:
        self.first, self.cap, self.factor = first, cap, factor
        self._failures = 0

    def next(self) -> float:
        self._failures += 1
        return delay(self.first, self.factor, self.cap, self._failures)

    def reset(self) -> None:
        self._failures = 0
