"""Kafka definitions: @kafka_consume, @kafka, KafkaMessage and the idempotency key.

Nothing here talks to Kafka (that is source.py); these only register what to consume.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal, TypeVar

from eoflow.engine.config import parse_brokers
from eoflow.engine.context import current_db
from eoflow.engine.registry import Definition, DictStore, Kind
from eoflow.errors import AbortedError, ConfigError, DefinitionError
from eoflow.journal import codec
from eoflow.journal.codec import TAG
from eoflow.journal.kafka_keys import message_key as message_key  # re-exported; read back by

# the journal's retention, so its home is the journal

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=type)
Ordering = bool | Literal["key"]

# Settings that would break exactly-once, or that eoflow owns, with the reason shown to users.
REFUSED = {
    "enable_auto_commit": "eoflow commits offsets itself, only after the journal has recorded "
                          "the messages; remove enable_auto_commit",
    "value_deserializer": "message.value is journaled as bytes; decode it in your handler",
    "key_deserializer": "message.key is journaled as bytes; decode it in your handler",
    "group_id": "pass the group as @kafka_consume(..., group_id=...)",
}
DEFAULT_CONSUMER_CONFIG: Mapping[str, Any] = MappingProxyType({
    "auto_offset_reset": "earliest",  # a new group reads the topic from its start: skip nothing
    "session_timeout_ms": 6000,  # fast group joins on small brokers; raise for real clusters
    "heartbeat_interval_ms": 1000,
    "max_poll_records": 500,
    # A broker that dies while a commit is in flight is reported (and retried) after 10 s,
    # not after kafka-python's default of 30 s of silence.
    "request_timeout_ms": 10000,
})


TOPIC_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def check_topic_name(topic: str) -> str:
    """`topic`, if Kafka allows it (1-249 of [a-zA-Z0-9._-], not "." or ".."); the idempotency
    key relies on topic names having no ':'."""
    bad = sorted(set(topic) - TOPIC_CHARACTERS)
    if not topic or len(topic) > 249 or bad or topic in (".", ".."):
        why = f"has {''.join(bad)!r}" if bad else "is empty, '.', '..' or over 249 characters"
        raise ConfigError("topic", f"{topic!r} is not a Kafka topic name: it {why}; use 1-249 "
                                   "letters, digits, '.', '_' or '-'")
    return topic


@dataclass(frozen=True)
class KafkaMessage:
    """One Kafka record as a handler receives it (and as the journal stores it)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp: int | None = None  # milliseconds since the epoch, as Kafka reports it


_MESSAGE_TYPE = f"{KafkaMessage.__module__}:{KafkaMessage.__qualname__}"
# Runs journaled before the Kafka modules moved into engine/kafka/ name the message type so.
codec.known_as("eoflow.engine.kafka_defs:KafkaMessage", KafkaMessage)


def encode_handler_inputs(message: KafkaMessage) -> bytes:
    """The journaled inputs `(topic, partition, message)` of a Kafka workflow run.

    Packed (codec.pack): the message's key, value and header values are stored as raw bytes
    beside a small JSON head, not as base64 inside JSON. The head is written as text here,
    not through the JSON encoder: this runs once per consumed message, and it was the largest
    part of the consumer's own work (4.2 µs a message, now about a third of that). Only the
    header names, which may hold any character, go through the encoder. codec.decode gives
    back exactly {"args": [...], "kwargs": {}}, as for any other run (a test keeps them
    identical)."""
    blobs: list[bytes] = []
    size = 0

    def ref(value: bytes | None) -> str:
        nonlocal size
        if value is None:
            return "null"
        blobs.append(value)
        start, size = size, size + len(value)
        return f'{{"{TAG}":"blob","v":[{start},{len(value)}]}}'

    topic = _json_text(message.topic)
    key, value = ref(message.key), ref(message.value)
    headers = ",".join(f'{{"{TAG}":"tuple","v":[{_json_text(k)},{ref(v)}]}}'
                       for k, v in message.headers)
    stamp = message.timestamp
    timestamp = stamp if type(stamp) is int else codec.ENCODER.encode(stamp)
    head = (f'{{"args":[{topic},{int(message.partition)},{{"{TAG}":"dataclass","type":'
            f'"{_MESSAGE_TYPE}","v":{{"topic":{topic},"partition":{int(message.partition)},'
            f'"offset":{int(message.offset)},"key":{key},"value":{value},"headers":'
            f'{{"{TAG}":"tuple","v":[{headers}]}},"timestamp":{timestamp}}}}}],"kwargs":{{}}}}')
    return codec.pack_text(head, blobs)


def _json_text(text: str) -> str:
    """`text` as a JSON string; topic names (letters, digits, '.', '_', '-') as they are."""
    return f'"{text}"' if text.isascii() and text.replace(".", "").replace("_", "").replace(
        "-", "").isalnum() else codec.ENCODER.encode(text)


@dataclass(frozen=True)
class ConsumerSpec:
    """What one @kafka_consume asks for. `brokers` comes from @kafka or bootstrap_servers."""

    definition: Definition
    topics: tuple[str, ...]
    group_id: str
    config: Mapping[str, Any] = field(default_factory=dict)
    ordered: Ordering = True  # True: per partition; "key": per message key; False: none
    max_attempts: int = 5
    retry_interval: float = 0.5
    brokers: tuple[str, ...] | None = None
    queue: str | None = None  # workflow runs go through this eoflow.Queue (bounds concurrency)

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def is_workflow(self) -> bool:
        return self.definition.kind is Kind.WORKFLOW


