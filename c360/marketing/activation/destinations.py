"""Destinations of the segment sync: the interface every destination implements, the retry policy they share, and
the destinations file (`destinations.yml`), read as untrusted input (docs/destinations.md).

A destination receives batches of one segment's changes of one night (who entered, who exited) and either
acknowledges a batch or raises SyncError. What is sent and what was acknowledged is recorded by c360.marketing.activation.sync,
not here: a destination only delivers.
"""

from __future__ import annotations

import hashlib
import ipaddress
import random
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import date
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from c360.config import SECRET_ENV_RE, Settings

# Destination types: `type` in destinations.yml -> "module:Class" (imported only when used).
DESTINATION_TYPES: dict[str, str] = {"http_json": "c360.marketing.activation.http_json:HttpJsonDestination"}

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
# An HTTP header name (RFC 9110 token): anything else could smuggle a second header or a body.
HEADER_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")
SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,31}$")
MAX_URL_LENGTH = 2048
MAX_BATCH_SIZE = 10_000
DESTINATION_FIELDS = ("name", "type", "url", "segments", "auth", "batch_size", "timeout_seconds",
                      "max_retry_seconds", "allow_plain_http")
AUTH_FIELDS = ("header", "scheme", "token_env")
LOOPBACK_HOSTS = ("localhost",)


class DestinationConfigError(ValueError):
    """The destinations file is invalid; the message lists every problem with the destination and field."""


class SyncError(RuntimeError):
    """A batch could not be delivered: the message names the destination, segment, date and batch, the cause and
    what to do. Everything acknowledged before it stays recorded; a rerun sends only the rest."""


# ------------------------------------------------------------------------------------------------ the payload


def match_key(email: str) -> str:
    """SHA-256 (hex) of the normalised email (trimmed, lower case): the key ad platforms and CRMs match on, so the
    address itself never leaves the warehouse."""
    return hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Member:
    """One change to send. customer_id stays on our side (the sync log); destinations get the keys and change."""

    customer_id: str
    change: str  # entered | exited
    match_key: str
    idempotency_key: str


@dataclass(frozen=True)
class Batch:
    destination: str
    segment: str
    as_of_date: date
    number: int  # fixed when the night's changes are planned: a resent batch has the same number and members
    members: tuple[Member, ...]

    @property
    def idempotency_key(self) -> str:
        """Same members, same key: a batch resent after a crash carries the key of its first attempt."""
        h = hashlib.sha256(f"{self.destination}|{self.segment}|{self.as_of_date}|{self.number}".encode())
        for m in self.members:
            h.update(b"|" + m.idempotency_key.encode())
        return h.hexdigest()

    def label(self) -> str:
        return (f"destination {self.destination!r}, segment {self.segment!r}, date {self.as_of_date}, "
                f"batch {self.number} ({len(self.members)} members)")


@dataclass(frozen=True)
class Ack:
    status: int  # the destination's answer (HTTP status for http_json)
    attempts: int  # requests it took, retries included


# -------------------------------------------------------------------------------------------- the interface


@dataclass(frozen=True)
class DestinationConfig:
    name: str
    type: str
    segments: tuple[str, ...] | None  # None: every segment whose `destination` in segments.yml is this name
    batch_size: int | None  # None: Settings.sync_batch_size
    options: dict[str, Any]  # type-specific, already checked by the type's check_options

    def segment_names(self, defined: list) -> list[str]:
        if self.segments is not None:
            return list(self.segments)
        return [s.name for s in defined if s.destination == self.name]


class Destination(ABC):
    """Delivers batches. `send` returns only when the destination acknowledged the whole batch; otherwise it raises
    SyncError (after its own retries of transient failures, bounded in time). Sending the same batch twice must be
    harmless: each member carries its idempotency key, and the batch one (Batch.idempotency_key)."""

    def __init__(self, config: DestinationConfig, settings: Settings):
        self.config = config
        self.settings = settings

    @property
    def name(self) -> str:
        return self.config.name

    @classmethod
    @abstractmethod
    def check_options(cls, options: dict[str, Any], label: str, errors: list[str]) -> None:
        """Append a message per problem in the type-specific fields of a destinations.yml entry."""

    @abstractmethod
    def send(self, batch: Batch) -> Ack: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def destination_class(type_name: str) -> type[Destination]:
    import importlib

    module, _, cls = DESTINATION_TYPES[type_name].partition(":")
    return getattr(importlib.import_module(module), cls)


