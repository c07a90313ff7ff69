"""S3 access shared by ingest (sources) and the model registry: URI parsing and the client.

The endpoint comes from the caller's config (``data.s3_endpoint_url``,
``registry.s3_endpoint_url``), else ``$AWS_ENDPOINT_URL``; credentials from the usual AWS
environment variables or files (boto3's chain).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from pipeline.errors import ConfigError


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def split_s3(uri: str, what: str = "uri") -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ("bucket", "some/prefix") (no slashes at the ends).

    `what` names the setting in the error, e.g. ``registry.uri``."""
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    if not is_s3(uri) or not bucket:
        raise ConfigError(f"{what}={uri!r}: expected s3://bucket/prefix")
    return bucket, prefix.strip("/")


def s3_client(endpoint_url: str | None = None, config=None):
    """A boto3 S3 client for `endpoint_url` (None: $AWS_ENDPOINT_URL, else AWS), with an
    optional ``botocore.config.Config`` (timeouts, retries)."""
    import boto3

    endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
    return boto3.client("s3", endpoint_url=endpoint, config=config)


def use_s3_connection(get_connection: Callable[[str], Any]) -> None:
    """Credentials and endpoint for this process's S3 clients from the orchestrator's connection
    named by ``$CELLSEG_S3_CONN_ID`` (login = access key, password = secret key, extra
    ``endpoint_url``), fetched with `get_connection` (e.g. Airflow's ``Connection.get``); no-op
    when the variable is unset, leaving boto3's chain (environment, AWS files)."""
    conn_id = os.environ.get("CELLSEG_S3_CONN_ID")
    if not conn_id:
        return
    conn = get_connection(conn_id)
    if conn.login:
        os.environ.update(AWS_ACCESS_KEY_ID=conn.login, AWS_SECRET_ACCESS_KEY=conn.password or "")
    if endpoint := (conn.extra_dejson or {}).get("endpoint_url"):
        os.environ["AWS_ENDPOINT_URL"] = endpoint
