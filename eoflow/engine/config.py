"""Engine configuration: one frozen dataclass, validated when built.

Each setting comes from the explicit argument, else its EOFLOW_* environment variable, else the
default below. The caller's objects are never mutated.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from eoflow.errors import ConfigError

DEFAULT_JOURNAL = "eoflow.db"
DEFAULT_WORKERS = 64
DEFAULT_GRACE = 10.0
DEFAULT_BROKERS = ("localhost:9092",)
DEFAULT_LEASE = 10.0  # seconds; other executors take a silent one's runs over after this


def _pick(value: Any, env: Mapping[str, str], name: str, default: Any) -> Any:
    if value is not None:
        return value
    return env.get(name, default)


def _number(setting: str, raw: Any, kind: type, minimum: float) -> Any:
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        raise ConfigError(setting, f"expected a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise ConfigError(setting, f"must be a finite number, got {value}")
    if value < minimum:
        raise ConfigError(setting, f"must be at least {minimum}, got {value}")
    return value


def _app_version(raw: object) -> str | None:
    if raw is None or raw == "":
        return None
    text = str(raw)
    if len(text) > 100 or not text.isprintable():
        raise ConfigError("app_version", f"must be printable text of at most 100 characters, "
                                         f"got {text[:40]!r}")
    return text


def _lease(raw: str | float) -> float:
    seconds = parse_duration("lease", raw)
    if seconds < 0.3:  # a heartbeat every third of it: shorter would fence busy engines
        raise ConfigError("lease", f"must be at least 0.3s, got {raw!r}")
    return seconds


def parse_brokers(raw: str | list[str] | tuple[str, ...], setting: str = "brokers"
                  ) -> tuple[str, ...]:
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    brokers = tuple(item.strip() for item in items if item and item.strip())
    if not brokers:
        raise ConfigError(setting, "no broker address given; use HOST:PORT[,HOST:PORT...]")
    for broker in brokers:
        host, sep, port = broker.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ConfigError(setting, f"{broker!r} is not HOST:PORT")
    return brokers


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(setting: str, raw: str | float | int) -> float:
    """Seconds, from a number of seconds or a text like `90s`, `15m`, `12h`, `7d`, `2w`."""
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        value = float(raw)
    else:
        text = str(raw).strip().lower()
        unit = next((u for u in ("ms", "s", "m", "h", "d", "w") if text.endswith(u)), "")
        try:
            value = float(text[:len(text) - len(unit)]) * _UNITS.get(unit, 1.0)
        except ValueError:
            raise ConfigError(setting, f"expected a duration like 90s, 12h or 7d, got "
                                       f"{raw!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(setting, f"must be a positive duration, got {raw!r}")
    return value


@dataclass(frozen=True)
class EngineConfig:
    journal: str = field(default=DEFAULT_JOURNAL, repr=False)  # a URL may hold a password
    app_db: str | None = field(default=None, repr=False)
    workers: int = DEFAULT_WORKERS
    durability: str = "full"
    grace_period: float = DEFAULT_GRACE
    brokers: tuple[str, ...] | None = None  # None: what the app's @kafka says, else the default
    request_poll: float = 0.5
    lease: float = DEFAULT_LEASE  # seconds an executor's heartbeat holds its runs
    retention: float | None = None  # seconds finished runs are kept; None: keep everything
    app_version: str | None = None  # None: a hash of the app's code (versions.py)

    def __post_init__(self) -> None:
        if self.durability not in ("full", "normal"):
            raise ConfigError("durability", f"must be 'full' or 'normal', got {self.durability!r}")
        if not self.journal:
            raise ConfigError("journal", "must be a file path")

    @classmethod
    def resolve(
        cls,
        journal: str | os.PathLike[str] | None = None,
        app_db: str | os.PathLike[str] | None = None,
        workers: int | None = None,
        durability: str | None = None,
        grace_period: float | None = None,
        brokers: str | list[str] | tuple[str, ...] | None = None,
        retention: str | float | None = None,
        env: Mapping[str, str] | None = None,
        lease: str | float | None = None,
        app_version: str | None = None,
    ) -> EngineConfig:
        env = os.environ if env is None else env
        raw_app_db = _pick(app_db, env, "EOFLOW_APP_DB", None)
        raw_brokers = _pick(brokers, env, "EOFLOW_KAFKA_BROKERS", None)
        raw_retention = _pick(retention, env, "EOFLOW_RETENTION", None)
        return cls(
            journal=os.fspath(_pick(journal, env, "EOFLOW_JOURNAL", DEFAULT_JOURNAL)),
            app_db=os.fspath(raw_app_db) if raw_app_db else None,
            workers=_number("workers", _pick(workers, env, "EOFLOW_WORKERS", DEFAULT_WORKERS),
                            int, 1),
            durability=str(_pick(durability, env, "EOFLOW_DURABILITY", "full")).lower(),
            grace_period=_number(
                "grace_period", _pick(grace_period, env, "EOFLOW_GRACE_PERIOD", DEFAULT_GRACE),
                float, 0),
            brokers=parse_brokers(raw_brokers) if raw_brokers else None,
            retention=None if raw_retention in (None, "") else
            parse_duration("retention", raw_retention),
            lease=_lease(_pick(lease, env, "EOFLOW_LEASE", DEFAULT_LEASE)),
            app_version=_app_version(_pick(app_version, env, "EOFLOW_APP_VERSION", None)),
        )
