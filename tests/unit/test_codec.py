"""Values and errors round-trip through the journal's JSON, and nothing else gets in."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import sys
import uuid
from decimal import Decimal
from typing import Any

import pytest

from eoflow.errors import DeterminismError, RecordedError, UndecodableValueError
from eoflow.journal import codec


@dataclasses.dataclass(frozen=True)
class Order:
    id: int
    items: tuple[str, ...]
    placed: dt.datetime


class Color(enum.Enum):
    RED = "red"


VALUES = [
    None, True, 0, -7, 2**70, 1.5, "text", "", [1, "a"], {"a": 1},
    b"\x00\xffbytes", bytearray(b"ab"), (1, (2, 3)), {1, 2}, frozenset({"x"}),
    dt.datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=dt.timezone.utc), dt.date(2026, 1, 2),
    dt.time(3, 4, 5), dt.timedelta(seconds=90.5), Decimal("1.10"), uuid.UUID(int=5),
    {1: "int key", (1, 2): "tuple key"}, {"$eoflow": "a user key"}, float("inf"),
    Order(1, ("a", "b"), dt.datetime(2026, 1, 1)), Color.RED, [{"nested": (b"x",)}],
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_round_trip(value: object) -> None:
    text = codec.encode(value)
    json.loads(text)  # standard JSON, readable from the sqlite3 shell
    back = codec.decode(text)
    if isinstance(value, bytearray):
        assert back == bytes(value)
    else:
        assert back == value
        assert type(back) is type(value)


def test_named_tuples_come_back_as_plain_tuples() -> None:
    from collections import namedtuple

    Point = namedtuple("Point", "x y")
    back = codec.decode(codec.encode(Point(1, 2)))
    assert back == (1, 2) and type(back) is tuple


def test_nan_round_trips() -> None:
    back = codec.decode(codec.encode(float("nan")))
    assert back != back


def test_plain_json_stays_plain() -> None:
    assert codec.encode({"a": [1, "b", None]}) == '{"a":[1,"b",null]}'


def test_unserializable_names_the_type() -> None:
    with pytest.raises(codec.Unserializable) as info:
        codec.encode({"ok": 1, "bad": object()})
    assert info.value.type_name == "object"


def test_dataclass_of_unloaded_module_is_not_imported() -> None:
    text = json.dumps({"$eoflow": "dataclass", "type": "os:system", "v": {}})
    with pytest.raises(UndecodableValueError, match="not loaded"):
        codec.decode(text.replace("os:system", "no_such_module_xyz:Thing"))
    with pytest.raises(UndecodableValueError):  # a loaded module, not a dataclass: not called
        codec.decode(text)


def test_builtin_error_round_trips_as_its_type() -> None:
    try:
        raise ValueError("bad value", 3)
    except ValueError as error:
        text = codec.encode_error(error)
    back = codec.decode_error(text)
    assert type(back) is ValueError and back.args == ("bad value", 3)
    assert "raise ValueError" in codec.error_traceback(text)


def test_eoflow_error_round_trips_with_fields() -> None:
    error = DeterminismError("wf-1", 3, "charge", "refund")
    back = codec.decode_error(codec.encode_error(error))
    assert isinstance(back, DeterminismError)
    assert (back.workflow_id, back.step, back.recorded, back.called) == ("wf-1", 3, "charge",
                                                                          "refund")
    assert str(back) == str(error)


def test_error_of_unknown_type_becomes_recorded_error() -> None:
    text = json.dumps({"type": "gone_module:GoneError", "message": "boom", "args": ["boom"]})
    back = codec.decode_error(text)
    assert isinstance(back, RecordedError)
    assert str(back) == "gone_module.GoneError: boom"


def test_error_with_unstorable_args_still_records_message() -> None:
    error = RuntimeError(object())
    back = codec.decode_error(codec.encode_error(error))
    assert isinstance(back, RecordedError) and "RuntimeError" in str(back)


def test_kafka_inputs_are_packed_and_decode_like_the_codec() -> None:
    from eoflow.engine.kafka.defs import KafkaMessage, encode_handler_inputs

    value = bytes(range(256)) * 4  # 1 KB, every byte value: stored as it is
    for message in (KafkaMessage("t.x-1", 2, 99, b"k", b'{"a": "\\u00e9"}',
                                 (("h", b"\x00"), ("n", None)), 5),  # type: ignore[arg-type]
                    KafkaMessage("t", 0, 0, None, None),
                    KafkaMessage("t", 1, 3, b"key", value, (("trace", b"abc"),), 7)):
        fast = encode_handler_inputs(message)
        assert isinstance(fast, bytes) and fast.startswith(codec.MAGIC)
        generic = codec.encode({"args": [message.topic, message.partition, message],
                                "kwargs": {}})
        assert codec.decode(fast) == codec.decode(generic)
        assert codec.decode(fast)["args"][2] == message
        assert codec.as_text(fast) == generic  # shown and exported as the codec writes it
        if message.value == value:
            assert value in fast and len(fast) < len(value) + 400  # raw, not base64


def _inputs_through_the_encoder(message: Any) -> bytes:
    """encode_handler_inputs as it was built before it wrote its JSON head as text."""
    from eoflow.engine.kafka.defs import _MESSAGE_TYPE

    blobs: list[bytes] = []

    def ref(value: bytes | None) -> Any:
        if value is None:
            return None
        return codec.blob_ref(blobs, value, sum(len(b) for b in blobs))

    fields = {"topic": message.topic, "partition": message.partition,
              "offset": message.offset, "key": ref(message.key), "value": ref(message.value),
              "headers": {codec.TAG: "tuple", "v": [{codec.TAG: "tuple", "v": [k, ref(v)]}
                                                    for k, v in message.headers]},
              "timestamp": message.timestamp}
    return codec.pack({"args": [message.topic, message.partition,
                                {codec.TAG: "dataclass", "type": _MESSAGE_TYPE, "v": fields}],
                       "kwargs": {}}, blobs)


def test_kafka_inputs_written_as_text_are_the_encoders_bytes_exactly() -> None:
    from eoflow.engine.kafka.defs import KafkaMessage, encode_handler_inputs

    for message in (KafkaMessage("t.x-1_2", 2, 99, b"k", b"v", (("h", b"\x00"),), 5),
                    KafkaMessage("t", 0, 0, None, None),
                    KafkaMessage("T", 7, 2**40, b"", b"", (), 0),
                    KafkaMessage("orders", 1, 3, None, b"{}",
                                 (('a "quoted" \\ name', b"x"), ("\u00e9t\u00e9\n", None),
                                  ("", b"")), -1)):  # type: ignore[arg-type]
        assert encode_handler_inputs(message) == _inputs_through_the_encoder(message), message


@pytest.mark.parametrize("damage", [
    lambda b: b[:-1],  # the raw part cut short
    lambda b: b[:6],  # the head's length cut
    lambda b: b"\x00eo2" + b[4:],  # an unknown format
    lambda b: b[:8] + b"]" + b[9:],  # a broken head
    lambda b: b.replace(b'"v":[1,3]', b'"v":[-1,3]'),  # a reference out of bounds
])
def test_a_damaged_packed_value_is_undecodable(damage: Any) -> None:
    from eoflow.engine.kafka.defs import KafkaMessage, encode_handler_inputs

    packed = encode_handler_inputs(KafkaMessage("t", 1, 3, b"k", b"val", (), 7))
    assert b'"v":[1,3]' in packed
    with pytest.raises(UndecodableValueError):
        codec.decode(damage(packed))
    with pytest.raises(UndecodableValueError):
        codec.as_text(damage(packed))


def test_runs_journaled_before_the_kafka_modules_moved_still_decode() -> None:
    # Runs recorded by an eoflow whose KafkaMessage lived in eoflow.engine.kafka_defs must
    # replay after an upgrade: the journaled type path is part of the journal's format. So
    # must runs whose inputs were JSON text (before they were packed).
    from eoflow.engine.kafka.defs import KafkaMessage

    message = KafkaMessage("t", 1, 7, b"k", b"v", (("h", b"x"),), 3)
    old = codec.encode({"args": ["t", 1, message], "kwargs": {}}).replace(
        "eoflow.engine.kafka.defs:", "eoflow.engine.kafka_defs:")
    assert "eoflow.engine.kafka_defs:KafkaMessage" in old
    assert codec.decode(old)["args"][2] == message


def test_decoding_never_calls_a_modules_lazy_getattr() -> None:
    import types

    calls: list[str] = []
    lazy = types.ModuleType("eoflow_test_lazy")
    lazy.__getattr__ = lambda name: calls.append(name)  # type: ignore[method-assign]
    sys.modules["eoflow_test_lazy"] = lazy
    try:
        text = json.dumps({"$eoflow": "dataclass", "type": "eoflow_test_lazy:Thing", "v": {}})
        with pytest.raises(UndecodableValueError):
            codec.decode(text)
        assert calls == []
    finally:
        del sys.modules["eoflow_test_lazy"]


@pytest.mark.parametrize("text", [
    '{"$eoflow": "bytes", "v": "!!!"}', '{"$eoflow": "bytes"}', '{"$eoflow": "dict", "v": 5}',
    '{"$eoflow": "decimal", "v": "abc"}', '{"$eoflow": "datetime", "v": 3}',
    '{"$eoflow": "timedelta", "v": 1e300}', '{"$eoflow": "enum", "v": 1}',
    '{"$eoflow": "datetime", "v": "2026-01-01T00:00:00", "tz": "No/Such_Zone"}',
    "[" * 100_000 + "]" * 100_000, "{not json",
])
def test_a_malformed_record_raises_one_error_type(text: str) -> None:
    with pytest.raises(UndecodableValueError):
        codec.decode(text)


@dataclasses.dataclass
class WithDerived:
    a: int
    b: int = dataclasses.field(init=False, default=0)


def test_values_that_could_not_be_rebuilt_are_refused_when_produced() -> None:
    @dataclasses.dataclass
    class Local:
        a: int

    class LocalColor(enum.Enum):
        RED = 1

    for value, why in ((WithDerived(1), "init=False"), (Local(1), "inside a function"),
                       (LocalColor.RED, "inside a function"), (10 ** 5000, "int"),
                       (_deep(5000), "nested")):
        with pytest.raises(codec.Unserializable, match=why):
            codec.encode(value)


def _deep(depth: int) -> list[object]:
    value: list[object] = []
    for _ in range(depth):
        value = [value]
    return value


def test_timedelta_and_zoneinfo_round_trip_exactly() -> None:
    import zoneinfo

    span = dt.timedelta(days=365 * 400, microseconds=7)
    assert codec.decode(codec.encode(span)) == span
    moment = dt.datetime(2026, 7, 1, 12, 0, tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))
    back = codec.decode(codec.encode(moment))
    assert back == moment and back.tzinfo == zoneinfo.ZoneInfo("Europe/Paris")
    assert codec.decode('{"$eoflow": "timedelta", "v": 1.5}') == dt.timedelta(seconds=1.5)


@pytest.mark.parametrize("text", ["nonsense", "{}", '{"type": 5, "message": null}', "[1]"])
def test_a_malformed_error_record_comes_back_as_a_recorded_error(text: str) -> None:
    error = codec.decode_error(text)
    assert isinstance(error, RecordedError)
