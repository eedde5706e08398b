"""The HTTP JSON destination: POSTs each batch of a segment's changes as one JSON document (docs/destinations.md).

Request: `POST <url>`, `Content-Type: application/json`, `Idempotency-Key: <batch key>`, the auth header, and

    {"destination": "crm", "segment": "win_back", "as_of_date": "2025-06-02", "batch": 3,
     "idempotency_key": "<batch key>", "match_key_type": "email_sha256",
     "members": [{"idempotency_key": "...", "match_key": "<sha256 of the normalised email>", "change": "entered"}]}

Any 2xx acknowledges the whole batch. 429 (honouring Retry-After), 408, 5xx, timeouts and connection errors are
retried with exponential backoff and jitter for at most the retry budget; any other answer (400, 401, 403, 404,
422, a redirect...) stops the sync at once: retrying cannot fix it.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import requests

from c360.config import Settings
from c360.marketing.activation.destinations import (
    Ack,
    Batch,
    Destination,
    DestinationConfig,
    RetryPolicy,
    SyncError,
    check_auth,
    check_http_url,
    check_positive_number,
    retry_after_seconds,
)

log = logging.getLogger(__name__)

OPTION_FIELDS = ("url", "auth", "timeout_seconds", "max_retry_seconds", "allow_plain_http")
RETRYABLE_STATUS = frozenset({408, 429})
USER_AGENT = "c360-sync/1"


class HttpJsonDestination(Destination):
    def __init__(self, config: DestinationConfig, settings: Settings, *, sleep=time.sleep, clock=time.monotonic):
        super().__init__(config, settings)
        opts = config.options
        self.url: str = opts["url"]
        self.timeout = float(opts.get("timeout_seconds") or settings.sync_timeout_seconds)
        self.policy = RetryPolicy(base_seconds=settings.sync_backoff_base_seconds,
                                  max_seconds=settings.sync_backoff_max_seconds,
                                  budget_seconds=float(opts.get("max_retry_seconds") or settings.sync_max_retry_seconds))
        self._sleep, self._clock = sleep, clock
        self._headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        auth = opts.get("auth")
        if auth:
            # Read now, when the sync starts: a missing variable fails before anything is sent.
            token = settings.secret(auth["token_env"]).reveal()
            scheme = auth.get("scheme", "Bearer")
            self._headers[auth.get("header", "Authorization")] = f"{scheme} {token}" if scheme else token
        self._session = requests.Session()
        # Never take the token to another host: requests would follow a redirect with our headers.
        self._session.max_redirects = 0
        self._session.trust_env = False  # no ~/.netrc credentials or proxy variables decide where data goes

    @classmethod
    def check_options(cls, options: dict[str, Any], label: str, errors: list[str]) -> None:
        allow_plain = options.get("allow_plain_http", False)
        if not isinstance(allow_plain, bool):
            errors.append(f"{label}: field 'allow_plain_http' must be true or false")
            allow_plain = False
        check_http_url(options.get("url"), allow_plain, label, errors)
        check_auth(options.get("auth"), label, errors)
        check_positive_number(options.get("timeout_seconds"), "timeout_seconds", label, errors)
        check_positive_number(options.get("max_retry_seconds"), "max_retry_seconds", label, errors)

    def payload(self, batch: Batch) -> bytes:
        return json.dumps({
            "destination": batch.destination,
            "segment": batch.segment,
            "as_of_date": batch.as_of_date.isoformat(),
            "batch": batch.number,
            "idempotency_key": batch.idempotency_key,
            "match_key_type": "email_sha256",
            "members": [{"idempotency_key": m.idempotency_key, "match_key": m.match_key, "change": m.change}
                        for m in batch.members],
        }, separators=(",", ":")).encode("utf-8")

    def send(self, batch: Batch) -> Ack:
        body = self.payload(batch)
        headers = {**self._headers, "Idempotency-Key": batch.idempotency_key}
        started = self._clock()
        attempt = 0
        while True:
            attempt += 1
            wait: float | None = None
            try:
                resp = self._session.post(self.url, data=body, headers=headers, timeout=self.timeout,
                                          allow_redirects=False)
            except (requests.ConnectionError, requests.Timeout) as exc:
                # requests' message can be long (nested urllib3 reasons): the class and first line say enough
                problem = f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:200]}"
            else:
                status = resp.status_code
                text = resp.text[:200]  # reads the body: the connection can be reused
                if 200 <= status < 300:
                    return Ack(status=status, attempts=attempt)
                problem = f"HTTP {status} {resp.reason or ''}".strip() + (f": {text}" if text else "")
                if status in RETRYABLE_STATUS or status >= 500:
                    wait = retry_after_seconds(resp.headers.get("Retry-After"))
                else:
                    raise SyncError(
                        f"{self.url} refused {batch.label()}: {problem}. Not retried (a {status} does not go away "
                        "by itself): check the destination's URL, token and payload format (docs/destinations.md), "
                        "then rerun `c360 sync` for the date; acknowledged batches are not sent again.")
            if wait is None:
                wait = self.policy.backoff(attempt)
            elapsed = self._clock() - started
            if elapsed + wait > self.policy.budget_seconds:
                raise SyncError(
                    f"{self.url} did not acknowledge {batch.label()} after {attempt} attempt(s) in {elapsed:.1f} s "
                    f"(retry budget {self.policy.budget_seconds:g} s; next wait would be {wait:.1f} s); last: "
                    f"{problem}. Rerun `c360 sync` for the date once the destination is back: acknowledged batches "
                    "are not sent again (C360_SYNC_MAX_RETRY_SECONDS sets the budget).")
            log.warning("%s: %s; retry %d in %.2f s", batch.label(), problem, attempt, wait)
            self._sleep(wait)

    def close(self) -> None:
        self._session.close()
