"""What eoflow reads of Kafka without its client: whether a broker answers at all, and the
layout of a record batch (Kafka's record format v2). Plain sockets and bytes, so that
kafka-python stays in source.py alone."""

from __future__ import annotations

import socket

from eoflow.errors import BrokerUnavailableError


def check_reachable(brokers: tuple[str, ...], timeout: float = 2.0) -> None:
    """Fail fast, with the addresses, when no broker accepts a TCP connection (kafka-python
    would wait bootstrap_timeout_ms and leak the sockets of its failed attempts)."""
    errors = []
    for broker in brokers:
        host, _, port = broker.rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=timeout):
                return
        except OSError as error:
            errors.append(error.strerror or str(error))
    raise BrokerUnavailableError(",".join(brokers), "; ".join(sorted(set(errors))))


def batch_holding(records: bytes, offset: int) -> bytes | None:
    """The batch of `records` (concatenated v2 record batches) whose offsets include `offset`:
    each starts with its base offset (8 bytes) and length (4), and holds its last offset's
    delta at byte 23."""
    at = 0
    while at + 27 <= len(records):
        base = int.from_bytes(records[at:at + 8], "big", signed=True)
        size = int.from_bytes(records[at + 8:at + 12], "big", signed=True)
        last = base + int.from_bytes(records[at + 23:at + 27], "big", signed=True)
        if size <= 0:
            return None
        if base <= offset <= last:
            return records[at:at + 12 + size]
        at += 12 + size
    return None
