"""Helpers shared by the vendor adapters: text values, the vendor_extra JSON, event-name lookups."""

from __future__ import annotations

import json


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
        out = {}
        for k, v in value.items():
            v = pruned(v)
            if v is not None and v != "" and v != {} and v != []:
                out[k] = v
        return out
    if isinstance(value, list):
        return [pruned(v) for v in value]
    return value


def extra_json(remainder: dict) -> str | None:
    """The unmapped fields as one compact JSON object (keys in the vendor's order), or None when nothing is left."""
    rest = pruned(remainder)
    return json.dumps(rest, ensure_ascii=False, separators=(",", ":")) if rest else None


def sub(obj: dict, key: str) -> dict:
    """obj[key] when it is an object, else {} (a missing or null context/properties)."""
    value = obj.get(key)
    return value if isinstance(value, dict) else {}


def name_key(name: str) -> str:
    """Event names compared case- and separator-insensitively: 'Product Added', 'product_added' -> 'product added'."""
    return " ".join(name.replace("_", " ").replace("-", " ").lower().split())
