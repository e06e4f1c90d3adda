"""Where a repository's objects live: a directory (file:///path) or an S3 bucket (s3://bucket/prefix).

Both stores offer the same few calls on keys such as 'config', 'data/ab/abcd...', 'index/...',
'snapshots/...', 'locks/...'. A put is atomic: a reader sees the whole object or none (a file is
written to a temporary name, fsynced, renamed and its directory fsynced; an S3 PUT is atomic).
Failures become typed errors: StoreUnreachable, DiskFull.
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from ..errors import DiskFull, StoreUnreachable
from ..fsutil import create_exclusive, fsync_dir
from ..installation import Installation, environment_only

log = logging.getLogger("controlplane.backup.store")

TMP_PREFIX = ".tmp-"
S3_KEYS = ("endpoint_url", "region", "access_key_id", "secret_access_key", "connect_timeout", "read_timeout",
           "max_attempts")


class NotFound(KeyError):
    """No object under that key."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    mtime: float


def _os_error(exc: OSError, what: str, where) -> Exception:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull(f"no space left on the device while {what} ({where})",
                        fix="Free space there (prune old backups: 'erpctl backup prune'), or point --repo "
                            "at a larger volume; nothing was published from the failed run.")
    if exc.errno in (errno.EROFS,):
        return StoreUnreachable(f"the backup store is read-only while {what} ({where})",
                                fix="Mount it read-write or choose another --repo.")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return StoreUnreachable(f"permission denied while {what} ({where})",
                                fix="Give the user that runs erpctl access to the repository directory.")
    return StoreUnreachable(f"the backup store failed while {what} ({where}): {exc.strerror or exc}",
                            fix="Check the volume that holds the repository (mounted, healthy), then run again.")


