"""`c360 ui`: serve the segments page on 127.0.0.1 (docs/ui.md)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)

HOST = "127.0.0.1"  # never another interface: the page shows customer data and writes segments.yml


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=None,
                   help="port on 127.0.0.1 (default: C360_UI_PORT, 8050; 0 picks a free one and prints it)")
    p.add_argument("--segments-file", type=Path, default=None, help="segments file (default: segments.yml)")


def run(args: argparse.Namespace) -> int:
    import socket

    import uvicorn

    from c360.config import get_settings
    from c360.marketing.ui.app import create_app

    settings = get_settings()
    port = settings.ui_port if args.port is None else args.port
    # Bind here, so port 0 resolves to a real port that can be printed before uvicorn starts serving on it.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
    except OSError as exc:
        log.error("cannot listen on %s:%s (%s): choose another port with --port or C360_UI_PORT", HOST, port, exc)
        return 1
    port = sock.getsockname()[1]
    print(f"Segments page on http://{HOST}:{port}/ (Ctrl-C stops it)", flush=True)
    server = uvicorn.Server(uvicorn.Config(create_app(settings, args.segments_file), log_level="warning"))
    server.run(sockets=[sock])
    return 0
