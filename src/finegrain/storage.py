"""Read and write URIs: local paths and `s3://bucket/key` (MinIO or any S3 server) through the `minio` client.

Environment (never the config file, so credentials stay out of configs, logs and compiled pipelines):
  FINEGRAIN_S3_ENDPOINT   host:port or http(s)://host:port of the S3 server (also read: MLFLOW_S3_ENDPOINT_URL,
                          AWS_ENDPOINT_URL)
  AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY   credentials (MINIO_ACCESS_KEY / MINIO_SECRET_KEY also accepted)
  FINEGRAIN_S3_SECURE     "1"/"true" for TLS when the endpoint has no scheme (default: plain http)
  AWS_REGION              optional region (default us-east-1)

Writes never leave a half-written file or object visible: local writes go to a temp file in the same
directory and are renamed into place; S3 objects only appear once the (multipart) upload completes.
Transient errors (connection refused/reset, timeouts, 5xx, SlowDown) are retried with exponential backoff.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlparse

T = TypeVar("T")

MULTIPART_PART_SIZE = 16 * 1024 * 1024
_RETRY_S3_CODES = {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "XMinioServerNotInitialized"}
_client_cache: dict[tuple, object] = {}


class StorageError(IOError):
    """A storage operation failed; the message names the URI."""


def is_s3(uri: str) -> bool:
    return str(uri).startswith("s3://")


def split_s3(uri: str) -> tuple[str, str]:
    """`s3://bucket/a/b` -> (`bucket`, `a/b`)."""
    if not is_s3(uri):
        raise StorageError(f"{uri}: not an s3:// URI")
    rest = str(uri)[5:]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise StorageError(f"{uri}: no bucket in URI")
    return bucket, key


def join(base: str, *parts: str) -> str:
    base = str(base)
    if is_s3(base):
        out = base.rstrip("/")
        for p in parts:
            out += "/" + str(p).strip("/")
        return out
    return str(Path(base, *parts))


def basename(uri: str) -> str:
    return str(uri).rstrip("/").rsplit("/", 1)[-1]


# --------------------------------------------------------------------------------------------- S3 client


def _endpoint() -> tuple[str, bool]:
    raw = (
        os.environ.get("FINEGRAIN_S3_ENDPOINT")
        or os.environ.get("MLFLOW_S3_ENDPOINT_URL")
        or os.environ.get("AWS_ENDPOINT_URL")
    )
    if not raw:
        raise StorageError("s3:// URI used but no endpoint is set: export FINEGRAIN_S3_ENDPOINT=host:port")
    if "://" in raw:
        parsed = urlparse(raw)
        return parsed.netloc, parsed.scheme == "https"
    secure = os.environ.get("FINEGRAIN_S3_SECURE", "").lower() in {"1", "true", "yes"}
    return raw, secure


def client():
    """The MinIO client for the endpoint and credentials in the environment (cached per setting)."""
    from minio import Minio
    from urllib3 import PoolManager, Retry, Timeout

    endpoint, secure = _endpoint()
    access = os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("MINIO_ACCESS_KEY")
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY") or os.environ.get("MINIO_SECRET_KEY")
    region = os.environ.get("AWS_REGION", "us-east-1")
    key = (endpoint, secure, access, secret, region)
    if key not in _client_cache:
        # Our own retry loop handles transient errors; urllib3's own retries are kept short so that a dead
        # server is reported within seconds rather than minutes.
        http = PoolManager(
            timeout=Timeout(connect=5.0, read=120.0),
            maxsize=16,
            retries=Retry(total=2, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
        )
        _client_cache[key] = Minio(
            endpoint, access_key=access, secret_key=secret, secure=secure, region=region, http_client=http
        )
    return _client_cache[key]


def _is_transient(exc: BaseException) -> bool:
    from minio.error import S3Error, ServerError
    from urllib3.exceptions import HTTPError as Urllib3Error

    if isinstance(exc, S3Error):
        return exc.code in _RETRY_S3_CODES
    if isinstance(exc, ServerError):
        return True
    return isinstance(exc, (Urllib3Error, ConnectionError, TimeoutError))


def _retry(what: str, fn: Callable[[], T], retries: int | None = None) -> T:
    retries = int(os.environ.get("FINEGRAIN_S3_RETRIES", "5")) if retries is None else retries
    delay = 0.5
    for attempt in range(retries + 1):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - classified below
            if attempt >= retries or not _is_transient(exc):
                raise StorageError(f"{what}: {type(exc).__name__}: {exc}") from exc
            time.sleep(delay)
            delay = min(delay * 2, 8.0)
    raise AssertionError("unreachable")


def ensure_bucket(bucket: str) -> None:
    c = client()
    if not _retry(f"s3://{bucket}: bucket_exists", lambda: c.bucket_exists(bucket)):
        _retry(f"s3://{bucket}: make_bucket", lambda: c.make_bucket(bucket))


# ------------------------------------------------------------------------------------------ operations


def read_bytes(uri: str) -> bytes:
    uri = str(uri)
    if is_s3(uri):
        bucket, key = split_s3(uri)

        def get() -> bytes:
            resp = client().get_object(bucket, key)
            try:
                return resp.read()
            finally:
                resp.close()
                resp.release_conn()

        try:
            return _retry(f"{uri}: read", get)
        except StorageError as exc:
            if _is_missing(exc.__cause__):
                raise FileNotFoundError(f"{uri}: no such object") from None
            raise
    try:
        return Path(uri).read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{uri}: no such file") from None


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def _is_missing(exc: BaseException | None) -> bool:
    from minio.error import S3Error

    return isinstance(exc, S3Error) and exc.code in {"NoSuchKey", "NoSuchBucket", "NoSuchObject"}


def write_bytes(uri: str, data: bytes) -> str:
    uri = str(uri)
    if is_s3(uri):
        if len(data) >= MULTIPART_PART_SIZE:
            with tempfile.NamedTemporaryFile() as tmp:
                tmp.write(data)
                tmp.flush()
                return upload_file(tmp.name, uri)
        bucket, key = split_s3(uri)
        ensure_bucket(bucket)
        _retry(f"{uri}: write", lambda: client().put_object(bucket, key, io.BytesIO(data), len(data)))
        return uri
    path = Path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return uri


def write_text(uri: str, text: str) -> str:
    return write_bytes(uri, text.encode("utf-8"))


def upload_file(local_path: str | Path, uri: str) -> str:
    """Copy a local file to a URI; large files go up in multipart (the object appears only when complete)."""
    uri = str(uri)
    if not is_s3(uri):
        dst = Path(uri)
        dst.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
        os.close(fd)
        try:
            shutil.copyfile(local_path, tmp)
            os.replace(tmp, dst)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return uri
    bucket, key = split_s3(uri)
    ensure_bucket(bucket)
    _retry(
        f"{uri}: upload",
        lambda: client().fput_object(bucket, key, str(local_path), part_size=MULTIPART_PART_SIZE),
    )
    return uri


def download_file(uri: str, local_path: str | Path) -> Path:
    """Copy a URI to a local file atomically (temp file + rename)."""
    uri, local_path = str(uri), Path(local_path)
    if not is_s3(uri):
        if not Path(uri).exists():
            raise FileNotFoundError(f"{uri}: no such file")
        upload_file(uri, str(local_path))
        return local_path
    bucket, key = split_s3(uri)
    local_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=local_path.parent, prefix=f".{local_path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        _retry(f"{uri}: download", lambda: client().fget_object(bucket, key, tmp))
        os.replace(tmp, local_path)
    except StorageError as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if _is_missing(exc.__cause__):
            raise FileNotFoundError(f"{uri}: no such object") from None
        raise
    return local_path


def exists(uri: str) -> bool:
    uri = str(uri)
    if not is_s3(uri):
        return Path(uri).exists()
    bucket, key = split_s3(uri)
    c = client()
    if not key:
        return _retry(f"{uri}: exists", lambda: c.bucket_exists(bucket))

    def stat() -> bool:
        try:
            c.stat_object(bucket, key)
            return True
        except Exception as exc:  # noqa: BLE001
            if _is_missing(exc):
                return False
            raise

    if _retry(f"{uri}: exists", stat):
        return True
    # A "directory" prefix exists if anything lives under it.
    return bool(list_uris(uri, recursive=True, limit=1))


def list_uris(prefix: str, recursive: bool = True, limit: int | None = None) -> list[str]:
    """Files under a prefix (full URIs, sorted). Local: files under a directory; S3: objects under a key prefix."""
    prefix = str(prefix)
    if not is_s3(prefix):
        root = Path(prefix)
        if not root.exists():
            return []
        if root.is_file():
            return [str(root)]
        it = root.rglob("*") if recursive else root.iterdir()
        files = sorted(str(p) for p in it if p.is_file() and not p.name.startswith(".") or False)
        return files[:limit] if limit else files
    bucket, key = split_s3(prefix)
    if key and not key.endswith("/"):
        key += "/"
    c = client()

    def listing() -> list[str]:
        if not c.bucket_exists(bucket):
            return []
        out = []
        for obj in c.list_objects(bucket, prefix=key or None, recursive=recursive):
            if obj.is_dir:
                continue
            out.append(f"s3://{bucket}/{obj.object_name}")
            if limit and len(out) >= limit:
                break
        return out

    # The whole listing is retried: a server restart mid-pagination must not yield a partial list.
    return sorted(_retry(f"{prefix}: list", listing))


def copy(src: str, dst: str) -> str:
    src, dst = str(src), str(dst)
    if not is_s3(src) and not is_s3(dst):
        return upload_file(src, dst)
    if is_s3(src) and is_s3(dst):
        from minio.commonconfig import CopySource

        sb, sk = split_s3(src)
        db, dk = split_s3(dst)
        ensure_bucket(db)
        try:
            _retry(f"{src} -> {dst}: copy", lambda: client().copy_object(db, dk, CopySource(sb, sk)))
            return dst
        except StorageError:
            pass  # objects over 5 GiB need compose; fall back to a streamed copy
    with tempfile.TemporaryDirectory() as tmp:
        local = download_file(src, Path(tmp) / "blob")
        return upload_file(local, dst)


def delete(uri: str) -> None:
    uri = str(uri)
    if not is_s3(uri):
        p = Path(uri)
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
        return
    bucket, key = split_s3(uri)
    _retry(f"{uri}: delete", lambda: client().remove_object(bucket, key))


def upload_dir(local_dir: str | Path, uri: str) -> list[str]:
    """Copy every file under a local directory to a URI prefix (keeps relative paths)."""
    local_dir = Path(local_dir)
    out = []
    for path in sorted(p for p in local_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(local_dir).as_posix()
        out.append(upload_file(path, join(uri, rel)))
    return out


def download_dir(uri: str, local_dir: str | Path) -> Path:
    """Copy every file under a URI prefix into a local directory (keeps relative paths)."""
    local_dir = Path(local_dir)
    base = str(uri).rstrip("/")
    for item in list_uris(base):
        rel = item[len(base) :].lstrip("/")
        download_file(item, local_dir / rel)
    return local_dir


@contextlib.contextmanager
def local_path(uri: str, suffix: str = "") -> Iterator[Path]:
    """A local file holding the URI's bytes (the file itself when local, a temp copy for S3)."""
    uri = str(uri)
    if not is_s3(uri):
        if not Path(uri).exists():
            raise FileNotFoundError(f"{uri}: no such file")
        yield Path(uri)
        return
    with tempfile.TemporaryDirectory() as tmp:
        yield download_file(uri, Path(tmp) / (basename(uri) or "blob"))


@contextlib.contextmanager
def output_dir(uri: str) -> Iterator[Path]:
    """A local directory to write a step's outputs into; for S3 it is uploaded when the block exits cleanly."""
    uri = str(uri)
    if not is_s3(uri):
        Path(uri).mkdir(parents=True, exist_ok=True)
        yield Path(uri)
        return
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)
        upload_dir(tmp, uri)
