"""Export crash points (issue #13, Deliver 11): `c360 segments export` killed by SIGKILL while it writes segment
files, just before the manifest and in the middle of the manifest write. Readers start from `dt=D/manifest.json`
(docs/exports.md), so after each crash they must still see the previous manifest with every file matching its
sha256, and a rerun must publish a complete manifest and remove what the crash left.

The crash is real (a child process killed with SIGKILL: no `except` or `finally` runs); the in-process variant,
an exception at the n-th write, is tests/test_exports.py::test_failure_mid_export_keeps_previous_manifest.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import yaml

from c360.marketing.exports import export_segments, read_manifest, verify_export
from c360.storage import LocalStorage
from tests.reliability._crash_export import CRASH_POINTS
from tests.test_exports import D2, SEGMENTS, build_warehouse, file_key, read_csv

pytestmark = pytest.mark.reliability

ROOT = Path(__file__).resolve().parents[2]
DATE_DIR = f"dt={D2.isoformat()}"


def export_cli(segments_file: Path, crash_at: str | None = None) -> subprocess.CompletedProcess:
    """`c360 segments export` for D2 in a child process (environment from c360_env), optionally crashing."""
    args = ["segments", "--file", str(segments_file), "export", "--date", D2.isoformat()]
    cmd = ([sys.executable, "-m", "tests.reliability._crash_export", crash_at, "--", *args] if crash_at
           else [sys.executable, "-m", "c360.cli", *args])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def published_bytes(storage: LocalStorage, manifest: dict) -> dict[str, bytes]:
    """Every file the manifest names, by its path under dt=D/."""
    return {f["path"]: storage.read_bytes(f"{DATE_DIR}/{f['path']}")
            for entry in manifest["segments"].values() for f in entry["files"].values()}


@pytest.fixture
def published(c360_env, tmp_path):
    """A warehouse whose D2 export is published once; then its scores change, so a new export would differ."""
    build_warehouse(c360_env.warehouse_path)
    segments_file = tmp_path / "segments.yml"
    segments_file.write_text(yaml.safe_dump({"segments": [s.as_dict() for s in SEGMENTS]}))
    good = export_segments(D2, c360_env, segments=SEGMENTS)
    storage = LocalStorage(c360_env.export_uri)
    before = {"manifest": storage.read_bytes(f"{DATE_DIR}/manifest.json"), "files": published_bytes(storage, good)}
    with duckdb.connect(str(c360_env.warehouse_path)) as con:
        con.execute("UPDATE marts.segment_members SET churn_probability = 0.9")
    return c360_env, segments_file, storage, good, before


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_export_killed_mid_publish_leaves_previous_manifest_valid_and_rerun_publishes(published, point):
    settings, segments_file, storage, good, before = published

    crashed = export_cli(segments_file, crash_at=point)
    assert crashed.returncode == -signal.SIGKILL, f"the export was not killed at {point}:\n{crashed.stderr[-3000:]}"

    # Readers still see the previous manifest, byte for byte, and every file it names matches its sha256/rows.
    assert storage.read_bytes(f"{DATE_DIR}/manifest.json") == before["manifest"]
    assert read_manifest(storage, D2) == good
    assert verify_export(D2, settings) == good
    assert published_bytes(storage, good) == before["files"]
    # The crash really happened where intended: it left unreferenced debris next to the published export.
    debris = {p.relative_to(storage.root / DATE_DIR).as_posix() for p in (storage.root / DATE_DIR).rglob("*")
              if p.is_file()} - set(before["files"]) - {"manifest.json"}
    assert debris, f"a SIGKILL at {point} left nothing behind: the crash point was not reached"
    if point == "manifest":
        assert any(d.startswith(".tmp-") and "/" not in d for d in debris)  # the torn manifest, never renamed
    else:
        assert any(d.startswith("_tmp-") for d in debris)  # the staging folder of the killed run

    rerun = export_cli(segments_file)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    new = read_manifest(storage, D2)
    assert new["export_id"] != good["export_id"] and new["previous_export_id"] == good["export_id"]
    assert verify_export(D2, settings) == new  # complete: every segment, every file matching its sha256 and rows
    assert set(new["segments"]) == {s.name for s in SEGMENTS}
    assert {k for e in new["segments"].values() for k in e["files"]} == {"csv", "parquet", "entered", "exited"}
    # the rerun exported the current warehouse (the killed run's half files were not reused) and lost no row
    loyal = read_csv(storage, file_key(new, "loyal", "csv"))
    assert [r["customer_id"] for r in loyal] == ["c1", "c4"]
    assert {float(r["churn_probability"]) for r in loyal} == {0.9}
    assert new["segments"]["loyal"]["rows"] == good["segments"]["loyal"]["rows"] == 2
    # What the crash left is gone: only the new run folder and the previous one (a reader may still be
    # downloading it) remain; a torn manifest temp file is never read (readers open manifest.json by name).
    assert storage.list_dirs(DATE_DIR) == sorted([f"run={good['export_id']}", f"run={new['export_id']}"])
    assert published_bytes(storage, good) == before["files"]
