"""Helpers for testing eoflow apps against real crashes.

    from eoflow.testing import crash_env, run_app

    result = run_app([sys.executable, "app.py"], crash_at="after_step", nth=3)
    assert result.killed            # SIGKILL at the 3rd durable step record
    assert run_app([sys.executable, "app.py"]).returncode == 0   # recovery finishes the work

See eoflow.engine.crashpoints for the points a run passes through.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from eoflow.engine import registry
from eoflow.engine.crashpoints import POINTS


def crash_env(point: str, nth: int = 1, base: Mapping[str, str] | None = None
              ) -> dict[str, str]:
    """An environment that makes an eoflow process SIGKILL itself the `nth` time it reaches
    `point`."""
    if point not in POINTS:
        raise ValueError(f"unknown crash point {point!r}; one of {', '.join(POINTS)}")
    if nth < 1:
        raise ValueError("nth counts from 1")
    env = dict(os.environ if base is None else base)
    env["EOFLOW_CRASH_AT"] = f"{point}:{nth}"
    return env


@dataclass(frozen=True)
class AppResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def killed(self) -> bool:
        return self.returncode == -signal.SIGKILL


def run_app(args: Sequence[str], crash_at: str | None = None, nth: int = 1,
            env: Mapping[str, str] | None = None, timeout: float = 120,
            cwd: str | None = None) -> AppResult:
    """Run an app to its end, or until it kills itself at `crash_at`."""
    environ = dict(os.environ if env is None else env)
    environ.pop("EOFLOW_CRASH_AT", None)
    if crash_at is not None:
        environ = crash_env(crash_at, nth, environ)
    done = subprocess.run(list(args), env=environ, capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)
    return AppResult(done.returncode, done.stdout, done.stderr)


def isolated_definitions() -> contextlib.AbstractContextManager[None]:
    """A block whose workflows, steps, Kafka consumers, schedules and queues are forgotten when
    it ends: definitions are process-wide (like Flask's decorators), so a test that defines its
    own uses this to leave nothing behind for the next test."""
    return registry.isolated_definitions()
