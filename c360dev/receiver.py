"""A local receiver of the HTTP JSON destination's requests: applies each member once by its idempotency key, and can
answer with injected faults. For tests, the sync benchmark and trying a destinations file without a real CRM:

    python -m c360dev.receiver --port 8765      # then url: http://127.0.0.1:8765/members

It listens on 127.0.0.1 only. `faults` is a list of answers for the next requests, one each, in order:
"429" / "429:<retry-after seconds>", any other status such as "503", "drop" (read the request, close the connection
without an answer), "slow:<seconds>" (accept, but answer only after that long) or "ok"; when the list is empty every request is accepted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    """What the receiver saw. `applied` counts each member idempotency key once, however often it arrived."""

    requests: int = 0
    accepted_batches: int = 0
    deliveries: Counter = field(default_factory=Counter)  # member key -> times received in an accepted request
    applied: dict = field(default_factory=dict)  # member key -> (segment, as_of_date, change, match_key)
    replayed: Counter = field(default_factory=Counter)  # member key -> times received after it was applied
    headers: list = field(default_factory=list)  # request headers of every request, in order
    request_times: list = field(default_factory=list)


class Receiver:
    def __init__(self, port: int = 0, faults: list[str] | None = None, on_request=None):
        self.received = Received()
        self.faults = list(faults or [])
        self.on_request = on_request  # called with (request number, parsed body) before answering
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real API: one connection for the whole sync

            def do_POST(self):  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with receiver._lock:
                    receiver.received.requests += 1
                    n = receiver.received.requests
                    receiver.received.headers.append(dict(self.headers))
                    receiver.received.request_times.append(time.monotonic())
                    fault = receiver.faults.pop(0) if receiver.faults else "ok"
                if receiver.on_request is not None:
                    receiver.on_request(n, body)
                if fault.startswith("slow:"):  # answer (and apply) only after this many seconds
                    time.sleep(float(fault.partition(":")[2]))
                    fault = "ok"
                if fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if fault != "ok":
                    status, _, retry_after = fault.partition(":")
                    self._answer(int(status), {"error": "injected"}, retry_after or None)
                    return
                self._answer(200, receiver._apply(body))

            def _answer(self, status: int, doc: dict, retry_after: str | None = None):
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if retry_after is not None:
                    self.send_header("Retry-After", retry_after)
                self.end_headers()
                # the client may have died or given up waiting (a crash or timeout test): it never sees the answer
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(data)

            def log_message(self, *args):  # quiet: tests and the benchmark read `received`
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _apply(self, body: dict) -> dict:
        applied = replayed = 0
        with self._lock:
            self.received.accepted_batches += 1
            for m in body.get("members", []):
                key = m["idempotency_key"]
                self.received.deliveries[key] += 1
                if key in self.received.applied:
                    self.received.replayed[key] += 1
                    replayed += 1
                else:
                    self.received.applied[key] = (body.get("segment"), body.get("as_of_date"), m.get("change"),
                                                  m.get("match_key"))
                    applied += 1
        return {"applied": applied, "already_applied": replayed}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/members"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=8765)
    args = p.parse_args(argv)
    with Receiver(args.port) as r:
        print(f"listening on {r.url} (Ctrl-C to stop)")
        try:
            while True:
                time.sleep(5)
                print(f"requests {r.received.requests}, members applied {len(r.received.applied)}, "
                      f"replayed {sum(r.received.replayed.values())}")
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    raise SystemExit(main())
