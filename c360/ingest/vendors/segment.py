"""Segment (and RudderStack, which sends the same spec) track/page/screen/identify calls -> canonical tracking.

Fields from Segment's public Spec (common fields, track/page/screen/identify, E-commerce v2 events). The table
of what goes where is docs/tracking_vendors.md#segment--rudderstack.
"""

from __future__ import annotations

from datetime import datetime

from c360.ingest.vendors.common import VendorRecordError, extra_json, name_key, sub, text

# track event names of the E-commerce v2 spec (and Signed In) -> canonical event_type
TRACK_EVENTS = {
    "product viewed": "product_view",
    "products searched": "search",
    "product added": "add_to_cart",
    "product removed": "remove_from_cart",
    "checkout started": "checkout",
    "order completed": "purchase",
    "signed in": "login",
}
DEVICE_TYPES = {"ios": "mobile", "android": "mobile", "phone": "mobile", "mobile": "mobile", "tablet": "tablet",
                "ipad": "tablet", "desktop": "desktop", "computer": "desktop"}


def _iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def event_time(obj: dict) -> str | None:
    """`timestamp` (Segment's own clock-skew-corrected event time); without it, originalTimestamp corrected by the
    device's clock skew (receivedAt - sentAt); then receivedAt. The fields used are removed from obj."""
    ts = obj.pop("timestamp", None)
    if ts:
        return text(ts)
    original, sent, received = obj.get("originalTimestamp"), obj.get("sentAt"), obj.get("receivedAt")
    if original and sent and received:
        try:
            return (_iso(original) + (_iso(received) - _iso(sent))).isoformat()
        except (TypeError, ValueError):
            return text(original)  # unparseable: ingestion quarantines it as invalid_timestamp, naming the value
    return text(original or received)


def map_record(obj: dict, vendor: str) -> dict:
    call = obj.pop("type", None)
    if not isinstance(call, str):
        raise VendorRecordError("no call type (track, page, screen, identify...)")
    call = call.lower()
    context = sub(obj, "context")
    props = sub(obj, "properties")
    page = sub(context, "page")
    campaign = sub(context, "campaign")
    user_id = text(obj.pop("userId", None))
    anonymous_id = text(obj.pop("anonymousId", None))
    if call == "track":
        raw_name = obj.pop("event", None) or "track"
        event_type = TRACK_EVENTS.get(name_key(raw_name), "other")
    elif call == "page":
        raw_name, event_type = "page", "page_view"
    elif call == "screen":
        raw_name, event_type = "screen", "page_view"
    elif call == "identify":
        # an identify call with a userId is the moment the visitor is known: a login for stitching and sessions
        raw_name, event_type = "identify", "login" if user_id else "other"
    else:
        raw_name, event_type = call, "other"  # group, alias, ...

    order_id = props.pop("order_id", None) if event_type in ("purchase", "checkout") else None
    product_id = props.pop("product_id", None)
    quantity = props.pop("quantity", None)
    if product_id is None and event_type in ("add_to_cart", "remove_from_cart", "product_view"):
        product_id = props.pop("sku", None)
    device = sub(context, "device")
    device_type = device.pop("type", None)
    os = sub(context, "os").pop("name", None)
    out = {
        "event_id": text(obj.pop("messageId", None)),
        "event_type": event_type,
        "occurred_at": event_time(obj),
        # a server-side call may carry only userId: a per-user id keeps it (it forms its own session stream)
        "anonymous_id": anonymous_id or (f"user:{user_id}" if user_id else None),
        "customer_id": user_id,
        "page_url": text(props.pop("url", None) if call == "page" else None) or text(page.pop("url", None)),
        "product_id": text(product_id),
        "search_query": text(props.pop("query", None)) if event_type == "search" else None,
        "order_id": text(order_id),
        "quantity": text(quantity),
        "device_type": DEVICE_TYPES.get(device_type.lower(), device_type.lower())
        if isinstance(device_type, str) else None,
        "os": text(os),
        "browser": None,  # Segment sends the raw userAgent only (kept in vendor_extra), no parsed browser
        "referrer": text(props.pop("referrer", None) if call == "page" else None) or text(page.pop("referrer", None)),
        "utm_source": text(campaign.pop("source", None)),
        "utm_medium": text(campaign.pop("medium", None)),
        "utm_campaign": text(campaign.pop("name", None)),
        "vendor": vendor,
        "vendor_event_name": raw_name if isinstance(raw_name, str) else text(raw_name),
    }
    out["vendor_extra"] = extra_json(obj)
    return out


def parse_tsv(line: str):
    raise VendorRecordError("Segment lands JSON lines, not TSV")
