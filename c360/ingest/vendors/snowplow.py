"""Snowplow enriched events -> canonical tracking.

Two landings: the enriched TSV (131 tab-separated fields, no header, in the order of Snowplow's public "enriched
TSV format" page: FIELDS below), or one JSON object per event with the same field names (contexts,
derived_contexts and unstruct_event as self-describing JSON, objects or strings). E-commerce comes from
Snowplow's ecommerce plugin (snowplow_ecommerce_action with product / transaction entities), site_search, and the
legacy transaction event. The table of what goes where is docs/tracking_vendors.md#snowplow.
"""

from __future__ import annotations

from c360.ingest.vendors.common import VendorRecordError, extra_json, extra_json_flat, loads, text

FIELDS = (  # noqa: SIM905 - one string reads (and diffs) like the vendor's field list
    "app_id platform etl_tstamp collector_tstamp dvce_created_tstamp event event_id txn_id name_tracker v_tracker "
    "v_collector v_etl user_id user_ipaddress user_fingerprint domain_userid domain_sessionidx network_userid "
    "geo_country geo_region geo_city geo_zipcode geo_latitude geo_longitude geo_region_name ip_isp ip_organization "
    "ip_domain ip_netspeed page_url page_title page_referrer page_urlscheme page_urlhost page_urlport page_urlpath "
    "page_urlquery page_urlfragment refr_urlscheme refr_urlhost refr_urlport refr_urlpath refr_urlquery "
    "refr_urlfragment refr_medium refr_source refr_term mkt_medium mkt_source mkt_term mkt_content mkt_campaign "
    "contexts se_category se_action se_label se_property se_value unstruct_event tr_orderid tr_affiliation tr_total "
    "tr_tax tr_shipping tr_city tr_state tr_country ti_orderid ti_sku ti_name ti_category ti_price ti_quantity "
    "pp_xoffset_min pp_xoffset_max pp_yoffset_min pp_yoffset_max useragent br_name br_family br_version br_type "
    "br_renderengine br_lang br_features_pdf br_features_flash br_features_java br_features_director "
    "br_features_quicktime br_features_realplayer br_features_windowsmedia br_features_gears "
    "br_features_silverlight br_cookies br_colordepth br_viewwidth br_viewheight os_name os_family "
    "os_manufacturer os_timezone dvce_type dvce_ismobile dvce_screenwidth dvce_screenheight doc_charset doc_width "
    "doc_height tr_currency tr_total_base tr_tax_base tr_shipping_base ti_currency ti_price_base base_currency "
    "geo_timezone mkt_clickid mkt_network etl_tags dvce_sent_tstamp refr_domain_userid refr_dvce_tstamp "
    "derived_contexts domain_sessionid derived_tstamp event_vendor event_name event_format event_version "
    "event_fingerprint true_tstamp"
).split()
assert len(FIELDS) == 131
N_FIELDS = len(FIELDS)

# the snowplow_ecommerce_action event's `type` -> canonical event_type (others: list_view, promo_view, refund...)
ECOMMERCE_ACTIONS = {
    "product_view": "product_view",
    "add_to_cart": "add_to_cart",
    "remove_from_cart": "remove_from_cart",
    "checkout_step": "checkout",
    "transaction": "purchase",
}
# Snowplow has no standard login event: a structured event with one of these actions, or a self-describing
# event of one of these names, is a login (docs/tracking_vendors.md)
LOGIN_NAMES = ("login", "sign_in", "signin", "log_in")
PRODUCT_SCHEMA = "com.snowplowanalytics.snowplow.ecommerce/product/"
TRANSACTION_SCHEMA = "com.snowplowanalytics.snowplow.ecommerce/transaction/"
IAB_SCHEMA = "com.iab.snowplow/spiders_and_robots/"
DEVICE_TYPES = {"computer": "desktop", "mobile": "mobile", "tablet": "tablet"}
TIMESTAMPS = ("true_tstamp", "derived_tstamp", "collector_tstamp")


def parse_tsv(line: str) -> dict:
    """The line's non-empty fields by name (an empty field is an absent one: map_record treats both alike, and
    most of the 131 fields are empty, so not building them is the cheapest part of reading a line)."""
    values = line.split("\t")
    if len(values) != N_FIELDS:
        raise VendorRecordError(f"{len(values)} tab-separated fields, the enriched format has {N_FIELDS}")
    return {f: v for f, v in zip(FIELDS, values, strict=False) if v}  # lengths checked above


def _json(value):
    """A self-describing JSON field as an object (TSV holds it as text), or None."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return loads(value)
    return value


def _entities(value) -> list[dict]:
    """The `data` list of a contexts field: [{schema, data}, ...]."""
    doc = _json(value)
    data = doc.get("data") if isinstance(doc, dict) else None
    return [e for e in data if isinstance(e, dict)] if isinstance(data, list) else []


def _utc(value) -> str | None:
    """Snowplow's timestamps are UTC without an offset ('2026-03-10 10:00:00.123'): say so explicitly."""
    value = text(value)
    if value is None or value.endswith(("Z", "z")) or "+" in value[10:]:
        return value
    return value + "Z"