def open_destination(config: DestinationConfig, settings: Settings) -> Destination:
    return destination_class(config.type)(config, settings)


# ------------------------------------------------------------------------------------------- retry policy


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter (a random wait in [0, base * 2^(attempt-1)], at most max_seconds), so
    that many clients retrying an overloaded destination do not come back in step; a Retry-After from the
    destination replaces the backoff (it knows when it will have room). A batch stops retrying when the next wait
    would pass `budget_seconds` after its first attempt."""

    base_seconds: float
    max_seconds: float
    budget_seconds: float

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        ceiling = min(self.max_seconds, self.base_seconds * (2 ** min(attempt - 1, 30)))
        return (rng or random).uniform(0, ceiling)


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds: a whole number of seconds or an HTTP date (RFC 9110); None when absent or garbled."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    import time

    return max(0.0, when.timestamp() - (time.time() if now is None else now))


# --------------------------------------------------------------------------------------- destinations.yml


def load_destinations(settings: Settings, segments: list, path: str | Path | None = None) -> list[DestinationConfig]:
    """The destinations file, validated; [] when it does not exist (no destination configured: nothing syncs).

    `segments`: the definitions of segments.yml (c360.marketing.segments.load_segments), to check the segments named.
    Raises DestinationConfigError naming the file, the destination and the field of every problem."""
    import yaml

    path = Path(path or settings.destinations_file)
    if not path.exists():
        return []
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise DestinationConfigError(f"{path}: not valid YAML: {exc}") from exc
    return parse_destinations(doc, segments, source=str(path))


def parse_destinations(doc: Any, segments: list, source: str = "destinations.yml") -> list[DestinationConfig]:
    errors: list[str] = []
    if doc is None:
        return []
    if not isinstance(doc, dict):
        raise DestinationConfigError(f"{source}: expected a mapping with a 'destinations' list at the top level")
    for key in doc:
        if key not in ("version", "destinations"):
            errors.append(f"unknown top-level key {key!r}; allowed: version, destinations")
    if doc.get("version", 1) != 1:
        errors.append(f"version {doc.get('version')!r} is not supported; expected 1")
    items = doc.get("destinations") or []
    if not isinstance(items, list):
        errors.append("'destinations' must be a list of destination mappings")
        items = []
    known = {s.name for s in segments}
    out = [c for i, item in enumerate(items) if (c := _parse_one(item, f"destinations[{i}]", known, errors))]
    names = [c.name for c in out]
    errors += [f"destination {n!r} is defined {names.count(n)} times; names must be unique"
               for n in sorted(set(names)) if names.count(n) > 1]
    if errors:
        raise DestinationConfigError(f"{source} is invalid:\n  - " + "\n  - ".join(errors))
    return out


def _parse_one(item: Any, where: str, known_segments: set[str], errors: list[str]) -> DestinationConfig | None:
    if not isinstance(item, dict):
        errors.append(f"{where}: expected a mapping with fields {', '.join(DESTINATION_FIELDS)}")
        return None
    name = item.get("name")
    label = f"destination {name!r} ({where})" if isinstance(name, str) else f"destination at {where}"
    before = len(errors)
    for key in item:
        if key not in DESTINATION_FIELDS:
            errors.append(f"{label}: unknown field {key!r}; allowed: {', '.join(DESTINATION_FIELDS)}")
    if not isinstance(name, str) or not NAME_RE.match(name):
        errors.append(f"{label}: field 'name' must be a lower-case identifier (letters, digits, _), e.g. crm")
    type_name = item.get("type")
    if type_name not in DESTINATION_TYPES:
        errors.append(f"{label}: field 'type' is {type_name!r}; expected one of: {', '.join(DESTINATION_TYPES)}")
    seg_list = item.get("segments")
    if seg_list is not None:
        if not isinstance(seg_list, list) or not all(isinstance(s, str) for s in seg_list):
            errors.append(f"{label}: field 'segments' must be a list of segment names")
            seg_list = []
        for s in seg_list:
            if s not in known_segments:
                errors.append(f"{label}: field 'segments' names {s!r}, which segments.yml does not define")
    batch_size = item.get("batch_size")
    if batch_size is not None and (type(batch_size) is not int or not 1 <= batch_size <= MAX_BATCH_SIZE):
        errors.append(f"{label}: field 'batch_size' must be a whole number from 1 to {MAX_BATCH_SIZE}")
    options = {k: v for k, v in item.items() if k not in ("name", "type", "segments", "batch_size")}
    if type_name in DESTINATION_TYPES:
        destination_class(type_name).check_options(options, label, errors)
    if len(errors) > before:
        return None
    return DestinationConfig(name=name, type=type_name, segments=tuple(seg_list) if seg_list is not None else None,
                             batch_size=batch_size, options=options)


def check_http_url(url: Any, allow_plain_http: bool, label: str, errors: list[str]) -> None:
    """An endpoint URL we are willing to send personal data (hashed) and a token to: http(s) only, a host, no
    credentials in it (they would end up in logs), no control characters or spaces, and https unless the host is
    this machine (tests, a local relay) or plain http was explicitly allowed."""
    if not isinstance(url, str) or not url.strip():
        errors.append(f"{label}: field 'url' is missing; e.g. https://crm.example.com/api/audience-members")
        return
    if len(url) > MAX_URL_LENGTH or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        errors.append(f"{label}: field 'url' holds spaces or control characters, or is over {MAX_URL_LENGTH} long")
        return
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises on a non-numeric port
    except ValueError as exc:
        errors.append(f"{label}: field 'url' {url!r} is not a valid URL ({exc})")
        return
    if parts.scheme not in ("http", "https"):
        errors.append(f"{label}: field 'url' scheme {parts.scheme!r} is not allowed; use https:// (or http:// to "
                      "this machine)")
        return
    if not host:
        errors.append(f"{label}: field 'url' {url!r} has no host")
    if parts.username is not None or parts.password is not None:
        errors.append(f"{label}: field 'url' carries credentials (user:password@); put the token in an "
                      "environment variable and name it in 'auth.token_env'")
    if parts.fragment:
        errors.append(f"{label}: field 'url' has a #fragment, which is never sent; remove it")
    if parts.scheme == "http" and host and not _is_loopback(host) and not allow_plain_http:
        errors.append(f"{label}: field 'url' uses plain http to {host}: hashed emails and the token would travel "
                      "unencrypted; use https (or set allow_plain_http: true for a relay on a trusted network)")


def _is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_auth(auth: Any, label: str, errors: list[str]) -> None:
    if auth is None:
        return
    if not isinstance(auth, dict):
        errors.append(f"{label}: field 'auth' must be a mapping with {', '.join(AUTH_FIELDS)}")
        return
    for key in auth:
        if key not in AUTH_FIELDS:
            errors.append(f"{label}: field 'auth' has unknown key {key!r}; allowed: {', '.join(AUTH_FIELDS)}")
    if not isinstance(auth.get("token_env"), str) or not re.fullmatch(SECRET_ENV_RE, auth["token_env"]):
        errors.append(f"{label}: field 'auth.token_env' must name an environment variable C360_DEST_<NAME> "
                      "(upper case, digits, _) that holds the token; the token itself never goes in this file")
    header = auth.get("header", "Authorization")
    if not isinstance(header, str) or not HEADER_RE.match(header):
        errors.append(f"{label}: field 'auth.header' must be an HTTP header name, e.g. Authorization")
    scheme = auth.get("scheme", "Bearer")
    if scheme is not None and (not isinstance(scheme, str) or (scheme and not SCHEME_RE.match(scheme))):
        errors.append(f"{label}: field 'auth.scheme' must be a word such as Bearer, or empty for the bare token")


def check_positive_number(value: Any, field: str, label: str, errors: list[str]) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0):
        errors.append(f"{label}: field {field!r} must be a positive number of seconds")