class FileStore:
    """A repository in a local (or mounted) directory."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.url = f"file://{self.root}"

    def describe(self) -> str:
        return self.url

    def _path(self, key: str) -> Path:
        return self.root / key

    def exists_root(self) -> bool:
        return self.root.is_dir()

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise NotFound(key) from None
        except OSError as exc:
            raise _os_error(exc, f"reading {key}", self.root) from None

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """`length` bytes from `start`; a negative start counts from the end (start=-n: the last n)."""
        try:
            with open(self._path(key), "rb") as f:
                if start < 0:
                    f.seek(max(0, os.fstat(f.fileno()).st_size + start))
                    return f.read()
                f.seek(start)
                return f.read(length)
        except FileNotFoundError:
            raise NotFound(key) from None
        except OSError as exc:
            raise _os_error(exc, f"reading {key}", self.root) from None

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        tmp = path.with_name(f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{path.name}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                view = memoryview(data)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            fsync_dir(path.parent)
        except OSError as exc:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            raise _os_error(exc, f"writing {key}", self.root) from None

    def put_new(self, key: str, data: bytes) -> bool:
        """Create `key` atomically only if it does not exist yet (False if it did)."""
        path = self._path(key)
        try:
            return create_exclusive(path, data, tmp_name=f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{path.name}")
        except OSError as exc:
            raise _os_error(exc, f"writing {key}", self.root) from None

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink()
            fsync_dir(self._path(key).parent)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise _os_error(exc, f"deleting {key}", self.root) from None

    def list(self, prefix: str) -> list[ObjectInfo]:
        """Objects whose key starts with `prefix` (a directory such as 'data/'), temporaries excluded."""
        base = self._path(prefix.rstrip("/"))
        out = []
        try:
            for dirpath, _dirs, files in os.walk(base):
                for name in files:
                    p = Path(dirpath) / name
                    try:
                        st = p.stat()
                    except FileNotFoundError:
                        continue
                    key = p.relative_to(self.root).as_posix()
                    if name.startswith(TMP_PREFIX):
                        continue
                    out.append(ObjectInfo(key, st.st_size, st.st_mtime))
        except OSError as exc:
            raise _os_error(exc, f"listing {prefix}", self.root) from None
        return sorted(out, key=lambda o: o.key)

    def temporaries(self) -> list[ObjectInfo]:
        """Temporary files left by killed writers (with the writer's pid in the name)."""
        out = []
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                if name.startswith(TMP_PREFIX):
                    p = Path(dirpath) / name
                    try:
                        out.append(ObjectInfo(p.relative_to(self.root).as_posix(), p.stat().st_size,
                                              p.stat().st_mtime))
                    except FileNotFoundError:
                        pass
        return out

    def remove_temporary(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            pass


def s3_settings(data_dir: Path | None) -> dict:
    """S3 settings of the installation: environment, then erpctl.toml [backup.s3], then the data
    directory's backup.json ("s3": {...}), then the defaults (controlplane/installation.py)."""
    inst = Installation.open(data_dir, strict=False) if data_dir is not None else environment_only()
    return {key: inst.get("s3_" + key) for key in S3_KEYS}


class S3Store:
    """A repository under a prefix of an S3 bucket (boto3: AWS, MinIO, moto's server...)."""

    def __init__(self, bucket: str, prefix: str, settings: dict):
        import boto3  # loaded for an S3 repository only: ~400 ms of start-up (python -X importtime)
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.settings = settings
        kw = {}
        if settings.get("access_key_id") and settings.get("secret_access_key"):
            kw = {"aws_access_key_id": settings["access_key_id"],
                  "aws_secret_access_key": settings["secret_access_key"]}
        self.client = boto3.session.Session().client(
            "s3", endpoint_url=settings.get("endpoint_url"), region_name=settings.get("region"),
            config=Config(connect_timeout=settings["connect_timeout"], read_timeout=settings["read_timeout"],
                          retries={"max_attempts": settings["max_attempts"], "mode": "standard"},
                          s3={"addressing_style": "path"} if settings.get("endpoint_url") else None),
            **kw)

    def describe(self) -> str:
        return self.url + (f" at {self.settings['endpoint_url']}" if self.settings.get("endpoint_url") else "")

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _error(self, exc: Exception, what: str) -> Exception:
        from botocore.exceptions import ClientError, NoCredentialsError

        where = self.describe()
        if isinstance(exc, NoCredentialsError):
            return StoreUnreachable(f"no S3 credentials while {what} ({where})",
                                    fix="Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or an AWS profile), "
                                        "or put them in erpctl.toml [backup.s3].")
        if isinstance(exc, ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "NoSuchBucket":
                return StoreUnreachable(f"the S3 bucket {self.bucket!r} does not exist ({where})",
                                        fix="Create the bucket, or correct --repo / ERPCTL_BACKUP_REPO.")
            if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
                return StoreUnreachable(f"S3 refused access while {what} ({where}): {code}",
                                        fix="Check the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) and "
                                            "the bucket policy.")
            if code in ("EntityTooLarge", "QuotaExceeded"):
                return DiskFull(f"the S3 store refused the object while {what} ({where}): {code}",
                                fix="Raise the quota or prune old backups.")
            return StoreUnreachable(f"S3 error while {what} ({where}): {code} {exc}",
                                    fix="Check the S3 service and endpoint, then run again.")
        return StoreUnreachable(f"the S3 store at {self.settings.get('endpoint_url') or 'AWS'} did not answer "
                                f"while {what} ({exc.__class__.__name__}: {exc})",
                                fix="Check that the S3 endpoint (ERPCTL_S3_ENDPOINT_URL / AWS_ENDPOINT_URL) is up "
                                    "and reachable, then run again: uploaded packs are reused.")

    def _call(self, what: str, fn, *args, **kw):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(*args, **kw)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise NotFound(what) from None
            raise self._error(exc, what) from None
        except (BotoCoreError, OSError) as exc:
            raise self._error(exc, what) from None

    def exists_root(self) -> bool:
        self._call("checking the bucket", self.client.head_bucket, Bucket=self.bucket)
        return True

    def get(self, key: str) -> bytes:
        def fetch():
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()

        return self._call(f"reading {key}", fetch)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        rng = f"bytes={start}" if start < 0 else f"bytes={start}-{start + length - 1}"

        def fetch():
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key), Range=rng)["Body"].read()

        return self._call(f"reading {key}", fetch)

    def put(self, key: str, data: bytes) -> None:
        self._call(f"writing {key}", self.client.put_object, Bucket=self.bucket, Key=self._key(key), Body=data)

    def put_new(self, key: str, data: bytes) -> bool:
        """Create `key` only if absent: a conditional PUT (If-None-Match), or check-then-put where the
        service does not support it."""
        from botocore.exceptions import ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*")
            return True
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                return False
            if code not in ("NotImplemented", "501"):
                raise self._error(exc, f"writing {key}") from None
        except Exception as exc:  # noqa: BLE001 - connection errors and the like
            raise self._error(exc, f"writing {key}") from None
        try:
            self.get(key)
            return False
        except NotFound:
            self.put(key, data)
            return True

    def delete(self, key: str) -> None:
        self._call(f"deleting {key}", self.client.delete_object, Bucket=self.bucket, Key=self._key(key))

    def list(self, prefix: str) -> list[ObjectInfo]:
        out = []
        full = self._key(prefix)
        strip = len(self.prefix) + 1 if self.prefix else 0

        def pages():
            return list(self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full))

        for page in self._call(f"listing {prefix}", pages):
            for obj in page.get("Contents", []):
                out.append(ObjectInfo(obj["Key"][strip:], int(obj["Size"]), obj["LastModified"].timestamp()))
        return sorted(out, key=lambda o: o.key)

    def temporaries(self) -> list[ObjectInfo]:
        return []

    def remove_temporary(self, key: str) -> None:
        pass


def open_store(url: str, data_dir: Path | None = None):
    """A FileStore for file:///abs/path (or a plain absolute path), an S3Store for s3://bucket/prefix."""
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise StoreUnreachable(f"the repository URL {url!r} names no bucket",
                                   fix="Use s3://BUCKET/PREFIX.")
        return S3Store(parsed.netloc, unquote(parsed.path), s3_settings(data_dir))
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise StoreUnreachable(f"the repository URL {url!r} must be file:///absolute/path",
                                   fix="Use three slashes: file:///srv/backups.")
        return FileStore(Path(unquote(parsed.path)))
    if parsed.scheme == "" and url.startswith("/"):
        return FileStore(Path(url))
    raise StoreUnreachable(f"unsupported repository URL {url!r}",
                           fix="Use file:///absolute/path or s3://bucket/prefix.")
