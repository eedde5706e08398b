"""Tracking in the vendors' own formats, with the canonical rows each landed record must become.

Written from the vendors' public specs (Snowplow's enriched-event model and ecommerce plugin schemas, Segment's
Spec and E-commerce v2 events, GA4's BigQuery export schema): field names, nesting and value types as documented,
values invented. Used by the adapter tests and the adapter benchmark (bench/tracking_vendors.py).

`journeys()` makes visitors' sessions as canonical events (page views, search, product views, cart adds and
removes, login/identify, checkout, purchase, one event no mapping knows), with edge cases: visitors that never
log in (no user id), a re-sent event (same vendor id), a device clock hours off (Snowplow and Segment correct it;
the truth is the real time), and bots (Snowplow's IAB enrichment marks them). `encode(vendor, events)` writes
them as landed lines and returns the truth: per line, the canonical row expected and its outcome.
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta

VENDORS = ("snowplow", "snowplow_json", "segment", "rudderstack", "ga4")

# what each vendor's unknown event is called (kept as event_type 'other' with this raw name)
UNKNOWN_EVENTS = {
    "snowplow": ("page_ping", "link_click"),
    "segment": ("Product List Viewed", "Cart Viewed"),
    "ga4": ("session_start", "scroll"),
}


@dataclass
class Event:
    """One thing a visitor did, in canonical terms; `kind` is a canonical event_type or 'unknown'."""

    key: str  # unique per event of a journey set: seeds every vendor id
    kind: str
    at: datetime  # the true event time, UTC
    cookie: str
    customer: str | None = None
    product: str | None = None
    quantity: int | None = None
    order: str | None = None
    query: str | None = None
    url: str | None = None
    referrer: str | None = None
    utm: tuple[str, str, str] | None = None
    device: str = "desktop"
    skew: timedelta = timedelta(0)  # device clock minus true time
    bot: bool = False
    resent: bool = False  # a second landing of the same event (same vendor id): a duplicate
    unknown_name: int = 0  # which of the vendor's unknown events
    extra: dict = field(default_factory=dict)
    # set when the event comes from a canonical row (the generator's vendor formats); None: the fixtures' defaults
    os: str | None = None
    browser: str | None = None
    bundle: int | None = None  # GA4 event_bundle_sequence_id: stable per event, so a re-sent row is a duplicate


def journeys(day: date, visitors: int = 30, seed: int = 18, prefix: str = "v") -> list[Event]:
    """About 11 events per visitor on `day`, in time order per visitor."""
    rng = random.Random(seed)
    out: list[Event] = []
    for v in range(visitors):
        cookie = f"{prefix}-cookie-{v}"
        customer = f"C{v}" if v % 3 else None  # a third never log in: no user id anywhere
        bot = v % 10 == 7
        skew = timedelta(hours=3) if v % 10 == 4 else timedelta(0)
        device = ("desktop", "mobile", "tablet")[v % 3]
        t = datetime(day.year, day.month, day.day, 8, tzinfo=UTC) + timedelta(minutes=rng.randrange(0, 600),
                                                                              seconds=rng.randrange(60))
        p1, p2 = f"P{rng.randrange(1, 40)}", f"P{rng.randrange(40, 80)}"
        base = dict(cookie=cookie, device=device, skew=skew, bot=bot)
        steps: list[tuple[str, dict]] = [
            ("page_view", {"url": "https://shop.example/", "referrer": "https://www.google.com/",
                           "utm": ("newsletter", "email", "spring") if v % 4 == 0 else None}),
            ("search", {"query": rng.choice(["running shoes", "tote bag", "novel"])}),
            ("product_view", {"product": p1}),
            ("unknown", {"unknown_name": 0}),
            ("add_to_cart", {"product": p1, "quantity": 1 + v % 2}),
            ("product_view", {"product": p2}),
            ("add_to_cart", {"product": p2, "quantity": 1}),
            ("remove_from_cart", {"product": p2, "quantity": 1}),
            ("unknown", {"unknown_name": 1}),
        ]
        if customer:
            steps.append(("login", {}))
        buyer = customer is not None and v % 2 == 1
        if buyer:
            steps += [("checkout", {}), ("purchase", {"order": f"O-{prefix}-{v}", "product": p1})]
        logged_in = False
        for i, (kind, attrs) in enumerate(steps):
            t += timedelta(seconds=20 + rng.randrange(100))
            if kind == "login":
                logged_in = True
            ev = Event(key=f"{prefix}{v}-{i}", kind=kind, at=t, customer=customer if logged_in else None,
                       url=attrs.pop("url", f"https://shop.example/{kind}/{i}"), **base, **attrs)
            out.append(ev)
        if v % 5 == 2:  # the collector or the export sends one event twice
            out.append(replace(out[-1], resent=True))
    return out


# ------------------------------------------------------------------------------------------------- truth


@dataclass
class Expected:
    line: int
    outcome: str  # 'loaded', 'duplicate_row' or 'bot_traffic'
    row: dict  # canonical columns the loaded row must have (only those asserted)


def _canonical(ev: Event, vendor_id: str, event_type: str, raw_name: str, *, product=True, anon=None) -> dict:
    return {
        "event_id": vendor_id, "event_type": event_type, "occurred_at": ev.at,
        "anonymous_id": anon or ev.cookie, "customer_id": ev.customer,
        "product_id": ev.product if product and event_type in ("product_view", "add_to_cart", "remove_from_cart")
        else None,
        "quantity": ev.quantity if event_type in ("add_to_cart", "remove_from_cart") else None,
        "order_id": ev.order if event_type == "purchase" else None,
        "search_query": ev.query if event_type == "search" else None,
        "vendor_event_name": raw_name,
    }


def _uuid(key: str, vendor: str) -> str:
    return str(uuid.UUID(hashlib.md5(f"{vendor}:{key}".encode()).hexdigest()))


# --------------------------------------------------------------------------------------------- snowplow

_SP_FIELDS: tuple[str, ...] = ()


def _sp_fields() -> tuple[str, ...]:
    global _SP_FIELDS
    if not _SP_FIELDS:
        from c360.ingest.vendors.snowplow import FIELDS

        _SP_FIELDS = tuple(FIELDS)
    return _SP_FIELDS


def _sp_ts(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.") + f"{t.microsecond // 1000:03d}"


def _sde(schema: str, data: dict) -> dict:
    return {"schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
            "data": {"schema": schema, "data": data}}


def _contexts(entities: list[tuple[str, dict]]) -> dict:
    return {"schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0",
            "data": [{"schema": s, "data": d} for s, d in entities]}


ECOM = "iglu:com.snowplowanalytics.snowplow.ecommerce/"


def snowplow_record(ev: Event) -> tuple[dict, str, str]:
    """The enriched event (field -> value, '' when empty), its canonical event_type and raw name."""
    rec = dict.fromkeys(_sp_fields(), "")
    collector = ev.at + timedelta(seconds=1)
    rec.update(
        app_id="shop", platform="web", etl_tstamp=_sp_ts(collector + timedelta(seconds=5)),
        collector_tstamp=_sp_ts(collector), dvce_created_tstamp=_sp_ts(ev.at + ev.skew),
        dvce_sent_tstamp=_sp_ts(ev.at + ev.skew + timedelta(seconds=1)),
        # what Enrich computes: collector_tstamp - (dvce_sent_tstamp - dvce_created_tstamp) = the true time
        derived_tstamp=_sp_ts(ev.at),
        event_id=_uuid(ev.key, "snowplow"), name_tracker="sp", v_tracker="js-3.24.0",
        v_collector="ssc-3.2.0-kinesis", v_etl="enrich-kinesis-4.1.0", user_id=ev.customer or "",
        # Snowplow sets its own first-party cookie: another id than Segment's or GA4's for the same browser
        user_ipaddress="203.0.113.0", domain_userid=_uuid(ev.cookie, "snowplow-duid"), domain_sessionidx="1",
        network_userid=_uuid(ev.cookie, "nuid"), domain_sessionid=_uuid(ev.cookie + ev.at.date().isoformat(), "sid"),
        geo_country="DE", page_url=ev.url or "", page_title="Shop", page_urlscheme="https",
        page_urlhost="shop.example", page_urlport="443", page_urlpath="/",
        useragent="Googlebot/2.1 (+http://www.google.com/bot.html)" if ev.bot else "Mozilla/5.0 (X11; Linux x86_64)",
        br_family=ev.browser or ("Chrome" if not ev.bot else "Robot/Spider"), br_name="Chrome 120", br_lang="de-DE",
        os_family=ev.os or "Linux", os_name=ev.os or "Linux", os_timezone="Europe/Berlin",
        dvce_type={"desktop": "Computer", "mobile": "Mobile", "tablet": "Tablet"}[ev.device],
        dvce_ismobile="1" if ev.device != "desktop" else "0", doc_charset="UTF-8",
        event_format="jsonschema", event_version="1-0-0", event_fingerprint=hashlib.md5(ev.key.encode()).hexdigest(),
    )
    if ev.referrer:
        rec.update(page_referrer=ev.referrer, refr_medium="search", refr_source="Google", refr_urlhost="www.google.com")
    if ev.utm:
        rec.update(mkt_source=ev.utm[0] or "", mkt_medium=ev.utm[1] or "", mkt_campaign=ev.utm[2] or "")
    iab = {"spiderOrRobot": ev.bot, "category": "SPIDER_OR_ROBOT" if ev.bot else "BROWSER",
           "reason": "FAILED_UA_INCLUDE" if ev.bot else "PASSED_ALL", "primaryImpact": "UNKNOWN" if ev.bot else "NONE"}
    rec["derived_contexts"] = json.dumps(_contexts([("iglu:com.iab.snowplow/spiders_and_robots/jsonschema/1-0-0", iab)]))
    web_page = ("iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0", {"id": _uuid(ev.key, "pv")})
    entities = [web_page]
    product = {"id": ev.product, "category": "Shoes", "price": 49.9, "currency": "EUR"}
    if ev.quantity:
        product["quantity"] = ev.quantity
    kind = ev.kind
    if kind == "page_view":
        rec.update(event="page_view", event_vendor="com.snowplowanalytics.snowplow", event_name="page_view")
        event_type, raw = "page_view", "page_view"
    elif kind in ("product_view", "add_to_cart", "remove_from_cart", "checkout", "purchase"):
        action = {"checkout": "checkout_step", "purchase": "transaction"}.get(kind, kind)
        rec.update(event="unstruct", event_vendor="com.snowplowanalytics.snowplow.ecommerce",
                   event_name="snowplow_ecommerce_action", event_version="1-0-2",
                   unstruct_event=json.dumps(_sde(ECOM + "snowplow_ecommerce_action/jsonschema/1-0-2",
                                                  {"type": action})))
        if kind in ("product_view", "add_to_cart", "remove_from_cart", "purchase"):
            entities.append((ECOM + "product/jsonschema/1-0-0", product))
        if kind in ("add_to_cart", "remove_from_cart"):
            entities.append((ECOM + "cart/jsonschema/1-0-0", {"total_value": 49.9, "currency": "EUR"}))
        if kind == "checkout":
            entities.append((ECOM + "checkout_step/jsonschema/1-0-0", {"step": 1}))
        if kind == "purchase":
            entities.append((ECOM + "transaction/jsonschema/1-0-0",
                             {"transaction_id": ev.order, "revenue": 49.9, "currency": "EUR",
                              "payment_method": "card", "total_quantity": 1}))
        event_type, raw = kind, f"snowplow_ecommerce_action:{action}"
    elif kind == "search":
        rec.update(event="unstruct", event_vendor="com.snowplowanalytics.snowplow", event_name="site_search",
                   unstruct_event=json.dumps(_sde("iglu:com.snowplowanalytics.snowplow/site_search/jsonschema/1-0-0",
                                                  {"terms": ev.query.split(), "totalResults": 12})))
        event_type, raw = "search", "site_search"
    elif kind == "login":
        rec.update(event="struct", event_vendor="com.google.analytics", event_name="event",
                   se_category="account", se_action="login", se_label="password")
        event_type, raw = "login", "struct:account/login"
    else:
        name = UNKNOWN_EVENTS["snowplow"][ev.unknown_name]
        if name == "page_ping":
            rec.update(event="page_ping", event_vendor="com.snowplowanalytics.snowplow", event_name="page_ping",
                       pp_xoffset_min="0", pp_xoffset_max="0", pp_yoffset_min="120", pp_yoffset_max="900")
        else:
            rec.update(event="unstruct", event_vendor="com.snowplowanalytics.snowplow", event_name="link_click",
                       unstruct_event=json.dumps(_sde("iglu:com.snowplowanalytics.snowplow/link_click/jsonschema/1-0-1",
                                                      {"targetUrl": "https://shop.example/help"})))
        event_type, raw = "other", name
    rec["contexts"] = json.dumps(_contexts(entities))
    return rec, event_type, raw


# ---------------------------------------------------------------------------------------------- segment

SEGMENT_TRACK = {"product_view": "Product Viewed", "search": "Products Searched", "add_to_cart": "Product Added",
                 "remove_from_cart": "Product Removed", "checkout": "Checkout Started", "purchase": "Order Completed"}


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def segment_record(ev: Event, vendor: str) -> tuple[dict, str, str]:
    received = ev.at + timedelta(seconds=1)  # sent 1 s after the event; the network is instant in this shop
    msg: dict = {
        "messageId": f"ajs-next-{hashlib.md5(f'{vendor}:{ev.key}'.encode()).hexdigest()}",
        "anonymousId": _uuid(ev.cookie, vendor) if vendor == "rudderstack" else ev.cookie,
        "originalTimestamp": _iso(ev.at + ev.skew),
        "sentAt": _iso(ev.at + ev.skew + timedelta(seconds=1)),
        "receivedAt": _iso(received),
        "context": {
            "library": {"name": "analytics.js", "version": "next-1.70.0"},
            "page": {"path": "/", "referrer": ev.referrer or "", "title": "Shop", "url": ev.url},
            "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2)", "locale": "de-DE", "ip": "203.0.113.0",
            "timezone": "Europe/Berlin",
        },
        "integrations": {},
        "version": 2,
    }
    if ev.skew == timedelta(0):
        msg["timestamp"] = _iso(ev.at)  # with a skewed clock: no timestamp, the adapter corrects originalTimestamp
    if ev.device != "desktop":
        msg["context"]["device"] = {"type": "ios" if ev.device == "mobile" else "tablet", "model": "x"}
        msg["context"]["os"] = {"name": ev.os or "iOS", "version": "17.2"}
    elif ev.os:  # a generated shop's event: its device and OS as the canonical row has them
        msg["context"]["device"] = {"type": "desktop"}
        msg["context"]["os"] = {"name": ev.os}
    if ev.utm:
        msg["context"]["campaign"] = {k: v for k, v in zip(("source", "medium", "name"), ev.utm, strict=True) if v}
    if ev.customer:
        msg["userId"] = ev.customer
    product = {"product_id": ev.product, "sku": f"SKU-{ev.product}", "name": "Runner", "price": 49.9,
               "category": "Shoes"}
    kind = ev.kind
    if kind == "page_view":
        msg.update(type="page", name="Home", properties={"url": ev.url, "path": "/", "title": "Shop",
                                                         "referrer": ev.referrer or ""})
        return msg, "page_view", "page"
    if kind == "login":
        msg.update(type="identify",
                   traits={"email": f"{ev.customer.lower()}@example.com", "plan": "member"} if ev.customer else {})
        return msg, "login", "identify"
    if kind == "unknown":
        name = UNKNOWN_EVENTS["segment"][ev.unknown_name]
        msg.update(type="track", event=name, properties={"list_id": "shoes", "category": "Shoes"})
        return msg, "other", name
    props: dict = {}
    if kind in ("product_view", "add_to_cart", "remove_from_cart"):
        props = dict(product, **({"quantity": ev.quantity} if ev.quantity else {}))
    elif kind == "search":
        props = {"query": ev.query}
    elif kind == "checkout":
        props = {"value": 49.9, "revenue": 49.9, "currency": "EUR", "products": [product]}
    elif kind == "purchase":
        props = {"checkout_id": "chk-1", "order_id": ev.order, "total": 54.9, "revenue": 49.9, "shipping": 5,
                 "tax": 9.5, "currency": "EUR", "products": [dict(product, quantity=1)]}
    msg.update(type="track", event=SEGMENT_TRACK[kind], properties=props)
    return msg, kind, SEGMENT_TRACK[kind]


# ------------------------------------------------------------------------------------------------- ga4

GA4_EVENTS = {"product_view": "view_item", "search": "view_search_results", "add_to_cart": "add_to_cart",
              "remove_from_cart": "remove_from_cart", "checkout": "begin_checkout", "purchase": "purchase",
              "login": "login", "page_view": "page_view"}


def _param(key: str, value) -> dict:
    if isinstance(value, str):
        v = {"string_value": value, "int_value": None, "float_value": None, "double_value": None}
    elif isinstance(value, int):
        v = {"string_value": None, "int_value": str(value), "float_value": None, "double_value": None}
    else:
        v = {"string_value": None, "int_value": None, "float_value": None, "double_value": value}
    return {"key": key, "value": v}


def ga4_pseudo_id(cookie: str) -> str:
    return f"{int(hashlib.md5(cookie.encode()).hexdigest()[:8], 16)}.1741600000"


def ga4_record(ev: Event, bundle: int) -> tuple[dict, str, str]:
    us = int(ev.at.timestamp()) * 1_000_000 + ev.at.microsecond
    local = ev.at + timedelta(hours=1)  # the property's reporting time zone (Europe/Berlin in winter)
    name = UNKNOWN_EVENTS["ga4"][ev.unknown_name] if ev.kind == "unknown" else GA4_EVENTS[ev.kind]
    params = [_param("page_location", ev.url), _param("page_title", "Shop"),
              _param("ga_session_id", 1741600000), _param("ga_session_number", 1),
              _param("engagement_time_msec", 1200), _param("batch_ordering_id", 3)]
    if ev.referrer:
        params.append(_param("page_referrer", ev.referrer))
    if ev.utm:
        params += [_param(k, v) for k, v in zip(("source", "medium", "campaign"), ev.utm, strict=True) if v]
    if ev.kind == "search":
        params.append(_param("search_term", ev.query))
    if ev.kind == "purchase":
        params.append(_param("value", 49.9))
    row: dict = {
        "event_date": local.strftime("%Y%m%d"),
        "event_timestamp": str(us),
        "event_name": name,
        "event_params": params,
        "event_previous_timestamp": None,
        "event_value_in_usd": None,
        "event_bundle_sequence_id": str(bundle),
        "event_server_timestamp_offset": "412345",
        "user_id": ev.customer,
        "user_pseudo_id": ga4_pseudo_id(ev.cookie),
        "privacy_info": {"analytics_storage": "Yes", "ads_storage": "No", "uses_transient_token": "No"},
        "user_properties": [],
        "user_first_touch_timestamp": str(us - 3_600_000_000),
        "device": {"category": ev.device, "mobile_brand_name": None, "operating_system": ev.os or "Windows",
                   "operating_system_version": "Windows 11", "language": "de-de", "is_limited_ad_tracking": "No",
                   "web_info": {"browser": ev.browser or "Chrome", "browser_version": "120.0",
                                "hostname": "shop.example"}},
        "geo": {"continent": "Europe", "country": "Germany", "region": "Berlin", "city": "Berlin"},
        "app_info": None,
        "traffic_source": {"name": "(direct)", "medium": "(none)", "source": "(direct)"},
        "stream_id": "4178912345",
        "platform": "WEB",
        "ecommerce": None,
        "items": [],
        "is_active_user": True,
        "batch_event_index": "1",
    }
    if ev.kind in ("product_view", "add_to_cart", "remove_from_cart", "purchase", "checkout"):
        row["items"] = [{"item_id": ev.product, "item_name": "Runner", "item_category": "Shoes", "price": 49.9,
                         "quantity": str(ev.quantity or 1), "item_list_name": None}]
    if ev.kind == "purchase":
        row["ecommerce"] = {"transaction_id": ev.order, "purchase_revenue": 49.9, "total_item_quantity": "1",
                            "unique_items": "1", "shipping_value": 5.0, "tax_value": 9.5}
    event_type = "other" if ev.kind == "unknown" else ev.kind
    return row, event_type, name


# ---------------------------------------------------------------------------------------------- encode


def vendor_line(vendor: str, ev: Event, bundle: int = 1000) -> tuple[str, str, str, str, str]:
    """One event as a landed line of `vendor`: (line, the vendor's event id, its anonymous id, canonical
    event_type, the vendor's raw event name)."""
    if vendor in ("snowplow", "snowplow_json"):
        rec, event_type, raw = snowplow_record(ev)
        vid, anon = rec["event_id"], rec["domain_userid"]
        if vendor == "snowplow":
            line = "\t".join(rec[f] for f in _sp_fields())
        else:
            obj = {k: v for k, v in rec.items() if v != ""}
            for k in ("contexts", "derived_contexts", "unstruct_event"):
                if k in obj:
                    obj[k] = json.loads(obj[k])
            line = json.dumps(obj, separators=(",", ":"))
    elif vendor in ("segment", "rudderstack"):
        rec, event_type, raw = segment_record(ev, vendor)
        vid, anon = rec["messageId"], rec["anonymousId"]
        line = json.dumps(rec, separators=(",", ":"))
    elif vendor == "ga4":
        rec, event_type, raw = ga4_record(ev, bundle)
        from c360.ingest.vendors.ga4 import event_id

        vid = event_id(rec["user_pseudo_id"], rec["event_timestamp"], rec["event_name"], str(bundle))
        anon = rec["user_pseudo_id"]
        line = json.dumps(rec, separators=(",", ":"))
    else:
        raise ValueError(f"unknown vendor {vendor!r}; one of {', '.join(VENDORS)}")
    return line, vid, anon, event_type, raw


def encode(vendor: str, events: list[Event]) -> tuple[list[str], list[Expected]]:
    """Landed lines (one per event, in order) and what each must become. vendor: one of VENDORS
    ('snowplow' = enriched TSV, 'snowplow_json' = the same events as JSON objects)."""
    lines: list[str] = []
    truth: list[Expected] = []
    seen: set[str] = set()
    bundles: dict[str, int] = {}
    for i, ev in enumerate(events, start=1):
        # GA4: events of one visitor's upload share a bundle; a re-exported row keeps its bundle
        bundle = ev.bundle if ev.bundle is not None else bundles.setdefault(ev.key, 1000 + i)
        line, vid, anon, event_type, raw = vendor_line(vendor, ev, bundle)
        bot = ev.bot and vendor.startswith("snowplow")
        outcome = "bot_traffic" if bot else "duplicate_row" if vid in seen else "loaded"
        if outcome == "loaded":
            seen.add(vid)
        truth.append(Expected(i, outcome, _canonical(ev, vid, event_type, raw, anon=anon)))
        lines.append(line)
    return lines, truth


# ------------------------------------------------------------------- the generator's tracking in a vendor format

CANONICAL = "canonical"  # the project's own JSON lines (tracking/dt=D/)
TRACKING_FORMATS = (CANONICAL, *VENDORS)


def source_of(fmt: str) -> str:
    """The C360_TRACKING_SOURCES source of a format: its landing folder, 'c360' for the own format."""
    return "c360" if fmt == CANONICAL else "snowplow" if fmt.startswith("snowplow") else fmt


@dataclass(frozen=True)
class TrackingFormat:
    """How the generator lands tracking: one format, or a migration from `fmt` to `new` at `cutover` (a UTC
    date). In a migration both tags fire for `overlap_days` dt partitions either side of the cut-over: the new
    one from cutover - overlap, the old one until cutover + overlap (excluded). The overlap must cover how late
    events land (the generator's late events: up to 3 days), or events of the old tag landing after it was
    switched off are lost to the cut-over, as they would be in a real migration."""

    fmt: str = CANONICAL
    new: str | None = None
    cutover: date | None = None
    overlap_days: int = 3

    @classmethod
    def parse(cls, value: str, overlap_days: int = 3) -> TrackingFormat:
        """'canonical', a vendor (snowplow, snowplow_json, segment, rudderstack, ga4), or OLD>NEW@YYYY-MM-DD with
        an optional +N: the overlap in days (default `overlap_days`)."""
        value = (value or CANONICAL).strip().lower()
        hint = (f"tracking format {value!r}: expected one of {', '.join(TRACKING_FORMATS)}, or a migration "
                "OLD>NEW@YYYY-MM-DD[+OVERLAP_DAYS] such as segment>snowplow@2026-03-15 (docs/tracking_vendors.md)")
        if ">" not in value:
            if value not in TRACKING_FORMATS:
                raise ValueError(hint)
            return cls(value)
        old, _, rest = value.partition(">")
        new, _, day = rest.partition("@")
        old, new = old.strip(), new.strip()
        day, plus, days = day.partition("+")
        if plus:
            if not days.strip().isdigit():
                raise ValueError(hint)
            overlap_days = int(days)
        try:
            cutover = date.fromisoformat(day.strip())
        except ValueError:
            raise ValueError(hint) from None
        if old not in TRACKING_FORMATS or new not in TRACKING_FORMATS:
            raise ValueError(hint)
        if source_of(old) == source_of(new):
            raise ValueError(f"tracking format {value!r}: {old} and {new} land in the same folder "
                             f"({source_of(old)}); a migration needs two sources")
        if overlap_days < 0:
            raise ValueError(f"migration overlap {overlap_days}: must be 0 or more days")
        return cls(old, new, cutover, overlap_days)

    @property
    def migration(self) -> bool:
        return self.new is not None

    def writers(self, day: date) -> list[str]:
        """The formats landing the dt partition `day`."""
        if not self.migration:
            return [self.fmt]
        overlap = timedelta(days=self.overlap_days)
        out = []
        if day < self.cutover + overlap:
            out.append(self.fmt)
        if day >= self.cutover - overlap:
            out.append(self.new)
        return out

    def tracking_sources(self) -> str:
        """The C360_TRACKING_SOURCES value that makes dbt count each visit once ('' when not a migration)."""
        if not self.migration:
            return ""
        c = self.cutover.isoformat()
        return f"{source_of(self.fmt)}:..{c},{source_of(self.new)}:{c}.."

    def __str__(self) -> str:
        if not self.migration:
            return self.fmt
        return f"{self.fmt}>{self.new}@{self.cutover}" + (f"+{self.overlap_days}" if self.overlap_days != 3 else "")


def parse_option(value: str | None, default: str = CANONICAL) -> TrackingFormat:
    """The --tracking-format of the c360 commands (generate, nightly, bench): the value given, else `default` (the
    C360_GENERATE_TRACKING_FORMAT setting); a bad one stops the command with the option named and what it expects."""
    try:
        return TrackingFormat.parse(value or default)
    except ValueError as exc:
        raise SystemExit(f"--tracking-format: {exc}") from None


def from_canonical(row: dict) -> Event:
    """An Event from one canonical tracking row (a parsed own-format line): the same event, ids and times."""
    at = datetime.fromisoformat(row["occurred_at"]).astimezone(UTC)
    utm = (row.get("utm_source"), row.get("utm_medium"), row.get("utm_campaign"))
    quantity = row.get("quantity")
    eid = row["event_id"]
    return Event(
        key=eid, kind=row["event_type"], at=at, cookie=row["anonymous_id"], customer=row.get("customer_id"),
        product=row.get("product_id"), quantity=int(quantity) if quantity is not None else None,
        order=row.get("order_id"), query=row.get("search_query"), url=row.get("page_url"),
        referrer=row.get("referrer"), utm=utm if any(utm) else None, device=row.get("device_type") or "desktop",
        os=row.get("os"), browser=row.get("browser"),
        bundle=int(hashlib.md5(eid.encode()).hexdigest()[:7], 16),
    )


def canonical_to_vendor(vendor: str, text: bytes) -> bytes:
    """A day's canonical tracking lines as `vendor` lines, one for one and in order (line numbers keep their
    meaning). A line that is not a canonical JSON object (the generator's truncated lines) is landed as it is:
    the adapter quarantines it as malformed_record, as the own format does."""
    out = []
    for line in text.decode().split("\n"):
        if not line:
            continue
        try:
            row = json.loads(line)
            ev = from_canonical(row)
        except (ValueError, KeyError, TypeError):
            out.append(line)
            continue
        out.append(vendor_line(vendor, ev, ev.bundle)[0])
    return ("\n".join(out) + "\n").encode() if out else b""


def landing_key(vendor: str, day: date, name: str = "part-0") -> str:
    folder = "snowplow" if vendor.startswith("snowplow") else vendor
    ext = "tsv" if vendor == "snowplow" else "jsonl"
    return f"tracking/{folder}/dt={day.isoformat()}/{name}.{ext}"
