"""Run `c360 segments export` and die by SIGKILL at one point of the publish protocol (test harness, issue #13).

    python -m tests.reliability._crash_export POINT -- <c360 arguments>

A SIGKILL runs no `except`/`finally`, so the files stay exactly as the crash leaves them; that is the case the
in-process fault tests (tests/test_exports.py, an exception at the n-th write) cannot show. POINT is one of
CRASH_POINTS. Only the storage write is replaced; everything else is the real export.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile

from c360.storage import LocalStorage

CRASH_POINTS = ("staging", "publishing", "before_manifest", "manifest")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _die_mid_write(storage: LocalStorage, key: str, data: bytes) -> None:
    """What a kill during LocalStorage.write_bytes leaves: its hidden temp file with part of the bytes, no rename."""
    dest = storage._path(key)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, _ = tempfile.mkstemp(prefix=".tmp-", dir=dest.parent)
    os.write(fd, data[: len(data) // 2])
    os.fsync(fd)
    _die()


def install(point: str) -> None:
    if point not in CRASH_POINTS:
        raise SystemExit(f"unknown crash point {point!r}; one of {CRASH_POINTS}")
    real_write = LocalStorage.write_bytes
    staged: list[str] = []
    published: list[str] = []

    def write_bytes(self, key, data):
        parts = key.split("/")  # dt=D/<folder>/<file> or dt=D/manifest.json
        folder, name = (parts[1] if len(parts) > 2 else ""), parts[-1]
        if folder.startswith("_tmp-"):
            staged.append(name)
            if point == "staging" and len(staged) == 3:  # two whole files staged, the third torn
                _die_mid_write(self, key, data)
        elif folder.startswith("run="):
            published.append(name)
            if point == "publishing" and len(published) == 3:  # two files in the run folder, the third torn
                _die_mid_write(self, key, data)
        elif name == "manifest.json":
            if point == "before_manifest":  # every file staged, published and verified; no manifest byte yet
                _die()
            if point == "manifest":
                _die_mid_write(self, key, data)
        return real_write(self, key, data)

    LocalStorage.write_bytes = write_bytes


if __name__ == "__main__":
    from c360 import cli

    install(sys.argv[1])
    sys.exit(cli.main(sys.argv[3:] if sys.argv[2:3] == ["--"] else sys.argv[2:]))
