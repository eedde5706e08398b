"""Helpers shared by the vendor adapters: text values, the vendor_extra JSON, event-name lookups."""

from __future__ import annotations

import json

import msgspec

_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.Decoder().decode


class VendorRecordError(ValueError):
    """One record cannot be read by its vendor's mapping (wrong shape): quarantined as malformed_record."""


def text(value) -> str | None:
    """A field as the text ingestion validates: None and "" are null; numbers and booleans as JSON writes them."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def pruned(value):
    """The value without null/empty members (recursively): vendor_extra keeps what was said, not what was not."""
    if isinstance(value, dict):
        return _pruned_dict(value, [])
    if isinstance(value, list):
        return _pruned_list(value, [])
    return value


# Floats json.dumps writes in exponent form (1e+16, 1e-05) or as NaN/Infinity: msgspec spells those differently
# (1e16, null), so an extra holding one is written by json.dumps, keeping vendor_extra byte-identical.
_PLAIN_FLOAT_MIN, _PLAIN_FLOAT_MAX = 1e-4, 1e16


def _pruned_dict(value: dict, odd: list) -> dict:
    # the hot path of every adapter (vendor_extra of every row): type checks ordered by frequency, no recursion
    # for scalars. `odd` collects why msgspec's JSON could differ from json.dumps' (a float in exponent form, a
    # key that is not a string).
    out = {}
    for k, v in value.items():
        if type(k) is not str:
            odd.append(k)
        t = type(v)
        if t is str:
            if v:
                out[k] = v
        elif v is None:
            continue
        elif t is dict or isinstance(v, dict):
            v = _pruned_dict(v, odd)
            if v:
                out[k] = v
        elif t is list or isinstance(v, list):
            v = _pruned_list(v, odd)
            if v:
                out[k] = v
        elif isinstance(v, str):
            if v != "":
                out[k] = v
        else:
            if t is float and not (_PLAIN_FLOAT_MIN <= abs(v) < _PLAIN_FLOAT_MAX) and v != 0:
                odd.append(v)
            out[k] = v
    return out


def _pruned_list(value: list, odd: list) -> list:
    out = []
    for v in value:
        t = type(v)
        if t is dict or isinstance(v, dict):
            v = _pruned_dict(v, odd)
        elif t is list or isinstance(v, list):
            v = _pruned_list(v, odd)
        elif t is float and not (_PLAIN_FLOAT_MIN <= abs(v) < _PLAIN_FLOAT_MAX) and v != 0:
            odd.append(v)
        out.append(v)
    return out


def _dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def extra_json(remainder: dict) -> str | None:
    """The unmapped fields as one compact JSON object (keys in the vendor's order), or None when nothing is left.

    Written by msgspec (several times faster than json.dumps) where its output is the same as
    json.dumps(ensure_ascii=False, separators=(",", ":")); json.dumps otherwise (odd floats, non-string keys,
    text msgspec refuses such as lone surrogates)."""
    odd: list = []
    return _encode(_pruned_dict(remainder, odd), odd)


def extra_json_flat(flat: dict, nested: list[tuple[str, object]]) -> str | None:
    """extra_json(flat, then the `nested` (key, value) pairs) when every value of `flat` is already a non-empty
    string under a string key (a Snowplow TSV line's fields): only the nested values are pruned. Adds them to flat."""
    odd: list = []
    for k, v in nested:
        if isinstance(v, dict):
            v = _pruned_dict(v, odd)
        elif isinstance(v, list):
            v = _pruned_list(v, odd)
        elif type(v) is float and not (_PLAIN_FLOAT_MIN <= abs(v) < _PLAIN_FLOAT_MAX) and v != 0:
            odd.append(v)
        if v is not None and v != "" and v != {} and v != []:
            flat[k] = v
    return _encode(flat, odd)


def _encode(rest: dict, odd: list) -> str | None:
    if not rest:
        return None
    if odd:
        return _dumps(rest)
    try:
        return _json_encode(rest).decode()
    except (TypeError, ValueError, OverflowError):
        return _dumps(rest)


def loads(text: str):
    """json.loads, parsed by msgspec when it can (same values, several times faster); json.loads for what msgspec
    refuses and the standard library accepts (NaN, Infinity, lone surrogates), or to raise its ValueError."""
    try:
        return _json_decode(text)
    except msgspec.DecodeError:
        return json.loads(text)


def sub(obj: dict, key: str) -> dict:
    """obj[key] when it is an object, else {} (a missing or null context/properties)."""
    value = obj.get(key)
    return value if isinstance(value, dict) else {}


def name_key(name: str) -> str:
    """Event names compared case- and separator-insensitively: 'Product Added', 'product_added' -> 'product added'."""
    return " ".join(name.replace("_", " ").replace("-", " ").lower().split())
