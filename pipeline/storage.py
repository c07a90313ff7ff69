"""S3 access shared by ingest (sources) and the model registry: URI parsing and the client.

The endpoint comes from the caller's config (``data.s3_endpoint_url``,
``registry.s3_endpoint_url``), else ``$AWS_ENDPOINT_URL``; credentials from the usual AWS
environment variables or files (boto3's chain).
"""

from __future__ import annotations

import os

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
