"""Reading back the exact JSON encoding of result dataclasses (alignment reports, probe sweeps), for the score cache.

`probe.results.to_jsonable(value, exact=True)` writes a dataclass instance as plain JSON types; `from_json(data,
cls)` rebuilds an equal instance of `cls`. Decoding is driven by the declared field types of `cls` (its type
hints), never by names read from the file: the only names in the file are dataclass names, and each must equal
the declared class (or, for a Union field, one of the declared members). Nothing read can import a module or call
anything but the declared dataclasses' constructors, so a tampered file fails with `TypedJsonError` instead of
running code.

Exactness: floats are written with Python's shortest round-trip repr (NaN and infinities as tagged strings,
so the file is strict JSON); numpy arrays as their dtype, shape and raw little-endian bytes in base64, so
they come back bit-equal; numpy scalars as Python numbers of the same value. Supported field types: None,
bool, int, float, str, Enum, Literal, Optional/Union, list[T], tuple[T, ...], tuple[A, B, ...], dict[K, V]
with str or int keys, numpy.ndarray of bool/integer/float/complex dtype, nested dataclasses, and Any
(plain JSON values only).
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import math
import sys
import types
import typing
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import numpy as np

from probe.results import ARRAY_KINDS, DATACLASS_TAG, FLOAT_TAG, NDARRAY_TAG, TypedJsonError, class_name

T = TypeVar("T")

_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _fail(where: str, expected: Any, data: Any) -> TypedJsonError:
    shown = repr(data)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return TypedJsonError(f"{where or 'value'}: expected {expected}, found {shown}")


def _is_tagged(data: Any, tag: str) -> bool:
    return isinstance(data, dict) and set(data) >= {tag}


def _hints(cls: type) -> dict[str, Any]:
    """The resolved field types of dataclass `cls` (string annotations resolved in its module)."""
    module = sys.modules.get(cls.__module__)
    return typing.get_type_hints(cls, globalns=vars(module) if module else None)


def _decode_dataclass(data: Any, cls: type, where: str) -> Any:
    if not (isinstance(data, dict) and set(data) == {DATACLASS_TAG, "fields"} and isinstance(data["fields"], dict)):
        raise _fail(where, f"a stored {cls.__qualname__}", data)
    if data[DATACLASS_TAG] != class_name(cls):
        raise _fail(where, f"a stored {class_name(cls)}", data[DATACLASS_TAG])
    hints = _hints(cls)
    wanted = [f.name for f in dataclasses.fields(cls) if f.init]
    stored = data["fields"]
    if set(stored) != set(wanted):
        raise TypedJsonError(
            f"{where or cls.__qualname__}: fields {sorted(stored)} differ from {cls.__qualname__}'s {sorted(wanted)}"
        )
    kwargs = {name: _decode(stored[name], hints[name], f"{where}.{name}" if where else name) for name in wanted}
    try:
        return cls(**kwargs)
    except Exception as exc:  # a constructor's own checks refusing the values
        raise TypedJsonError(
            f"{where or cls.__qualname__}: {cls.__qualname__} refused the stored values ({exc})"
        ) from None


def _decode_array(data: Any, where: str) -> np.ndarray:
    spec = data.get(NDARRAY_TAG) if _is_tagged(data, NDARRAY_TAG) and len(data) == 1 else None
    if not (isinstance(spec, dict) and set(spec) == {"dtype", "shape", "data"}):
        raise _fail(where, "a stored array", data)
    try:
        dtype = np.dtype(str(spec["dtype"]))
        shape = tuple(int(n) for n in spec["shape"])
        raw = base64.b64decode(str(spec["data"]).encode("ascii"), validate=True)
    except Exception as exc:
        raise TypedJsonError(f"{where}: unreadable array ({exc})") from None
    if dtype.kind not in ARRAY_KINDS or any(n < 0 for n in shape) or len(raw) != dtype.itemsize * math.prod(shape):
        raise TypedJsonError(f"{where}: array of dtype {dtype}, shape {shape} does not match its {len(raw)} bytes")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def _decode_float(data: Any, where: str) -> float:
    if isinstance(data, bool):
        raise _fail(where, "a number", data)
    if isinstance(data, (int, float)):
        return float(data)
    if _is_tagged(data, FLOAT_TAG) and len(data) == 1 and data[FLOAT_TAG] in _NON_FINITE:
        return _NON_FINITE[data[FLOAT_TAG]]
    raise _fail(where, "a number", data)


def _decode_union(data: Any, members: tuple[Any, ...], where: str) -> Any:
    if data is None and type(None) in members:
        return None
    options = [m for m in members if m is not type(None)]
    if _is_tagged(data, DATACLASS_TAG):
        for member in options:
            if (
                isinstance(member, type)
                and dataclasses.is_dataclass(member)
                and data[DATACLASS_TAG] == class_name(member)
            ):
                return _decode_dataclass(data, member, where)
        raise _fail(where, " or ".join(map(str, options)), data.get(DATACLASS_TAG))
    errors = []
    for member in options:
        try:
            return _decode(data, member, where)
        except TypedJsonError as exc:
            errors.append(str(exc))
    raise TypedJsonError("; ".join(errors) or f"{where}: nothing matches")


def _decode_plain(data: Any, where: str) -> Any:
    """An `Any` field: plain JSON values only (tagged floats allowed), lists stay lists."""
    if data is None or isinstance(data, (bool, int, str)):
        return data
    if isinstance(data, float):
        return data
    if isinstance(data, list):
        return [_decode_plain(v, f"{where}[{i}]") for i, v in enumerate(data)]
    if isinstance(data, dict):
        if _is_tagged(data, FLOAT_TAG):
            return _decode_float(data, where)
        if _is_tagged(data, NDARRAY_TAG):
            return _decode_array(data, where)
        if _is_tagged(data, DATACLASS_TAG):
            raise _fail(where, "a plain value (a field typed Any cannot hold a dataclass)", data[DATACLASS_TAG])
        return {k: _decode_plain(v, f"{where}.{k}") for k, v in data.items()}
    raise _fail(where, "a JSON value", data)


def _decode(data: Any, expected: Any, where: str) -> Any:
    if expected is Any or expected is object:
        return _decode_plain(data, where)
    if expected is None or expected is type(None):
        if data is not None:
            raise _fail(where, "null", data)
        return None
    origin = get_origin(expected)
    if origin is Union or (hasattr(types, "UnionType") and isinstance(expected, types.UnionType)):
        return _decode_union(data, get_args(expected), where)
    if origin is Literal:
        if not any(type(data) is type(choice) and data == choice for choice in get_args(expected)):
            raise _fail(where, f"one of {get_args(expected)}", data)
        return data
    if origin in (list, typing.List):
        if not isinstance(data, list):
            raise _fail(where, "a list", data)
        (item,) = get_args(expected) or (Any,)
        return [_decode(v, item, f"{where}[{i}]") for i, v in enumerate(data)]
    if origin in (tuple, typing.Tuple):
        if not isinstance(data, list):
            raise _fail(where, "a list (tuple)", data)
        args = get_args(expected)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(v, args[0], f"{where}[{i}]") for i, v in enumerate(data))
        if args and len(args) != len(data):
            raise _fail(where, f"{len(args)} items", data)
        return tuple(_decode(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(data, args or [Any] * len(data))))
    if origin in (dict, typing.Dict):
        if (
            not isinstance(data, dict)
            or _is_tagged(data, DATACLASS_TAG)
            or _is_tagged(data, NDARRAY_TAG)
            or _is_tagged(data, FLOAT_TAG)
        ):
            raise _fail(where, "a mapping", data)
        key_type, value_type = get_args(expected) or (str, Any)
        out = {}
        for key, value in data.items():
            out[_decode_key(key, key_type, where)] = _decode(value, value_type, f"{where}[{key!r}]")
        return out
    if not isinstance(expected, type):
        raise TypedJsonError(f"{where}: the declared type {expected!r} is not supported")
    if dataclasses.is_dataclass(expected):
        return _decode_dataclass(data, expected, where)
    if issubclass(expected, np.ndarray):
        return _decode_array(data, where)
    if issubclass(expected, enum.Enum):
        try:
            return expected(data)
        except (ValueError, TypeError):
            raise _fail(where, f"a {expected.__name__} value", data) from None
    if expected is bool:
        if not isinstance(data, bool):
            raise _fail(where, "true or false", data)
        return data
    if expected is int:
        if isinstance(data, bool) or not isinstance(data, int):
            raise _fail(where, "an integer", data)
        return data
    if expected is float:
        return _decode_float(data, where)
    if expected is str:
        if not isinstance(data, str):
            raise _fail(where, "a string", data)
        return data
    raise TypedJsonError(f"{where}: the declared type {expected.__name__} is not supported")


def _decode_key(key: str, key_type: Any, where: str) -> Any:
    if key_type in (str, Any):
        return key
    if key_type is int:
        try:
            return int(key)
        except ValueError:
            raise _fail(where, "an integer key", key) from None
    if isinstance(key_type, type) and issubclass(key_type, enum.Enum):
        return _decode(key, key_type, where)
    raise TypedJsonError(f"{where}: dict keys of type {key_type!r} are not supported")


def from_json(data: Any, cls: type[T]) -> T:
    """An instance of dataclass `cls` equal to the one `probe.results.to_jsonable(..., exact=True)` wrote as
    `data`; TypedJsonError when `data` is not such a value (wrong class, missing or extra fields, wrong types,
    damaged arrays)."""
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"from_json needs a dataclass type, got {cls!r}")
    return _decode_dataclass(data, cls, "")
