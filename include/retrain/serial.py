"""The one serialiser: typed records to the JSON that XCom and the registry carry, and back.

Writing walks a record's dataclass fields, and the properties it names in `JSON_PROPERTIES`. A field
marked `metadata={"json": False}` stays in memory; one marked `{"json_omit_none": True}` is left out
while it is None (for documents whose readers tell kinds apart by which keys are present).

Reading builds the record from its type hints, all the way down. Documents outlive the code that wrote
them, so reading is lenient where time makes it so: a key the record no longer has is ignored, and a field
added since takes its default. A field renamed since names its old name as `metadata={"was": ...}`, and
a document that has only the old name is read into it. A value of the wrong type, or a required field
that is missing, is an error naming the record and the field.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from enum import Enum
from functools import cache
from typing import Any, TypeVar

T = TypeVar("T")


class RecordError(ValueError):
    """A stored document that does not fit its record."""


def to_jsonable(value: object) -> Any:
    """A record (or anything made of records, enums, tuples and numbers) as plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        document = {
            f.name: to_jsonable(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.metadata.get("json", True)
            and not (f.metadata.get("json_omit_none") and getattr(value, f.name) is None)
        }
        for name in getattr(value, "JSON_PROPERTIES", ()):
            document[name] = to_jsonable(getattr(value, name))
        return document
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(item) for item in value]
    if hasattr(value, "item") and type(value).__module__ == "numpy":  # a numpy scalar
        return value.item()  # type: ignore[attr-defined]
    return value


def project(record: object, kind: type[T]) -> T:
    """A `kind` made of the fields it declares, taken from `record`: the part of a record that a smaller one
    holds (a pointer without its ETag, a drift check's summary), kept in step as fields are added."""
    return kind(**{spec.name: getattr(record, spec.name) for spec in dataclasses.fields(kind)})


def dumps(value: object) -> str:
    """Indented, key-sorted JSON: what the CLI prints and the registry stores."""
    return json.dumps(to_jsonable(value), indent=2, sort_keys=True, default=str)


def to_bytes(value: object) -> bytes:
    return dumps(value).encode() + b"\n"


def from_jsonable(kind: type[T], value: object) -> T:
    """Build a `kind` (a record, or a container of them) from parsed JSON."""
    return _load(kind, value, kind.__name__)


def loads(kind: type[T], data: bytes | str) -> T:
    return from_jsonable(kind, json.loads(data))


@cache
def _hints(record: type) -> dict[str, object]:
    return typing.get_type_hints(record)


def _load(hint: Any, value: object, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if value is None:
            return None
        if len(options) != 1:
            raise TypeError(f"{where}: a record field may only be optional, not a union of {options}")
        return _load(options[0], value, where)
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise RecordError(f"{where}: expected a list, got {value!r}")
        (item,) = [arg for arg in typing.get_args(hint) if arg is not Ellipsis] or [Any]
        items = [_load(item, element, f"{where}[{i}]") for i, element in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise RecordError(f"{where}: expected an object, got {value!r}")
        _, item = typing.get_args(hint)
        return {str(key): _load(item, element, f"{where}.{key}") for key, element in value.items()}
    if hint is Any or hint is object:
        return value
    if dataclasses.is_dataclass(hint):
        return _load_record(hint, value, where)
    if isinstance(hint, type) and issubclass(hint, Enum):
        try:
            return hint(value)
        except ValueError:
            raise RecordError(f"{where}: {value!r} is not one of {[m.value for m in hint]}") from None
    return _load_scalar(hint, value, where)


def _load_record(record: type, value: object, where: str) -> Any:
    if not isinstance(value, dict):
        raise RecordError(f"{where}: expected an object, got {value!r}")
    hints = _hints(record)
    values = {}
    for spec in dataclasses.fields(record):
        if not spec.init or not spec.metadata.get("json", True):
            continue
        name = spec.name if spec.name in value else spec.metadata.get("was", spec.name)
        if name in value:
            values[spec.name] = _load(hints[spec.name], value[name], f"{where}.{spec.name}")
        elif spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
            raise RecordError(f"{where}: missing field {spec.name}")
    return record(**values)


def _load_scalar(hint: Any, value: object, where: str) -> Any:
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint in (str, bool) and isinstance(value, hint):
        return value
    expected = getattr(hint, "__name__", str(hint))
    raise RecordError(f"{where}: expected {expected}, got {value!r}")
