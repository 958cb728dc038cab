"""Whether this process traces and measures: the gate in front of engine/otel.py.

OpenTelemetry is optional (the `eoflow[otel]` extra). This module finds out whether its API is
installed without importing it, so that without the extra nothing imports OpenTelemetry and
every caller, seeing None, skips its calls.
"""

from __future__ import annotations

import importlib.util
import os
from typing import TYPE_CHECKING

from eoflow.errors import ConfigError

if TYPE_CHECKING:
    from eoflow.engine.otel import Telemetry

OFF = ("off", "0", "false", "no")


def installed(module: str) -> bool:
    """Whether `module` can be imported, found without importing it (nor its package's code
    beyond its parents')."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent missing, or blocked (sys.modules[x] = None)
        return False


def load() -> Telemetry | None:
    """The process's Telemetry, or None: no OpenTelemetry API, or EOFLOW_OTEL=off."""
    if os.environ.get("EOFLOW_OTEL", "").strip().lower() in OFF:
        return None
    if not installed("opentelemetry.trace"):
        return None
    from eoflow.engine import otel

    return otel.telemetry()


def serve_metrics(port: int, host: str = "0.0.0.0") -> str:
    """Serve this process's metrics in Prometheus' text format on `port` (eoflow run
    --metrics-port); returns the URL. Needs the `eoflow[prometheus]` extra."""
    missing = [name for name in ("opentelemetry.sdk", "opentelemetry.exporter.prometheus",
                                 "prometheus_client") if not installed(name)]
    if missing:
        raise ConfigError("--metrics-port", f"{', '.join(missing)} not installed; run: "
                          "pip install 'eoflow[prometheus]'")
    if load() is None:
        raise ConfigError("--metrics-port", "EOFLOW_OTEL is off; unset it to serve metrics")
    from eoflow.engine import otel

    try:
        return otel.serve_prometheus(port, host)
    except OSError as error:
        raise ConfigError("--metrics-port", f"cannot listen on port {port}: {error.strerror}; "
                          "choose a free port") from None