def bot_reason(rec: dict, derived: list[dict]) -> str | None:
    """Why the event is a bot, from the IAB Spiders & Robots enrichment or the user-agent's browser type."""
    for e in derived:
        if IAB_SCHEMA in str(e.get("schema", "")):
            data = e.get("data") or {}
            if data.get("spiderOrRobot") is True:
                return (f"IAB spiders_and_robots: category={data.get('category')}, reason={data.get('reason')}, "
                        f"primaryImpact={data.get('primaryImpact')}")
    br_type = rec.get("br_type")
    if isinstance(br_type, str) and "robot" in br_type.lower():
        return f"br_type={br_type}"
    return None


def map_record(rec: dict, vendor: str) -> dict:
    return _map({k: v for k, v in rec.items() if v is not None and v != ""}, rec, vendor, False)


def map_tsv_record(rec: dict, vendor: str) -> dict:
    """map_record of a parse_tsv result, which is the reader's own: its values are already non-empty text, so it is
    used as the remainder as it is (no copy) and only the self-describing JSON is pruned for vendor_extra."""
    return _map(rec, rec, vendor, True)


def _map(rest: dict, rec: dict, vendor: str, flat_text: bool) -> dict:
    event = rest.pop("event", None)
    name = rest.pop("event_name", None) or event
    if not name:
        raise VendorRecordError("no event / event_name")
    unstruct = _json(rest.pop("unstruct_event", None))
    contexts = _entities(rest.pop("contexts", None))
    derived = _entities(rest.pop("derived_contexts", None))
    sde = unstruct.get("data") if isinstance(unstruct, dict) else None
    sde_data = sde.get("data") if isinstance(sde, dict) else None
    sde_data = sde_data if isinstance(sde_data, dict) else {}

    product: dict = {}
    transaction: dict = {}
    for e in contexts:
        schema = str(e.get("schema", ""))
        if PRODUCT_SCHEMA in schema and not product:
            product = e.get("data") or {}
        elif TRANSACTION_SCHEMA in schema and not transaction:
            transaction = e.get("data") or {}

    raw_name = name
    search_query = order_id = product_id = quantity = None
    if name == "page_view":
        event_type = "page_view"
    elif name == "snowplow_ecommerce_action":
        action = sde_data.get("type")
        raw_name = f"snowplow_ecommerce_action:{action}"
        event_type = ECOMMERCE_ACTIONS.get(action, "other")
    elif name == "site_search":
        event_type = "search"
        terms = sde_data.get("terms")
        search_query = " ".join(map(str, terms)) if isinstance(terms, list) else text(terms)
    elif name == "transaction":  # the legacy e-commerce transaction event
        event_type = "purchase"
        order_id = rest.pop("tr_orderid", None)
    elif event == "struct" and str(rest.get("se_action", "")).lower() in LOGIN_NAMES:
        event_type = "login"
        raw_name = f"struct:{rest.get('se_category')}/{rest.get('se_action')}"
    elif name.lower() in LOGIN_NAMES:
        event_type = "login"
    else:
        event_type = "other"
        if event == "struct":
            raw_name = f"struct:{rest.get('se_category')}/{rest.get('se_action')}"
    if event_type in ("product_view", "add_to_cart", "remove_from_cart"):
        product_id, quantity = product.get("id"), product.get("quantity")
    if event_type == "purchase" and order_id is None:
        order_id = transaction.get("transaction_id")

    ts_field = None
    for f in TIMESTAMPS:
        if rest.get(f):
            ts_field = f
            break
    user_id = text(rest.pop("user_id", None))
    cookie = rest.pop("domain_userid", None) or rest.pop("network_userid", None)
    dvce_type = rest.pop("dvce_type", None)
    out = {
        "event_id": text(rest.pop("event_id", None)),
        "event_type": event_type,
        # true_tstamp (set by the tracker when trusted), else derived_tstamp (collector_tstamp corrected for the
        # device's clock skew), else collector_tstamp; all UTC
        "occurred_at": _utc(rest.pop(ts_field)) if ts_field else None,
        "anonymous_id": text(cookie) or (f"user:{user_id}" if user_id else None),
        "customer_id": user_id,
        "page_url": text(rest.pop("page_url", None)),
        "product_id": text(product_id),
        "search_query": search_query,
        "order_id": text(order_id),
        "quantity": text(quantity),
        "device_type": DEVICE_TYPES.get(dvce_type.lower(), dvce_type.lower()) if isinstance(dvce_type, str) else None,
        "os": text(rest.pop("os_family", None) or rest.pop("os_name", None)),
        "browser": text(rest.pop("br_family", None) or rest.pop("br_name", None)),
        "referrer": text(rest.pop("page_referrer", None)),
        "utm_source": text(rest.pop("mkt_source", None)),
        "utm_medium": text(rest.pop("mkt_medium", None)),
        "utm_campaign": text(rest.pop("mkt_campaign", None)),
        "vendor": vendor,
        "vendor_event_name": raw_name,
        "_bot": bot_reason(rec, derived),
    }
    # unmapped: every other non-empty field, with the self-describing JSON as objects (not escaped text)
    nested = [(k, v) for k, v in (("unstruct_event", unstruct), ("contexts", contexts), ("derived_contexts", derived))
              if v]
    if flat_text:
        out["vendor_extra"] = extra_json_flat(rest, nested)
    else:
        rest.update(nested)
        out["vendor_extra"] = extra_json(rest)
    return out
