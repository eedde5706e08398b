"""What is in the landing zone: partitions, which files a run must load, and waiting for a partition to land."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import PurePosixPath

from c360.ingest.contract import ENTITIES, JSON_FORMATS, TRACKING_VENDORS, TSV_FORMATS, Entity
from c360.ingest.readers import file_format, tracking_vendor
from c360.storage import Storage, StoredFile

log = logging.getLogger(__name__)


class LandingPartitionMissing(RuntimeError):
    """The required partition for a date has not landed."""

    @classmethod
    def for_entity(cls, storage: Storage, entity: Entity, day: date, waited: float | None = None) -> LandingPartitionMissing:
        latest = latest_partition(storage, entity.name)
        waited_txt = f" after waiting {waited:.0f} s" if waited is not None else ""
        return cls(
            f"No {entity.name} files under {storage.uri_of(f'{entity.name}/dt={day.isoformat()}/')}{waited_txt}. "
            f"The extract for {day} has not landed (latest {entity.name} partition: "
            f"{latest.isoformat() if latest else 'none'}). Check the upstream export, or run for a landed date "
            f"(make nightly DATE=YYYY-MM-DD). See docs/landing_contract.md."
        )


@dataclass
class FilePlan:
    current: list[StoredFile]  # files under dt=run_date: always (re)loaded
    catch_up: list[StoredFile]  # earlier files never loaded, or changed since they were loaded
    ignored: list[StoredFile]  # temporary names (`_`/`.`), files in sub-folders of a partition
    # files directly in a partition whose type the entity does not read (x.csv.bz2, x.parquet.gz, notes.txt):
    # never skipped silently, ingestion fails naming them (their rows would be lost without a word)
    unsupported: list[StoredFile] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (key, why): symbolic links, never read
    present: set[str] = field(default_factory=set)  # keys of every data file found, loaded or not
    days: set[date] = field(default_factory=set)  # the dt= partitions that exist, up to run_date
    # the partition folders that exist, up to run_date: "<entity>/dt=D" or "tracking/<vendor>/dt=D"
    folders: set[str] = field(default_factory=set)


def sources(entity: Entity) -> list[str]:
    """The landing folders of an entity: its own, and for tracking one per vendor (tracking/<vendor>/)."""
    if entity.name == "tracking":
        return [entity.name, *(f"tracking/{v}" for v in TRACKING_VENDORS)]
    return [entity.name]


def partition_folder(key: str) -> str:
    """The partition folder of a file key: `tracking/segment/dt=2026-01-01/a.jsonl` -> `tracking/segment/dt=2026-01-01`."""
    parts = PurePosixPath(key).parts
    for i, part in enumerate(parts):
        if part.startswith("dt="):
            return "/".join(parts[: i + 1])
    raise ValueError(f"{key}: not inside a dt=YYYY-MM-DD folder")


def partitions(storage: Storage, entity_name: str) -> list[date]:
    """The dt= partitions of a landing folder (an entity, or tracking/<vendor>)."""
    out = []
    for name in storage.list_dirs(entity_name):
        if name.startswith("dt="):
            try:
                out.append(date.fromisoformat(name[3:]))
            except ValueError:
                log.warning("%s/%s: not a dt=YYYY-MM-DD folder, ignored", entity_name, name)
        elif entity_name == "tracking" and name in TRACKING_VENDORS:
            continue  # a vendor's folder, planned on its own (sources())
        elif entity_name == "tracking":
            log.warning("tracking/%s: neither a dt=YYYY-MM-DD folder nor a known vendor (%s), ignored",
                        name, ", ".join(TRACKING_VENDORS))
    return sorted(out)


def latest_partition(storage: Storage, entity_name: str = "transactions") -> date | None:
    parts = partitions(storage, entity_name)
    return parts[-1] if parts else None


def _formats(entity: Entity, key: str) -> tuple[str, ...]:
    vendor = tracking_vendor(key)
    if vendor == "snowplow":
        return TSV_FORMATS + JSON_FORMATS  # enriched TSV, or the same events as JSON objects
    if vendor:
        return JSON_FORMATS
    return entity.formats


def _is_hidden(f: StoredFile) -> bool:
    """A temporary or marker name (`_SUCCESS`, `.part-0.csv.crc`, `_part-0.csv` being written): never read."""
    return PurePosixPath(f.key).name.startswith(("_", "."))


def _is_data_file(entity: Entity, f: StoredFile) -> bool:
    return not _is_hidden(f) and file_format(f.key) in _formats(entity, f.key)


# compressions a file name may end with that ingestion does not read (only gzip is, and only on text formats)
OTHER_COMPRESSIONS = (".bz2", ".zip", ".xz", ".zst", ".zstd", ".lz4", ".lzma", ".7z", ".br", ".snappy", ".tar",
                      ".tgz", ".z")


def unsupported_reason(entity: Entity, key: str) -> str:
    """Why a file directly in one of the entity's partitions cannot be read, and what to land instead."""
    name = PurePosixPath(key).name.lower()
    accepted = _formats(entity, key)
    instead = f"re-land it as {', '.join(accepted[:-1])} or {accepted[-1]}" if len(accepted) > 1 else \
        f"re-land it as {accepted[0]}"
    suffix = "".join(PurePosixPath(name).suffixes[-2:]) or "(no extension)"
    if name.endswith(OTHER_COMPRESSIONS):
        why = f"compressed as {PurePosixPath(name).suffix}, which ingestion does not read (gzip only)"
    elif name.endswith(".parquet.gz"):
        why = "a gzipped Parquet file, which ingestion does not read (Parquet compresses inside the file)"
    elif file_format(key):
        why = f"a {file_format(key)} file, which {'this folder' if tracking_vendor(key) else entity.name} does not take"
    else:
        why = f"unsupported file type {suffix}"
    return f"{why}; {instead}"


