"""Where the registry keeps its objects: a local folder or an S3 bucket, behind one interface.

Both backends offer the same few operations on keys (``name/v0001/card.json``), and the one
that makes the registry safe: `Store.put_new` writes an object only if no object has that key
(locally a hard link of a complete temporary file, which fails if the name exists; on S3 a
conditional write, ``IfNoneMatch='*'``). Objects are never replaced, only added.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Protocol

from pipeline.atomic import public_file
from pipeline.errors import DataError
from pipeline.storage import is_s3, s3_client, split_s3

log = logging.getLogger(__name__)


class RegistryUnavailable(RuntimeError):
    """The registry's storage failed (server down, network): retrying later can succeed."""


class Store(Protocol):
    uri: str  # the registry root, for messages: a folder or s3://bucket/prefix

    def put_new(self, key: str, source: bytes | Path) -> bool:
        """Write `source` (bytes or a file) at `key` unless an object is there: False then."""
        ...

    def read(self, key: str) -> bytes:
        """The object at `key`; DataError naming it when it does not exist."""
        ...

    def download(self, key: str, dest: Path) -> None: ...

    def keys(self, prefix: str) -> list[str]:
        """Every key under ``prefix/``, sorted."""
        ...

    def delete(self, key: str) -> None: ...


def _missing(uri: str, key: str) -> DataError:
    return DataError(f"{uri}/{key}: not found in the registry; `cellseg models list` shows it")


class LocalStore:
    """A registry in a local folder (created with the user's umask, readable by a model
    server running as another user when the umask allows it)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.uri = str(self.root)

    def put_new(self, key: str, source: bytes | Path) -> bool:
        final = self.root / key
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".put-", dir=final.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                if isinstance(source, bytes):
                    fh.write(source)
                else:
                    with open(source, "rb") as src:
                        while chunk := src.read(1 << 20):
                            fh.write(chunk)
                fh.flush()
                os.fsync(fh.fileno())
            public_file(Path(tmp))  # mkstemp's 0600: a model server may be another user
            try:  # a link never replaces an existing name: the exclusive, atomic publish
                os.link(tmp, final)
            except FileExistsError:
                return False
            return True
        finally:
            os.unlink(tmp)

    def read(self, key: str) -> bytes:
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError as exc:
            raise _missing(self.uri, key) from exc

    def download(self, key: str, dest: Path) -> None:
        dest.write_bytes(self.read(key))

    def keys(self, prefix: str) -> list[str]:
        base = self.root / prefix
        if not base.is_dir():
            return []
        return sorted(
            str(p.relative_to(self.root))
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".put-")
        )

    def delete(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)


_CONFLICT = {"PreconditionFailed", "412", "ConditionalRequestConflict"}


class S3Store:
    """A registry under ``s3://bucket/prefix`` on any S3 endpoint (boto3: credentials from
    the environment or AWS files; the endpoint from config or ``$AWS_ENDPOINT_URL``)."""

    def __init__(self, uri: str, endpoint_url: str | None = None) -> None:
        from botocore.config import Config

        self.uri = uri.rstrip("/")
        self.bucket, self.prefix = split_s3(uri, "registry.uri")
        config = Config(connect_timeout=10, read_timeout=60, retries={"max_attempts": 3})
        self.client = s3_client(endpoint_url, config)
        self._bucket_checked = False

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, what: str, func, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return func(**kwargs)
        except ClientError:
            raise
        except BotoCoreError as exc:  # connection refused, timeouts: the server, not the data
            raise RegistryUnavailable(
                f"{self.uri}: {what} failed ({exc}); the S3 server is unreachable. Nothing "
                "was published; retry when it is back"
            ) from exc

    def _ensure_bucket(self) -> None:
        from botocore.exceptions import ClientError

        if self._bucket_checked:
            return
        try:
            self._call("head_bucket", self.client.head_bucket, Bucket=self.bucket)
        except ClientError as exc:
            if exc.response["Error"]["Code"] not in ("404", "NoSuchBucket"):
                raise
            log.info("creating bucket %s for the registry", self.bucket)
            try:
                self._call("create_bucket", self.client.create_bucket, Bucket=self.bucket)
            except ClientError as race:  # another process created it a moment ago: fine
                if race.response["Error"]["Code"] != "BucketAlreadyOwnedByYou":
                    raise
        self._bucket_checked = True

    def put_new(self, key: str, source: bytes | Path) -> bool:
        from botocore.exceptions import ClientError

        self._ensure_bucket()
        body = source if isinstance(source, bytes) else Path(source).read_bytes()
        try:
            self._call(
                f"writing {key}",
                self.client.put_object,
                Bucket=self.bucket,
                Key=self._key(key),
                Body=body,
                IfNoneMatch="*",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] in _CONFLICT:
                return False
            raise
        return True

    def read(self, key: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            obj = self._call(
                f"reading {key}", self.client.get_object, Bucket=self.bucket, Key=self._key(key)
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404", "NoSuchBucket"):
                raise _missing(self.uri, key) from exc
            raise
        return obj["Body"].read()

    def download(self, key: str, dest: Path) -> None:
        dest.write_bytes(self.read(key))

    def keys(self, prefix: str) -> list[str]:
        from botocore.exceptions import ClientError

        def listing() -> list[str]:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._key(prefix).rstrip("/") + "/"
            )
            return [o["Key"] for page in pages for o in page.get("Contents", [])]

        try:
            found = self._call(f"listing {prefix}", listing)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "NoSuchBucket":
                return []
            raise
        strip = len(self.prefix) + 1 if self.prefix else 0
        return sorted(k[strip:] for k in found)

    def delete(self, key: str) -> None:
        self._call(
            f"deleting {key}", self.client.delete_object, Bucket=self.bucket, Key=self._key(key)
        )


def open_store(uri: str, endpoint_url: str | None = None) -> Store:
    """The store for a registry root: ``s3://bucket/prefix`` or a local folder."""
    return S3Store(uri, endpoint_url) if is_s3(uri) else LocalStore(uri)
