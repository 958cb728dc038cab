"""How values and errors are stored in the journal: JSON text, readable from the sqlite3 shell.

JSON-native values (str, int, finite float, bool, None, lists, dicts with string keys) are stored
as themselves. Other supported values are stored as a tagged object `{"$eoflow": TAG, "v": ...}`:

    bytes/bytearray -> base64 text        tuple, set, frozenset -> list of items
    datetime, date, time -> ISO 8601      timedelta -> seconds (float)
    Decimal, UUID -> text                 float nan/inf -> text
    dict with non-string keys, or with a "$eoflow" key -> list of [key, value] pairs
    dataclass instance -> {"type": "module:QualName", "v": {field: value}}
    Enum member -> {"type": "module:QualName", "v": member value}

Decoding never imports or unpickles anything: a dataclass or enum is rebuilt only if its module
is already loaded in this process (it is, when the app that wrote it is running), and the type is
found in the module's own namespace, without calling a module's lazy `__getattr__`. Errors are
stored as their type name, message, traceback text and (when storable) their args and attributes,
and rebuilt the same way; an error whose type is not loaded comes back as `RecordedError`. A
malformed record raises `UndecodableValueError`, whatever is wrong with it.

A value carrying large bytes (a Kafka message's inputs: value, key and headers) is stored
packed instead, as a BLOB: a JSON head as above whose bytes are references into raw bytes
after it (`pack`), so no base64 and no escaping; `decode` reads both forms, and `as_text`
turns a packed value back into the tagged JSON text above (for display and export).

Values that could be stored but not rebuilt are refused when they are produced: a dataclass
with `init=False` fields, a dataclass or enum defined inside a function, an int over 4,300
digits (Python's own limit on converting ints to text). A timedelta keeps its microseconds; a
datetime with a `zoneinfo.ZoneInfo` zone comes back with that zone (by its key).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import enum
import json
import math
import sys
import traceback
import uuid
import zoneinfo
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from eoflow.errors import RecordedError, UndecodableValueError

TAG = "$eoflow"
ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
_PLAIN = (str, int, bool, type(None))


class Unserializable(Exception):
    """Raised by `encode` with the name of the first type it cannot store."""

    def __init__(self, type_name: str) -> None:
        super().__init__(type_name)
        self.type_name = type_name


def _type_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


# Types that moved to another module, by the path older journals recorded them under. A
# journaled type path is part of the journal's format: when a journaled type moves, its old
# path goes here (see `known_as`), or runs recorded before the move could not be replayed.
_MOVED: dict[str, type] = {}


def known_as(old_path: str, cls: type) -> None:
    """Decode values journaled as `old_path` ("module:QualName") as instances of `cls`."""
    _MOVED[old_path] = cls


def _loaded_type(path: str) -> Any:
    if path in _MOVED:
        return _MOVED[path]
    module_name, _, qualname = path.partition(":")
    obj: Any = sys.modules.get(module_name)
    for part in qualname.split("."):
        # The namespace itself, never getattr: a module's __getattr__ may import things.
        namespace = getattr(obj, "__dict__", None)
        if not isinstance(namespace, Mapping):
            return None
        obj = namespace.get(part)
    return obj


def to_jsonable(value: Any) -> Any:
    """Turn `value` into plain JSON data, tagging what JSON cannot express."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is float:
        return value if math.isfinite(value) else {TAG: "float", "v": repr(value)}
    if kind is list:
        return [to_jsonable(item) for item in value]
    if kind is dict:
        if all(type(key) is str for key in value) and TAG not in value:
            return {key: to_jsonable(item) for key, item in value.items()}
        return {TAG: "dict", "v": [[to_jsonable(k), to_jsonable(v)] for k, v in value.items()]}
    return _tagged(value)


def _rebuildable(cls: type) -> str:
    """The path a value of `cls` is stored under, if decoding can find `cls` again."""
    if "<locals>" in cls.__qualname__:
        raise Unserializable(f"{cls.__qualname__} (defined inside a function: it could not be "
                             "found again to rebuild it; define it at module level)")
    return _type_path(cls)


