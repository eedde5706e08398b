"""Object storage for the landing zone and exports: a local folder or S3 (boto3), behind one small interface.

URIs are either a local path (`/data/landing`, `file:///data/landing`) or `s3://bucket/prefix`. Keys are
always relative and use `/` (e.g. `transactions/dt=2026-01-01/part-0.csv`).

Both stores are confined to their root: a key is a relative, '/'-separated path without `..`, `.` or empty parts
(anything else raises UnsafeKey), and the local store never follows a symbolic link (a link to a file or a folder
is neither listed nor read), so a landing zone cannot make the pipeline read `/etc/passwd` or another folder.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

log = logging.getLogger(__name__)


class UnsafeKey(ValueError):
    """A key that would leave the store's root (`..`, absolute, empty parts) or go through a symbolic link."""


def check_key(key: str, allow_empty: bool = False) -> str:
    """The key, if it is a plain relative path inside the root; raises UnsafeKey otherwise."""
    if key == "" and allow_empty:
        return key
    parts = key.rstrip("/").split("/")
    if key.startswith("/") or "\\" in key or "\x00" in key or any(p in ("", ".", "..") for p in parts):
        raise UnsafeKey(
            f"{key!r}: not a relative key inside the store (no leading '/', no '.', '..' or empty parts, "
            "no backslashes). Keys look like transactions/dt=2026-01-01/part-0.csv."
        )
    return key


@dataclass(frozen=True)
class StoredFile:
    key: str  # relative to the store's root, '/'-separated
    size: int
    version: str  # mtime_ns locally, ETag on S3: changes when the content is rewritten


