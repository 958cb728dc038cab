"""The one module that imports kafka-python: a consumer reduced to what the loop needs.

Everything kafka-python raises is turned into eoflow errors here, so the consumer loop
(consumer.py) never sees a kafka type.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from kafka.errors import (
    CommitFailedError,
    CorruptRecordError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
)
from kafka.structs import OffsetAndMetadata

from eoflow.engine.kafka.defs import KafkaMessage
from eoflow.engine.kafka.lag import note_lags
from eoflow.engine.kafka.wire import batch_holding, check_reachable
from eoflow.errors import (
    BrokerUnavailableError,
    ConfigError,
    KafkaConsumeError,
    OffsetCommitError,
    UndecodableRecordError,
)

Partition = tuple[str, int]
log = logging.getLogger("eoflow.kafka")
UNREACHABLE = (KafkaTimeoutError, KafkaConnectionError)  # what bootstrapping raises
CLIENT_DEFAULTS = {"bootstrap_timeout_ms": 5000, "reconnect_backoff_max_ms": 1000}


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, revoked: Callable[[list[Partition]], None],
                 assigned: Callable[[list[Partition]], None]) -> None:
        self._revoked = revoked
        self._assigned = assigned

    def on_partitions_revoked(self, revoked: Any) -> None:
        self._revoked([(tp.topic, tp.partition) for tp in revoked])

    def on_partitions_assigned(self, assigned: Any) -> None:
        self._assigned([(tp.topic, tp.partition) for tp in assigned])


class _KnownTopics:
    """The leader's cluster metadata, completed with topics it had to look up."""

    def __init__(self, cluster: Any, looked_up: dict[str, set[int] | None]) -> None:
        self._cluster, self._looked_up = cluster, looked_up

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        known = self._cluster.partitions_for_topic(topic)
        return known if known is not None else self._looked_up.get(topic)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cluster, name)


CONNECTION_KEYS = {"bootstrap_servers", "client_id", "security_protocol", "api_version",
                   "request_timeout_ms", "reconnect_backoff_ms", "reconnect_backoff_max_ms",
                   "client_dns_lookup", "socket_options", "proxy_url"}
LOOKUP_SECONDS = 3.0  # the leader sends no heartbeats meanwhile: stay well under the session


class RangeWithLookup(AbstractPartitionAssignor):  # type: ignore[misc]
    """Range assignment, except that the group leader first looks up the partitions of topics
    it has no metadata for: those that only *other* members subscribe to. kafka-python's leader
    otherwise assigns them to nobody and counts on a later rebalance, which some brokers (the
    embedded one) never complete, leaving an app that shares the group with no partitions.

    Every member must offer it; eoflow offers it first, then kafka-python's usual range and
    round-robin, so plain consumers in the same group can still agree on one of those. It runs
    on kafka-python's network thread, so it never raises and never blocks for long."""

    name = "eoflow-range"
    version = 0

    def __init__(self, client_args: Mapping[str, Any]) -> None:
        self._group = client_args.get("group_id")
        self._lookup_args = {  # only how to reach the brokers: no group, no subscription
            k: v for k, v in client_args.items()
            if k in CONNECTION_KEYS or k.startswith(("ssl_", "sasl_"))}
        self._lookup_args.update(bootstrap_timeout_ms=2000, enable_auto_commit=False,
                                 allow_auto_create_topics=False)

    def assign(self, cluster: Any, members: Any) -> Any:
        try:
            topics = {topic for member in members for topic in member.metadata.topics}
            missing = sorted(t for t in topics if cluster.partitions_for_topic(t) is None)
            if missing:
                cluster = _KnownTopics(cluster, self._look_up(missing))
        except Exception:  # never fail the group's join: fall back to what the leader knows
            log.exception("kafka group %s: assignment lookup failed", self._group)
        return RangePartitionAssignor.assign(cluster, members)

    def _look_up(self, topics: list[str]) -> dict[str, set[int] | None]:
        found: dict[str, set[int] | None] = {}
        failed: list[BaseException] = []

        def look_up() -> None:
            try:
                lookup = KafkaConsumer(**self._lookup_args)
                try:
                    for topic in topics:
                        found[topic] = lookup.partitions_for_topic(topic)
                finally:
                    lookup.close()
            except Exception as error:
                failed.append(error)

        thread = threading.Thread(target=look_up, name="eoflow-kafka-lookup", daemon=True)
        thread.start()
        thread.join(LOOKUP_SECONDS)
        if thread.is_alive() or failed:
            why = failed[0] if failed else f"no answer within {LOOKUP_SECONDS:g}s"
            log.warning("kafka group %s: cannot look up topics %s of other members (%s); they "
                        "get no partitions until the group rebalances again", self._group,
                        ", ".join(topics), why)
            return {}
        return found

    def metadata(self, topics: Any) -> Any:
        return RangePartitionAssignor.metadata(topics)

    def on_assignment(self, assignment: Any, generation: Any = None) -> None:
        pass