def _in_subfolder(f: StoredFile, prefix: str) -> bool:
    # <source>/dt=<day>/<name>: anything deeper sits in a sub-folder of the partition, which is not read
    return str(PurePosixPath(f.key).parent) != prefix.rstrip("/")


def plan_files(storage: Storage, entity: Entity, run_date: date, loaded: dict[str, str]) -> FilePlan:
    """Files to load for run_date. `loaded` maps a file's key (relative to the landing root) to the version that was loaded.

    Only the files directly inside dt=<day>/ are read: sub-folders are skipped with a warning, and symbolic links
    (to files or folders) are rejected with a warning and listed in `rejected`, never followed. Files of a type
    the entity does not read are listed in `unsupported`: ingestion refuses to run past them.
    """
    plan = FilePlan([], [], [])
    # by date first, so that a catch-up over several folders loads (and picks the first of duplicates) in date order
    for day, src in sorted((d, s) for s in sources(entity) for d in partitions(storage, s)):
        if day > run_date:
            continue
        plan.days.add(day)
        prefix = f"{src}/dt={day.isoformat()}/"
        plan.folders.add(prefix[:-1])
        for key, why in storage.rejected(prefix):
            log.warning("%s: %s: rejected, not read. Land the file itself in %s.",
                        storage.uri_of(key), why, storage.uri_of(prefix))
            plan.rejected.append((key, why))
        warned_dirs = set()
        for f in storage.list(prefix):
            if _in_subfolder(f, prefix):
                sub = "/".join(PurePosixPath(f.key).parts[: len(PurePosixPath(prefix).parts) + 1])
                if sub not in warned_dirs:
                    warned_dirs.add(sub)
                    log.warning("%s/: sub-folder of a partition, not read (only files directly in %s are loaded)",
                                storage.uri_of(sub), prefix)
                plan.ignored.append(f)
            elif _is_hidden(f):
                plan.ignored.append(f)
            elif not _is_data_file(entity, f):
                plan.unsupported.append(f)
            elif day == run_date:
                plan.present.add(f.key)
                plan.current.append(f)
            else:
                plan.present.add(f.key)
                if loaded.get(f.key) != f.version:
                    plan.catch_up.append(f)
    return plan


def partition_ready(storage: Storage, entity_name: str, day: date) -> bool:
    """Has anything landed directly in entity/dt=day/ (not a temporary `_`/`.` name)? A file of a type the entity
    does not read counts: waiting would not change it, and ingestion then fails naming it."""
    prefix = f"{entity_name}/dt={day.isoformat()}/"
    return any(not _is_hidden(f) and not _in_subfolder(f, prefix) for f in storage.list(prefix))


def wait_for_partition(storage: Storage, entity_name: str, day: date, timeout: float, poke: float) -> None:
    """Block until entity's dt=day partition has a data file, or raise LandingPartitionMissing after timeout."""
    started = time.monotonic()
    while not partition_ready(storage, entity_name, day):
        waited = time.monotonic() - started
        if waited >= timeout:
            raise LandingPartitionMissing.for_entity(storage, ENTITIES[entity_name], day, waited)
        log.info("Waiting for %s (%.0f/%.0f s)", storage.uri_of(f"{entity_name}/dt={day}/"), waited, timeout)
        time.sleep(min(poke, max(timeout - waited, 0.1)))
