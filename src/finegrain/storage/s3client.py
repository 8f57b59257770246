"""The MinIO client behind `finegrain.storage`: endpoint and credentials from the environment, retries.

Environment (never the config file, so credentials stay out of configs, logs and compiled pipelines):
  FINEGRAIN_S3_ENDPOINT   host:port or http(s)://host:port of the S3 server (also read: MLFLOW_S3_ENDPOINT_URL,
                          AWS_ENDPOINT_URL)
  AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY   credentials (MINIO_ACCESS_KEY / MINIO_SECRET_KEY also accepted)
  FINEGRAIN_S3_SECURE     "1"/"true" for TLS when the endpoint has no scheme (default: plain http)
  AWS_REGION              optional region (default us-east-1)
  FINEGRAIN_S3_RETRIES    how many times a transiently failing operation is retried (default: storage.retries)
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlparse

T = TypeVar("T")
log = logging.getLogger("finegrain.storage")

# S3 error codes that mean "try again later", not "you asked for something wrong".
_RETRY_S3_CODES = {
    "SlowDown",
    "InternalError",
    "ServiceUnavailable",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "XMinioServerNotInitialized",
    "OperationAborted",
}
_MISSING_S3_CODES = {"NoSuchKey", "NoSuchBucket", "NoSuchObject", "NoSuchUpload"}
DEFAULT_RETRIES = 5  # `finegrain.storage.configure(cfg.storage)` sets it from the config
_lock = threading.Lock()
_client_cache: dict[tuple, object] = {}
_known_buckets: set[tuple[str, str]] = set()


class StorageError(IOError):
    """A storage operation failed; the message names the URI."""


def endpoint(uri: str | None = None) -> tuple[str, bool]:
    """(host:port, secure) of the S3 server from the environment; error naming `uri` when unset."""
    raw = (
        os.environ.get("FINEGRAIN_S3_ENDPOINT")
        or os.environ.get("MLFLOW_S3_ENDPOINT_URL")
        or os.environ.get("AWS_ENDPOINT_URL")
    )
    if not raw:
        what = f"{uri}: " if uri else ""
        raise StorageError(
            f"{what}s3:// URI used but no S3 endpoint is set: export FINEGRAIN_S3_ENDPOINT=host:port "
            "(and AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
        )
    if "://" in raw:
        parsed = urlparse(raw)
        if not parsed.netloc:
            raise StorageError(f"FINEGRAIN_S3_ENDPOINT={raw!r}: expected host:port or http(s)://host:port")
        return parsed.netloc, parsed.scheme == "https"
    secure = os.environ.get("FINEGRAIN_S3_SECURE", "").lower() in {"1", "true", "yes"}
    return raw.rstrip("/"), secure


def client(uri: str | None = None):
    """The MinIO client for the endpoint and credentials in the environment (cached per setting)."""
    from minio import Minio
    from urllib3 import PoolManager, Retry, Timeout

    host, secure = endpoint(uri)
    access = os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("MINIO_ACCESS_KEY")
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY") or os.environ.get("MINIO_SECRET_KEY")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    key = (host, secure, access, secret, region)
    with _lock:
        if key not in _client_cache:
            # `retry()` below handles transient errors with a long enough backoff to ride out a server restart;
            # urllib3 gets no retries of its own, so a dead server is reported in seconds, not minutes, and a
            # request body is never re-sent behind our back.
            http = PoolManager(
                timeout=Timeout(connect=5.0, read=120.0),
                maxsize=16,
                retries=Retry(total=0, connect=0, read=0, redirect=3, status=0, raise_on_status=False),
            )
            _client_cache[key] = Minio(
                host, access_key=access, secret_key=secret, secure=secure, region=region, http_client=http
            )
        return _client_cache[key]


def is_missing(exc: BaseException | None) -> bool:
    """True when an exception (or the one it wraps) says the bucket/object does not exist."""
    from minio.error import S3Error

    if isinstance(exc, StorageError):
        exc = exc.__cause__
    return isinstance(exc, S3Error) and exc.code in _MISSING_S3_CODES


def is_transient(exc: BaseException) -> bool:
    """Connection refused/reset, timeouts, 5xx and throttling: worth retrying."""
    from minio.error import InvalidResponseError, S3Error, ServerError
    from urllib3.exceptions import HTTPError as Urllib3Error

    if isinstance(exc, S3Error):
        status = getattr(exc.response, "status", 0) or 0
        return exc.code in _RETRY_S3_CODES or status >= 500
    if isinstance(exc, ServerError):
        return True
    if isinstance(exc, InvalidResponseError):
        # A non-XML answer: a proxy's or a half-started server's error page; 5xx is worth another try.
        return int(getattr(exc, "_code", 0) or 0) >= 500
    return isinstance(exc, (Urllib3Error, ConnectionError, TimeoutError))


def retry(what: str, fn: Callable[[], T], retries: int | None = None) -> T:
    """Run `fn`, retrying transient failures with exponential backoff (0.5 s doubling, capped at 8 s).

    Anything else, or the last transient failure, is raised as StorageError naming `what`.
    """
    if retries is None:
        retries = int(os.environ.get("FINEGRAIN_S3_RETRIES", DEFAULT_RETRIES))
    delay = 0.5
    for attempt in range(retries + 1):
        try:
            return fn()
        except StorageError:
            raise
        except Exception as exc:
            if attempt >= retries or not is_transient(exc):
                raise StorageError(f"{what}: {type(exc).__name__}: {exc}") from exc
            log.warning("%s: %s (attempt %d/%d), retrying in %.1fs", what, exc, attempt + 1, retries, delay)
            time.sleep(delay)
            delay = min(delay * 2, 8.0)
    raise AssertionError("unreachable")


def ensure_bucket(bucket: str) -> None:
    """Create the bucket unless it exists (checked once per process and endpoint)."""
    c = client(f"s3://{bucket}")
    key = (endpoint()[0], bucket)
    if key in _known_buckets:
        return
    if not retry(f"s3://{bucket}: bucket_exists", lambda: c.bucket_exists(bucket)):
        from minio.error import S3Error

        def make() -> None:
            try:
                c.make_bucket(bucket)
            except S3Error as exc:  # another pod created it between our check and our create
                if exc.code not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                    raise

        retry(f"s3://{bucket}: make_bucket", make)
    _known_buckets.add(key)