def partition_offsets(brokers: tuple[str, ...], group_id: str, topics: Iterable[str]
                      ) -> dict[tuple[str, int], tuple[int, int | None]]:
    """(end offset, the group's committed offset or None) of each partition of `topics`, as
    the brokers say now; joins no group."""
    check_reachable(brokers)
    consumer = KafkaConsumer(bootstrap_servers=list(brokers), group_id=group_id,
                             enable_auto_commit=False, request_timeout_ms=10_000)
    try:
        parts = [TopicPartition(t, p) for t in sorted(set(topics))
                 for p in sorted(consumer.partitions_for_topic(t) or ())]
        ends = consumer.end_offsets(parts) if parts else {}
        return {(tp.topic, tp.partition): (int(ends[tp]), consumer.committed(tp))
                for tp in parts}
    finally:
        consumer.close()


def check_consumer_config(handler: str, config: Mapping[str, Any]) -> None:
    """Refuse, before anything connects, options kafka-python's consumer does not know: they
    are a mistake in the code, which no retry will fix."""
    unknown = sorted(set(config) - set(KafkaConsumer.DEFAULT_CONFIG))
    if unknown:
        raise ConfigError(f"@kafka_consume of {handler!r}", (
            f"unknown consumer option(s) {', '.join(unknown)}; the options are kafka-python's "
            "KafkaConsumer settings (e.g. session_timeout_ms, max_poll_records)"))