class Storage:
    """Interface: list / read / write / delete relative keys under a root URI."""

    uri: str

    def list(self, prefix: str = "") -> list[StoredFile]:
        raise NotImplementedError

    def list_dirs(self, prefix: str) -> list[str]:
        """Names of the immediate sub-folders of prefix (e.g. the dt=... partitions)."""
        raise NotImplementedError

    def read_bytes(self, key: str) -> bytes:
        raise NotImplementedError

    def write_bytes(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    def put_file(self, local_path: Path, key: str) -> None:
        raise NotImplementedError

    def delete_prefix(self, prefix: str) -> int:
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        raise NotImplementedError

    def uri_of(self, key: str) -> str:
        return f"{self.uri.rstrip('/')}/{key}"

    @contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        """A local file path holding the object's bytes, for readers that need a path."""
        raise NotImplementedError

    def copy_prefix(self, src: str, dst: str) -> None:
        for f in self.list(src):
            self.write_bytes(dst.rstrip("/") + "/" + f.key[len(src) :].lstrip("/"), self.read_bytes(f.key))

    def is_empty(self) -> bool:
        return not self.list("")

    def rejected(self, prefix: str = "") -> list[tuple[str, str]]:
        """(key, why) of entries under prefix that list() leaves out for safety (symbolic links)."""
        return []


class LocalStorage(Storage):
    def __init__(self, root: str | Path):
        # The root itself may be reached through a link (data/landing -> /mnt/landing): it is resolved once here;
        # below it nothing is followed.
        self.root = Path(root).resolve()
        self.uri = str(self.root)

    def _path(self, key: str, allow_empty: bool = False) -> Path:
        """The path of key, refusing keys that leave the root and paths that go through a symbolic link."""
        check_key(key, allow_empty)
        path = self.root
        for part in key.rstrip("/").split("/") if key else ():
            path = path / part
            if path.is_symlink():
                raise UnsafeKey(
                    f"{self.uri_of(key)}: {path} is a symbolic link; the store never follows links. "
                    "Replace the link with the file itself (copy it into the folder)."
                )
        # belt and braces: whatever the checks above missed, a path outside the root is never used
        if not path.resolve().is_relative_to(self.root):
            raise UnsafeKey(f"{self.uri_of(key)}: resolves outside {self.root}")
        return path

    def _listing_base(self, prefix: str) -> Path | None:
        """The folder (or file) to list for prefix; None, with a warning, when it is reached through a link:
        listing a linked folder yields nothing rather than failing the whole listing."""
        try:
            return self._path(prefix, allow_empty=True)
        except UnsafeKey as exc:
            if ".." in prefix.split("/") or prefix.startswith("/"):
                raise
            log.warning("%s: not listed", exc)
            return None

    def _walk(self, base: Path) -> Iterator[tuple[Path, str | None]]:
        """(path, None) for regular files under base, (path, why) for links skipped; links are never followed."""
        for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
            d = Path(dirpath)
            for name in sorted(dirnames):
                if (d / name).is_symlink():
                    yield d / name, "symbolic link to a folder (never followed)"
            for name in sorted(filenames):
                p = d / name
                if p.is_symlink():
                    yield p, "symbolic link (never followed)"
                elif p.is_file():
                    yield p, None

    def list(self, prefix: str = "") -> list[StoredFile]:
        base = self._listing_base(prefix)
        if base is None or not base.exists():
            return []
        paths = [base] if base.is_file() else [p for p, why in self._walk(base) if why is None]
        out = []
        for p in sorted(paths):
            st = p.stat()
            out.append(StoredFile(p.relative_to(self.root).as_posix(), st.st_size, str(st.st_mtime_ns)))
        return out

    def rejected(self, prefix: str = "") -> list[tuple[str, str]]:
        base = self._listing_base(prefix)
        if base is None or not base.is_dir():
            return []
        return [(p.relative_to(self.root).as_posix(), why) for p, why in self._walk(base) if why is not None]

    def list_dirs(self, prefix: str) -> list[str]:
        base = self._listing_base(prefix)
        if base is None or not base.is_dir():
            return []
        out = []
        for p in base.iterdir():
            if p.is_symlink():
                log.warning("%s: symbolic link to a folder, not read (the store never follows links)", p)
            elif p.is_dir():
                out.append(p.name)
        return sorted(out)

    def read_bytes(self, key: str) -> bytes:
        # O_NOFOLLOW: a file swapped for a link after the checks in _path is still not followed
        fd = os.open(self._path(key), os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as fh:
            return fh.read()

    def write_bytes(self, key: str, data: bytes) -> None:
        # Write to a hidden temporary name in the same folder, then rename: readers never see half a file.
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_file(self, local_path: Path, key: str) -> None:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f".tmp-{dest.name}"
        shutil.copyfile(local_path, tmp)
        os.replace(tmp, dest)

    def delete_prefix(self, prefix: str) -> int:
        base = self._path(prefix, allow_empty=True)
        if not base.exists():
            return 0
        if base.is_file():
            base.unlink()
            return 1
        n = sum(1 for _, why in self._walk(base) if why is None)
        shutil.rmtree(base)  # removes links themselves, never their targets
        return n

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    @contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        yield self._path(key)


class StorageUnreachable(ConnectionError):
    """An S3 endpoint that did not answer (after botocore's retries), or refused the credentials or bucket: the
    message is one line naming the endpoint, the object and what to check."""


class S3Storage(Storage):
    def __init__(self, uri: str, endpoint_url: str | None = None, client=None, *, retry_mode: str | None = None,
                 max_attempts: int | None = None, connect_timeout: float | None = None):
        parsed = urlparse(uri)
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.uri = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        if client is None:
            import boto3  # imported here: local runs never pay for it
            from botocore.config import Config

            from c360.config import get_settings

            settings = get_settings()
            self.max_attempts = max_attempts or settings.s3_max_attempts
            # botocore's own retry modes: standard retries throttling, 5xx and connection errors with exponential
            # backoff; adaptive adds client-side rate limiting. total_max_attempts counts the first call.
            config = Config(retries={"mode": retry_mode or settings.s3_retry_mode,
                                     "total_max_attempts": self.max_attempts},
                            connect_timeout=connect_timeout or settings.s3_connect_timeout_seconds)
            # endpoint_url None lets boto3 use AWS_ENDPOINT_URL(_S3) or the real AWS endpoint.
            client = boto3.client("s3", endpoint_url=endpoint_url, config=config)
        else:
            self.max_attempts = max_attempts
        self.client = client

    @contextmanager
    def _calling(self, action: str, key: str = "") -> Iterator[None]:
        """Turn botocore's connection, credential and bucket errors into one StorageUnreachable line."""
        from botocore.exceptions import (
            ClientError,
            ConnectionClosedError,
            ConnectTimeoutError,
            EndpointConnectionError,
            NoCredentialsError,
            ReadTimeoutError,
        )

        endpoint = getattr(getattr(self.client, "meta", None), "endpoint_url", None) or "the default AWS endpoint"
        where = f"{action} {self.uri_of(key) if key else self.uri}"
        tries = f" after {self.max_attempts} attempt(s)" if self.max_attempts else ""
        try:
            yield
        except (EndpointConnectionError, ConnectTimeoutError, ConnectionClosedError, ReadTimeoutError) as exc:
            raise StorageUnreachable(
                f"S3 endpoint {endpoint} unreachable{tries} ({exc.__class__.__name__}) while trying to {where}: check "
                "that the object store is running and reachable from this machine, C360_S3_ENDPOINT_URL / "
                "AWS_ENDPOINT_URL, and proxy settings; C360_S3_MAX_ATTEMPTS sets the retries") from exc
        except NoCredentialsError as exc:
            raise StorageUnreachable(
                f"No credentials for S3 endpoint {endpoint} while trying to {where}: set AWS_ACCESS_KEY_ID / "
                "AWS_SECRET_ACCESS_KEY or AWS_PROFILE") from exc
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code not in ("NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise
            raise StorageUnreachable(
                f"S3 endpoint {endpoint} refused to {where} ({code}): check that bucket {self.bucket!r} exists there "
                "and that the credentials may use it") from exc

    def _key(self, key: str) -> str:
        check_key(key, allow_empty=True)
        return f"{self.prefix}/{key}".lstrip("/") if key else self.prefix

    def _rel(self, full_key: str) -> str | None:
        """The key relative to the prefix, or None for an object outside it (`prefix-other/...`) or with an odd
        name (`..`, empty parts) that no relative key could address safely."""
        if self.prefix:
            if not full_key.startswith(self.prefix + "/"):
                return None
            full_key = full_key[len(self.prefix) + 1 :]
        try:
            return check_key(full_key)
        except UnsafeKey:
            log.warning("s3://%s/%s: odd object name ('.', '..' or empty parts), not read", self.bucket, full_key)
            return None

    def list(self, prefix: str = "") -> list[StoredFile]:
        full = self._key(prefix)
        if full and not full.endswith("/") and not Path(full).suffix:
            full += "/"
        out = []
        with self._calling("list", prefix):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                for obj in page.get("Contents", []):
                    rel = self._rel(obj["Key"])
                    if rel is not None and not obj["Key"].endswith("/"):
                        out.append(StoredFile(rel, obj["Size"], obj["ETag"].strip('"')))
        return sorted(out, key=lambda f: f.key)

    def list_dirs(self, prefix: str) -> list[str]:
        full = self._key(prefix).rstrip("/") + "/"
        names = []
        with self._calling("list", prefix):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full, Delimiter="/"):
                for cp in page.get("CommonPrefixes", []):
                    names.append(cp["Prefix"][len(full) :].rstrip("/"))
        return sorted(names)

    def read_bytes(self, key: str) -> bytes:
        with self._calling("read", key):
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()

    def write_bytes(self, key: str, data: bytes) -> None:
        # A single PUT is atomic on S3: readers see the old object or the new one, never a part.
        with self._calling("write", key):
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def put_file(self, local_path: Path, key: str) -> None:
        with self._calling("upload", key):
            self.client.upload_file(str(local_path), self.bucket, self._key(key))

    def delete_prefix(self, prefix: str) -> int:
        keys = [self._key(f.key) for f in self.list(prefix)]
        with self._calling("delete", prefix):
            for i in range(0, len(keys), 1000):
                self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]]}
                )
        return len(keys)

    def exists(self, key: str) -> bool:
        with self._calling("check", key):
            resp = self.client.list_objects_v2(Bucket=self.bucket, Prefix=self._key(key), MaxKeys=1)
        return resp.get("KeyCount", 0) > 0

    @contextmanager
    def local_copy(self, key: str) -> Iterator[Path]:
        suffix = "".join(Path(key).suffixes)
        fd, tmp = tempfile.mkstemp(prefix="c360-s3-", suffix=suffix)
        os.close(fd)
        try:
            with self._calling("download", key):
                self.client.download_file(self.bucket, self._key(key), tmp)
            yield Path(tmp)
        finally:
            Path(tmp).unlink(missing_ok=True)


def open_storage(uri: str, endpoint_url: str | None = None) -> Storage:
    """Storage for a URI: s3://bucket/prefix → S3 (boto3), anything else → local folder."""
    if uri.startswith("s3://"):
        return S3Storage(uri, endpoint_url=endpoint_url)
    if uri.startswith("file://"):
        uri = urlparse(uri).path
    return LocalStorage(uri)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
