"""Google Analytics 4 BigQuery export rows (one JSON object per row, as `bq extract` / a JSON export writes the
events_YYYYMMDD table) -> canonical tracking.

Fields from GA4's public BigQuery export schema: event_date, event_timestamp (microseconds, UTC), event_name,
event_params [{key, value: {string_value, int_value, float_value, double_value}}], user_id, user_pseudo_id,
device{category, operating_system, web_info{browser}}, traffic_source, collected_traffic_source, ecommerce, items.
The table of what goes where is docs/tracking_vendors.md#ga4-bigquery-export.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from c360.ingest.vendors.common import VendorRecordError, extra_json, sub, text

# GA4's recommended e-commerce and login events -> canonical event_type
EVENTS = {
    "page_view": "page_view",
    "screen_view": "page_view",
    "view_item": "product_view",
    "search": "search",
    "view_search_results": "search",
    "add_to_cart": "add_to_cart",
    "remove_from_cart": "remove_from_cart",
    "begin_checkout": "checkout",
    "purchase": "purchase",
    "login": "login",
}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
VALUE_KINDS = ("string_value", "int_value", "double_value", "float_value")


def params_dict(params) -> dict:
    """event_params as {key: value}: the first non-null of string/int/double/float value (BigQuery's JSON export
    writes INT64 as a string; it stays text here, typed by ingestion where it matters)."""
    out = {}
    if not isinstance(params, list):
        return out
    for p in params:
        if not isinstance(p, dict) or "key" not in p:
            raise VendorRecordError("event_params entry without key")
        value = p.get("value") or {}
        v = None
        for kind in VALUE_KINDS:
            v = value.get(kind)
            if v is not None:
                break
        out[p["key"]] = v
    return out


def event_id(user_pseudo_id, event_timestamp, event_name, bundle) -> str:
    """GA4 rows carry no event id: a digest of what identifies an event within a property. A row exported twice
    gets the same id, so ingestion quarantines the second as duplicate_row."""
    key = f"{user_pseudo_id}\x1f{event_timestamp}\x1f{event_name}\x1f{bundle}"
    return "ga4-" + hashlib.md5(key.encode()).hexdigest()


def micros_to_iso(value) -> str | None:
    if value is None or value == "":
        return None
    try:
        us = int(value)
    except (TypeError, ValueError):
        return text(value)  # quarantined as invalid_timestamp with the value in the detail
    return (EPOCH + timedelta(microseconds=us)).isoformat()


def map_record(obj: dict, vendor: str) -> dict:
    name = obj.pop("event_name", None)
    if not isinstance(name, str) or not name:
        raise VendorRecordError("no event_name")
    ts = obj.pop("event_timestamp", None)
    pseudo = text(obj.pop("user_pseudo_id", None))
    user_id = text(obj.pop("user_id", None))
    params = params_dict(obj.pop("event_params", None))
    items = obj.get("items")
    first = items[0] if isinstance(items, list) and items and isinstance(items[0], dict) else {}
    device = sub(obj, "device")
    web = sub(device, "web_info")
    ecommerce = sub(obj, "ecommerce")
    manual = sub(obj, "collected_traffic_source")
    event_type = EVENTS.get(name, "other")
    order_id = ecommerce.pop("transaction_id", None) or params.pop("transaction_id", None) \
        if event_type in ("purchase", "checkout") else None
    product_id = first.get("item_id") if event_type in ("product_view", "add_to_cart", "remove_from_cart") else None
    quantity = first.get("quantity") if event_type in ("add_to_cart", "remove_from_cart") else None
    out = {
        "event_id": event_id(pseudo, ts, name, obj.get("event_bundle_sequence_id")),
        "event_type": event_type,
        "occurred_at": micros_to_iso(ts),
        "anonymous_id": pseudo or (f"user:{user_id}" if user_id else None),
        "customer_id": user_id,
        "page_url": text(params.pop("page_location", None)),
        "product_id": text(product_id),
        "search_query": text(params.pop("search_term", None)) if event_type == "search" else None,
        "order_id": text(order_id),
        "quantity": text(quantity),
        "device_type": text(device.pop("category", None)),
        "os": text(device.pop("operating_system", None)),
        "browser": text(web.pop("browser", None)),
        "referrer": text(params.pop("page_referrer", None)),
        # campaign: the event's own parameters, else what GA4 collected for the event (manual_* = utm_*)
        "utm_source": text(params.pop("source", None) or manual.pop("manual_source", None)),
        "utm_medium": text(params.pop("medium", None) or manual.pop("manual_medium", None)),
        "utm_campaign": text(params.pop("campaign", None) or manual.pop("manual_campaign_name", None)),
        "vendor": vendor,
        "vendor_event_name": name,
    }
    if params:
        obj["event_params"] = params  # the unmapped parameters, flattened to {key: value}
    # items stay whole in vendor_extra: a purchase has several, the canonical row names none
    out["vendor_extra"] = extra_json(obj)
    return out


def parse_tsv(line: str):
    raise VendorRecordError("GA4 lands JSON lines, not TSV")