class KafkaSource:
    """A subscribed consumer with manual commits. Use from one thread only."""

    def __init__(self, brokers: tuple[str, ...], group_id: str, topics: tuple[str, ...],
                 config: Mapping[str, Any], on_revoked: Callable[[list[Partition]], None],
                 on_assigned: Callable[[list[Partition]], None]) -> None:
        self.brokers = ",".join(brokers)
        self._consumer: Any = None
        self._args = dict(CLIENT_DEFAULTS, **config)
        self._args.update(bootstrap_servers=list(brokers), group_id=group_id,
                          enable_auto_commit=False)
        self._args.setdefault("partition_assignment_strategy", [
            RangeWithLookup(self._args), RangePartitionAssignor, RoundRobinPartitionAssignor])
        self._topics = list(topics)
        self._listener = _Listener(on_revoked, on_assigned)
        self.lags: dict[Partition, int] = {}  # messages past the last one polled (highwater)
        self._next: dict[Any, int] = {}  # per TopicPartition, the offset after the last polled

    def connect(self) -> None:
        check_reachable(tuple(self._args["bootstrap_servers"]))
        try:
            self._consumer = KafkaConsumer(**self._args)
            self._consumer.subscribe(self._topics, listener=self._listener)
        except UNREACHABLE as error:
            raise BrokerUnavailableError(self.brokers, str(error)) from None
        except (KafkaError, TypeError, ValueError, AssertionError) as error:
            raise KafkaConsumeError(self.brokers, f"cannot create the consumer: {error}") from None

    def poll(self, timeout_ms: int, max_records: int) -> list[KafkaMessage]:
        try:
            batches = self._consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        except CorruptRecordError as error:
            raise self._locate(str(error)) from None
        except KafkaError as error:
            raise KafkaConsumeError(self.brokers, f"poll failed: {error}") from None
        self._next, self.lags = note_lags(self._consumer, self._next, batches, self.lags)
        return [
            KafkaMessage(r.topic, r.partition, r.offset, r.key, r.value,
                         tuple((k, bytes(v) if v is not None else b"") for k, v in r.headers or ()),
                         r.timestamp)
            for records in batches.values() for r in records
        ]

    def commit(self, offsets: Mapping[Partition, int]) -> None:
        """Commit `offsets` (the next offset to read, per partition) synchronously."""
        if not offsets:
            return
        try:
            self._consumer.commit({
                TopicPartition(topic, partition): OffsetAndMetadata(offset, None, -1)
                for (topic, partition), offset in offsets.items()
            })
        except CommitFailedError:
            raise OffsetCommitError(self.brokers, "commit refused: the group is rebalancing"
                                    ) from None
        except KafkaTimeoutError:
            waited = self._args.get("request_timeout_ms", 30000)
            raise OffsetCommitError(self.brokers, f"commit failed: no answer within "
                                    f"request_timeout_ms={waited}") from None
        except (KafkaError, AssertionError) as error:
            raise OffsetCommitError(self.brokers, f"commit failed: {error}") from None

    def _locate(self, problem: str) -> KafkaConsumeError:
        """Which record could the client not decode? kafka-python does not say, and polls
        again only to spin (it never returns). Every record before the bad one was returned,
        so the bad one is at its partition's position: a probe consumer, outside the group,
        tries each assigned partition at its position."""
        args = {k: v for k, v in self._args.items()
                if k in CONNECTION_KEYS or k in ("check_crcs", "fetch_max_bytes")}
        probe = KafkaConsumer(**args, enable_auto_commit=False)
        try:
            for tp in sorted(self._consumer.assignment()):
                position = self._consumer.position(tp)
                probe.assign([tp])
                probe.seek(tp, position)
                try:
                    probe.poll(timeout_ms=2000, max_records=1)
                except CorruptRecordError:
                    return UndecodableRecordError(self.brokers, tp.topic, tp.partition,
                                                  position, problem,
                                                  _raw_batch(args, tp, position))
        except KafkaError as error:
            log.warning("kafka %s: could not locate an undecodable record: %s", self.brokers,
                        error)
        finally:
            probe.close()
        return KafkaConsumeError(self.brokers, f"poll failed: {problem}")

    def skip(self, topic: str, partition: int, offset: int) -> None:
        """Go on from `offset` (past a record that was quarantined)."""
        self._consumer.seek(TopicPartition(topic, partition), offset)

    def rewind(self, offsets: Mapping[Partition, int]) -> None:
        """Make the next poll start again at `offsets` (those still assigned to us)."""
        assigned = self.assignment()
        for (topic, partition), offset in offsets.items():
            if (topic, partition) in assigned:
                self._consumer.seek(TopicPartition(topic, partition), offset)

    def assignment(self) -> set[Partition]:
        return {(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def topic_id(self, topic: str) -> str | None:
        """The broker's id of `topic` (KIP-516), or None where the broker or client has none.
        kafka-python keeps it in its cluster metadata, which it refreshes on its own."""
        try:
            known = self._consumer._client.cluster.topic_id(topic)
        except Exception:  # an older client or broker: no ids to compare
            return None
        return str(known) if known else None

    def pause(self, paused: bool) -> None:
        partitions = self._consumer.assignment()
        if paused:
            self._consumer.pause(*partitions)
        else:
            self._consumer.resume(*partitions)

    def close(self) -> None:
        if self._consumer is not None:
            try:
                self._consumer.close(autocommit=False)  # leaves the group: a fast rebalance
            except Exception as error:  # closing must not fail a shutdown
                log.debug("kafka %s: error while closing the consumer: %s", self.brokers, error)
            self._consumer = None


def create_topic(brokers: tuple[str, ...], topic: str, partitions: int) -> bool:
    """Create `topic` unless it exists; True if created."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    check_reachable(brokers)
    try:
        admin = KafkaAdminClient(bootstrap_servers=list(brokers), request_timeout_ms=10000,
                                 **CLIENT_DEFAULTS)
    except UNREACHABLE as error:
        raise BrokerUnavailableError(",".join(brokers), str(error)) from None
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
        return True
    except TopicAlreadyExistsError:
        return False
    except KafkaError as error:
        raise KafkaConsumeError(",".join(brokers), f"cannot create topic {topic!r}: {error}"
                                ) from None
    finally:
        admin.close()


class Producer:
    """A fast producer for tools and demos (batched; flush() waits for every ack)."""

    def __init__(self, brokers: tuple[str, ...]) -> None:
        from kafka import KafkaProducer

        check_reachable(brokers)
        try:
            self._producer = KafkaProducer(bootstrap_servers=list(brokers), linger_ms=5,
                                           batch_size=262144, acks="all", **CLIENT_DEFAULTS)
        except UNREACHABLE as error:
            raise BrokerUnavailableError(",".join(brokers), str(error)) from None
        self.brokers = ",".join(brokers)

    def send(self, topic: str, value: bytes, key: bytes | None = None,
             partition: int | None = None,
             headers: list[tuple[str, bytes]] | None = None) -> None:
        self._producer.send(topic, value=value, key=key, partition=partition, headers=headers)

    def flush(self, timeout: float = 60.0) -> None:
        try:
            self._producer.flush(timeout=timeout)
        except KafkaError as error:
            raise KafkaConsumeError(self.brokers, f"messages not acknowledged: {error}") from None

    def close(self) -> None:
        self._producer.close()


def _raw_batch(args: dict[str, Any], tp: TopicPartition, offset: int) -> bytes | None:
    """The bytes of the record batch (Kafka's record format v2) that holds `offset`, as the
    broker sent them, for a record kafka-python cannot decode (it gives no bytes for one).

    A fresh probe sends one fetch and reads the response's raw records before the client
    parses them. That reaches into kafka-python 3's fetcher (`_fetcher`, `send_fetches`,
    `_completed_fetches`): if those change, this returns None and the record is quarantined
    without its bytes, as before, with a warning."""
    probe = KafkaConsumer(**args, enable_auto_commit=False)
    try:
        probe.assign([tp])
        probe.seek(tp, offset)
        fetcher = probe._fetcher
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            futures = fetcher.send_fetches()  # none until the partition's leader is known
            if futures:
                break
            time.sleep(0.05)
        while time.monotonic() < deadline and not fetcher._completed_fetches:
            time.sleep(0.02)
        for completed in list(fetcher._completed_fetches):
            if completed.topic_partition == tp:
                return batch_holding(bytes(completed.partition_data.records), offset)
        return None
    except Exception as error:  # best effort: the quarantine entry is written either way
        log.warning("kafka: could not fetch the raw bytes of %s/%d offset %d: %s", tp.topic,
                    tp.partition, offset, error)
        return None
    finally:
        probe.close()


def produce_values(brokers: tuple[str, ...], topic: str, values: Iterable[bytes],
                   partitions: int = 3, key: bytes | None = None) -> int:
    """Create `topic` if needed and send every value (with `key`, if given: then they all go
    to the key's partition); returns how many were acknowledged."""
    create_topic(brokers, topic, partitions)
    producer = Producer(brokers)
    sent = 0
    try:
        for value in values:
            producer.send(topic, value, key=key)
            sent += 1
        producer.flush()
    finally:
        producer.close()
    return sent