class _Consumers(DictStore[ConsumerSpec]):
    """The @kafka_consume handlers of the app, by handler name."""

    def add(self, spec: ConsumerSpec) -> None:
        with self.lock:
            for other in self.items.values():
                if other.name == spec.name or other.group_id != spec.group_id:
                    continue
                shared = set(other.topics) & set(spec.topics)
                if shared:
                    raise DefinitionError(spec.name, (
                        f"consumes {sorted(shared)} in group {spec.group_id!r} like "
                        f"{other.name!r}; one group may hand a topic to one handler only"))
            self.items[spec.name] = spec

    def set_brokers(self, definitions: list[Definition], brokers: tuple[str, ...]) -> None:
        with self.lock:
            for name, spec in self.items.items():
                if any(spec.definition is d for d in definitions) and spec.brokers is None:
                    self.items[name] = replace(spec, brokers=brokers)

    def all(self) -> list[ConsumerSpec]:
        return self.values()


CONSUMERS = _Consumers()


def kafka_consume(topics: str | list[str] | tuple[str, ...], group_id: str | None = None, *,
                  ordered: Ordering = True, max_attempts: int = 5, retry_interval: float = 0.5,
                  queue: str | None = None, **consumer_config: Any) -> Callable[[F], F]:
    """Consume `topics` into the decorated @workflow or @transaction, exactly once.

    The handler is called as `handler(topic, partition, message)`. `group_id` defaults to
    `eoflow-{function name}`. A partition's workflows run one at a time in offset order;
    `ordered="key"` only keeps the order of messages with the same key (keyless ones keep their
    partition's), and `ordered=False` lets them all run concurrently.
    A transaction that raises is retried `max_attempts` times, then its message is quarantined.
    `queue` names an eoflow.Queue through which the workflow runs go (their order is then the
    queue's). Other keyword arguments go to kafka-python's KafkaConsumer.
    """
    names = (topics,) if isinstance(topics, str) else tuple(topics)
    if not names or not all(isinstance(t, str) and t for t in names):
        raise DefinitionError("kafka_consume", f"topics must be non-empty strings, got {topics!r}")
    for topic in names:
        check_topic_name(topic)
    for key, reason in REFUSED.items():
        if key in consumer_config:
            if key == "enable_auto_commit" and not consumer_config[key]:
                continue  # asking for what eoflow does anyway
            raise DefinitionError("kafka_consume", f"{key}: {reason}")
    if not (ordered is True or ordered is False or ordered == "key"):
        raise DefinitionError("kafka_consume", f'ordered must be True, False or "key", got '
                                               f"{ordered!r}")
    if max_attempts < 1:
        raise DefinitionError("kafka_consume", f"max_attempts must be at least 1, got "
                                               f"{max_attempts}")
    config = dict(consumer_config)  # never keep (or mutate) the caller's dict
    config.pop("enable_auto_commit", None)
    brokers = None
    if "bootstrap_servers" in config:
        brokers = parse_brokers(config.pop("bootstrap_servers"), "bootstrap_servers")

    def decorate(fn: F) -> F:
        definition = getattr(fn, "__eoflow__", None)
        if not isinstance(definition, Definition) or definition.kind is Kind.STEP:
            raise DefinitionError(getattr(fn, "__qualname__", repr(fn)), (
                "@kafka_consume goes above @workflow() or @transaction(), on a function "
                "taking (topic, partition, message)"))
        if queue is not None and definition.kind is not Kind.WORKFLOW:
            raise DefinitionError(definition.name, "queue= applies to workflows only")
        if ordered is not True and definition.kind is not Kind.WORKFLOW:
            raise DefinitionError(definition.name, "ordered= applies to workflows only: the "
                                  "transaction path always applies a partition in offset order")
        spec = ConsumerSpec(definition, names, group_id or f"eoflow-{definition.name}",
                            MappingProxyType(config), ordered, max_attempts, retry_interval,
                            brokers, queue)
        CONSUMERS.add(spec)
        definition.consumers.append(spec)
        return fn

    return decorate


def kafka(brokers: str | list[str] | tuple[str, ...]) -> Callable[[C], C]:
    """Class decorator: the brokers of the @kafka_consume handlers defined in the class body.

    `--brokers` on the CLI and EOFLOW_KAFKA_BROKERS override it (the same app runs against dev
    and prod)."""
    addresses = parse_brokers(brokers)

    def decorate(cls: C) -> C:
        members = [getattr(v, "__func__", v) for v in vars(cls).values()]  # staticmethods too
        definitions = [
            m.__eoflow__ for m in members if isinstance(getattr(m, "__eoflow__", None), Definition)
        ]
        if not any(d.consumers for d in definitions):
            raise DefinitionError(cls.__qualname__, "@kafka found no @kafka_consume handler "
                                                    "in this class")
        CONSUMERS.set_brokers(definitions, addresses)
        return cls

    return decorate


def handler_work(spec: ConsumerSpec, message: KafkaMessage) -> Callable[[Any], object]:
    """The transaction handler applied to one message, inside the open SQLite transaction."""
    fn = spec.definition.fn

    def work(conn: Any) -> object:
        token = current_db.set(conn)
        try:
            return fn(message.topic, message.partition, message)
        except Exception:
            raise
        except BaseException as stop:  # SystemExit & co: a failure like any other (retried,
            raise AbortedError(spec.name, repr(stop)) from stop  # then quarantined)
        finally:
            current_db.reset(token)

    return work