def _tagged(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return {TAG: "enum", "type": _rebuildable(type(value)), "v": to_jsonable(value.value)}
    if isinstance(value, (bool, int, str)):  # subclasses such as IntFlag members handled above
        return value
    if isinstance(value, (bytes, bytearray)):
        return {TAG: "bytes", "v": base64.b64encode(value).decode("ascii")}
    if isinstance(value, tuple):  # a namedtuple comes back as a plain tuple
        return {TAG: "tuple", "v": [to_jsonable(item) for item in value]}
    if isinstance(value, (set, frozenset)):
        tag = "set" if isinstance(value, set) else "frozenset"
        return {TAG: tag, "v": [to_jsonable(item) for item in value]}
    if isinstance(value, dt.datetime):
        if isinstance(value.tzinfo, zoneinfo.ZoneInfo):
            return {TAG: "datetime", "v": value.isoformat(), "tz": value.tzinfo.key}
        return {TAG: "datetime", "v": value.isoformat()}
    if isinstance(value, dt.date):
        return {TAG: "date", "v": value.isoformat()}
    if isinstance(value, dt.time):
        return {TAG: "time", "v": value.isoformat()}
    if isinstance(value, dt.timedelta):  # exactly: a float of seconds loses microseconds
        return {TAG: "timedelta", "v": [value.days, value.seconds, value.microseconds]}
    if isinstance(value, Decimal):
        return {TAG: "decimal", "v": str(value)}
    if isinstance(value, uuid.UUID):
        return {TAG: "uuid", "v": str(value)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        path = _rebuildable(type(value))
        if any(not f.init for f in dataclasses.fields(value)):
            raise Unserializable(f"{type(value).__qualname__} (a dataclass with init=False "
                                 "fields cannot be rebuilt from its fields)")
        fields = {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {TAG: "dataclass", "type": path, "v": fields}
    if isinstance(value, float):
        return to_jsonable(float(value))
    raise Unserializable(type(value).__qualname__)


def _from_tagged(obj: dict[str, Any],
                 blob: Callable[[int, int], bytes] | None = None) -> Any:
    tag = obj.get(TAG)
    if tag is None:
        return obj
    v: Any = obj["v"]
    if tag == "bytes":
        return base64.b64decode(v, validate=True)
    if tag == "blob" and blob is not None:
        start, size = v
        return blob(int(start), int(size))
    if tag == "tuple":
        return tuple(v)
    if tag == "set":
        return set(v)
    if tag == "frozenset":
        return frozenset(v)
    if tag == "dict":
        return {_hashable(k): item for k, item in v}
    if tag == "datetime":
        moment = dt.datetime.fromisoformat(v)
        zone = obj.get("tz")
        return moment.astimezone(zoneinfo.ZoneInfo(zone)) if zone else moment
    if tag == "date":
        return dt.date.fromisoformat(v)
    if tag == "time":
        return dt.time.fromisoformat(v)
    if tag == "timedelta":
        if isinstance(v, list):
            days, seconds, micros = v
            return dt.timedelta(days=days, seconds=seconds, microseconds=micros)
        return dt.timedelta(seconds=v)  # journals written before the exact form
    if tag == "decimal":
        return Decimal(v)
    if tag == "uuid":
        return uuid.UUID(v)
    if tag == "float":
        return float(v)
    if tag in ("dataclass", "enum"):
        cls = _loaded_type(obj["type"])
        if tag == "enum" and isinstance(cls, type) and issubclass(cls, enum.Enum):
            return cls(v)
        if tag == "dataclass" and dataclasses.is_dataclass(cls) and isinstance(cls, type):
            return cls(**v)
        raise ValueError(
            f"the journal holds a {tag} of type {obj['type']!r}, which is not loaded in this "
            "process; import its module before reading this value"
        )
    return obj


_DECODER = json.JSONDecoder(object_hook=_from_tagged)


def _hashable(key: Any) -> Any:
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key


def encode(value: Any) -> str:
    """JSON text for `value`; raises `Unserializable` naming the first type it cannot store."""
    try:
        if type(value) in _PLAIN:
            return ENCODER.encode(value)
        return ENCODER.encode(to_jsonable(value))
    except ValueError as error:  # an int past the int-to-text limit (4,300 digits)
        raise Unserializable(f"int ({error})") from None
    except RecursionError:
        raise Unserializable("a value nested too deeply") from None


# What a malformed record makes decoding raise, all turned into UndecodableValueError.
_MALFORMED = (ValueError, KeyError, TypeError, AttributeError, OverflowError, IndexError,
              InvalidOperation, RecursionError, binascii.Error, zoneinfo.ZoneInfoNotFoundError)


def decode(text: str | bytes | None) -> Any:
    """The value stored by `encode` or `pack` (None for a NULL column); a malformed record
    raises UndecodableValueError."""
    if text is None:
        return None
    if isinstance(text, bytes) and text[:1] != MAGIC[:1]:  # JSON text never starts with NUL
        text = _text_of(text)
    try:
        if isinstance(text, bytes):
            head, area = _unpack(text)
            return json.JSONDecoder(object_hook=lambda obj: _from_tagged(
                obj, lambda start, size: bytes(_slice(area, start, size)))).decode(head)
        return _DECODER.decode(text)
    except _MALFORMED as error:
        raise UndecodableValueError(f"{type(error).__name__}: {describe(error)}") from None


# -- packed values: JSON with raw bytes beside it ---------------------------------------------
# A value holding large bytes (a Kafka message) is stored as a BLOB: MAGIC, the length of a
# JSON head (4 bytes, big-endian), the head, then the raw bytes. In the head, each bytes value
# is {"$eoflow": "blob", "v": [start, length]} into the raw part: no base64 (a third larger),
# no escaping. Text values never start with MAGIC's NUL, so the column's type tells them apart.
MAGIC = b"\x00eo1"


def pack(head: Any, blobs: list[bytes]) -> bytes:
    """A packed value: `head` (JSON-ready, with blob references made by `blob_ref`)."""
    return pack_text(ENCODER.encode(head), blobs)


def pack_text(head: str, blobs: list[bytes]) -> bytes:
    """A packed value whose head is JSON text already."""
    text = head.encode()
    return b"".join((MAGIC, len(text).to_bytes(4, "big"), text, *blobs))


def blob_ref(blobs: list[bytes], value: bytes, start: int) -> dict[str, Any]:
    """Add `value` to `blobs` (whose bytes so far end at `start`); return its reference."""
    blobs.append(value)
    return {TAG: "blob", "v": [start, len(value)]}


def _text_of(stored: bytes) -> str:
    """JSON text kept as bytes (PostgreSQL's inputs column is bytea, for packed values)."""
    try:
        return stored.decode()
    except UnicodeDecodeError as error:
        raise UndecodableValueError(f"UnicodeDecodeError: {error}") from None


def _unpack(stored: bytes) -> tuple[str, memoryview]:
    if stored[:4] != MAGIC:
        raise ValueError("a BLOB that is not a packed eoflow value")
    size = int.from_bytes(stored[4:8], "big")
    return stored[8:8 + size].decode(), memoryview(stored)[8 + size:]


def _slice(area: memoryview, start: int, size: int) -> memoryview:
    if not (isinstance(start, int) and isinstance(size, int)) or start < 0 or size < 0 or \
            start + size > len(area):
        raise ValueError(f"a blob reference [{start}, {size}] outside the packed value")
    return area[start:start + size]


def as_text(stored: str | bytes | None) -> str | None:
    """The stored value as tagged JSON text, whatever its form (for display and export: a
    packed value's bytes become base64, as `encode` writes them)."""
    if isinstance(stored, bytes) and stored[:1] != MAGIC[:1]:
        return _text_of(stored)
    if not isinstance(stored, bytes):
        return stored
    try:
        head, area = _unpack(stored)

        def as_base64(obj: dict[str, Any]) -> Any:
            if obj.get(TAG) != "blob":
                return obj
            start, size = obj["v"]
            return {TAG: "bytes", "v": base64.b64encode(_slice(area, start, size)).decode()}

        return ENCODER.encode(json.JSONDecoder(object_hook=as_base64).decode(head))
    except _MALFORMED as error:
        raise UndecodableValueError(f"{type(error).__name__}: {describe(error)}") from None


def describe(error: BaseException | None) -> str:
    """str(error), else repr(error), else a marker: an error's own __str__ may raise."""
    for show in (str, repr):
        try:
            return show(error)
        except Exception:
            continue
    return f"<unprintable {type(error).__qualname__}>"


def encode_error(error: BaseException) -> str:
    """JSON text describing `error`: type, message, traceback, and rebuildable state. Never
    raises: what cannot be described is marked, so that the run's outcome is recorded."""
    cls = type(error)
    try:
        trace = "".join(traceback.format_exception(error))
    except Exception:
        trace = f"<the traceback of {cls.__qualname__} could not be formatted>"
    record: dict[str, Any] = {
        "type": _type_path(cls),
        "message": describe(error),
        "traceback": trace,
    }
    try:
        record["args"] = to_jsonable(list(error.args))
        attrs = {k: v for k, v in vars(error).items() if not k.startswith("_")}
        record["attrs"] = to_jsonable(attrs)
    except Exception:  # not storable as data: the type and message still are
        record.pop("args", None)
        record.pop("attrs", None)
    return json.dumps(record, separators=(",", ":"), allow_nan=False)


def error_summary(text: str) -> tuple[str, str]:
    """(type name, message) of a stored error, without rebuilding it."""
    data = json.loads(text)
    return data["type"].replace(":", "."), data["message"]


def decode_error(text: str) -> BaseException:
    """Rebuild a stored error as its own type when loaded here, else as `RecordedError`."""
    try:
        data = json.loads(text)
        type_name, message = str(data["type"]).replace(":", "."), str(data["message"])
        cls = _loaded_type(str(data["type"]))
    except _MALFORMED:
        return RecordedError("?", f"<an unreadable error record: {text[:200]!r}>")
    if isinstance(cls, type) and issubclass(cls, BaseException) and "args" in data:
        try:
            error = cls.__new__(cls)
            error.args = tuple(_decode_plain(data["args"]))
            for key, value in _decode_plain(data.get("attrs", {})).items():
                setattr(error, key, value)
            return error
        except Exception:  # a type with an unusual constructor: fall back to the record
            pass
    return RecordedError(type_name, message)


def _decode_plain(value: Any) -> Any:
    return json.loads(json.dumps(value), object_hook=_from_tagged)


def error_traceback(text: str) -> str:
    """The traceback text recorded with an error."""
    return str(json.loads(text).get("traceback", ""))
