"""Read and write URIs: local paths and `s3://bucket/key` (MinIO or any S3 server) through the `minio` client.

The endpoint and credentials come from the environment (see `finegrain.storage.s3client`), never from the config.

Writes never leave a half-written file or object visible: local writes go to a temp file in the same
directory (`.<name>.<random>.tmp`, skipped by listings), fsynced and renamed into place; S3 objects only appear
once the (multipart) upload completes. A step's `output_dir` is staged and published file by file, JSON index
files (metrics.json, classes.json, ...) last. Transient errors (connection refused/reset, timeouts, 5xx, SlowDown) are
retried with exponential backoff, long enough to ride out an S3 server restart. A missing file or object is a
FileNotFoundError naming the URI; other failures are StorageError naming the URI.

Keys are used byte-for-byte as given: a dataset uploaded from macOS may hold NFD-normalised Korean names, and
normalising the key here would make those objects unreadable. Normalise *labels* (to NFC), not keys.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from finegrain.storage import s3client
from finegrain.storage.s3client import StorageError, client, ensure_bucket, is_missing, retry

__all__ = [
    "StorageError", "basename", "client", "configure", "copy", "delete", "download_dir", "download_file", "ensure_bucket",
    "exists", "is_s3", "join", "list_uris", "local_path", "output_dir", "read_bytes", "read_text", "size",
    "split_s3", "upload_dir", "upload_file", "write_bytes", "write_text",
]  # fmt: skip

# Files above this go up as multipart uploads in parts of this size (S3's minimum part is 5 MiB).
# FINEGRAIN_S3_PART_SIZE_MB overrides it per process; `upload_file(part_size=...)` per call.
MULTIPART_PART_SIZE = 16 * 1024 * 1024
# Objects per ListObjects page; small values make tests exercise pagination and resume.
LIST_PAGE_SIZE = 1000
_CHUNK = 1024 * 1024


class StorageSettings(Protocol):
    """What configure reads: the config's `storage` section (finegrain.config.StorageConfig) has these."""

    retries: int
    multipart_threshold_mb: int


def configure(settings: StorageSettings) -> None:
    """Apply the config's `storage` section process-wide: `storage.configure(cfg.storage)`.

    `multipart_threshold_mb` is both the multipart threshold and the part size. The environment variables
    FINEGRAIN_S3_RETRIES / FINEGRAIN_S3_PART_SIZE_MB still win, so an operator can override one pod.
    """
    global MULTIPART_PART_SIZE
    s3client.DEFAULT_RETRIES = int(settings.retries)
    MULTIPART_PART_SIZE = int(settings.multipart_threshold_mb) * 1024 * 1024


def is_s3(uri: str) -> bool:
    return str(uri).startswith("s3://")


def split_s3(uri: str) -> tuple[str, str]:
    """`s3://bucket/a/b` -> (`bucket`, `a/b`)."""
    if not is_s3(uri):
        raise StorageError(f"{uri}: not an s3:// URI")
    bucket, _, key = str(uri)[5:].partition("/")
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


def _part_size(part_size: int | None) -> int:
    if part_size:
        return int(part_size)
    env = os.environ.get("FINEGRAIN_S3_PART_SIZE_MB")
    return int(float(env) * 1024 * 1024) if env else MULTIPART_PART_SIZE


def _is_temp(name: str) -> bool:
    return name.startswith(".")


@contextlib.contextmanager
def _atomic_local(path: Path) -> Iterator[Path]:
    """A temp path beside `path`, renamed onto it when the block succeeds and removed when it fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _missing_as_fnf(uri: str, exc: StorageError) -> Exception:
    return FileNotFoundError(f"{uri}: no such object") if is_missing(exc) else exc


# ------------------------------------------------------------------------------------------ operations


def read_bytes(uri: str) -> bytes:
    uri = str(uri)
    if not is_s3(uri):
        try:
            return Path(uri).read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"{uri}: no such file") from None
    bucket, key = split_s3(uri)

    def get() -> bytes:
        resp = client(uri).get_object(bucket, key)
        try:
            return resp.read()  # a connection dropped mid-body raises (content length is enforced)
        finally:
            resp.close()
            resp.release_conn()

    try:
        return retry(f"{uri}: read", get)
    except StorageError as exc:
        raise _missing_as_fnf(uri, exc) from exc.__cause__


def read_text(uri: str) -> str:
    data = read_bytes(uri)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:  # the same error type, but saying which file
        raise UnicodeDecodeError(exc.encoding, exc.object, exc.start, exc.end, f"{exc.reason} in {uri}") from None


def write_bytes(uri: str, data: bytes) -> str:
    uri = str(uri)
    if is_s3(uri):
        if len(data) > _part_size(None):
            with tempfile.NamedTemporaryFile() as tmp:
                tmp.write(data)
                tmp.flush()
                return upload_file(tmp.name, uri)
        bucket, key = split_s3(uri)
        ensure_bucket(bucket)
        retry(f"{uri}: write", lambda: client(uri).put_object(bucket, key, io.BytesIO(data), len(data)))
        return uri
    with _atomic_local(Path(uri)) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())  # the rename must never expose a file whose bytes are still in flight
    return uri


def write_text(uri: str, text: str) -> str:
    return write_bytes(uri, text.encode("utf-8"))


def upload_file(local_path: str | Path, uri: str, *, part_size: int | None = None) -> str:
    """Copy a local file to a URI; files over `part_size` go up in multipart (the object appears when complete)."""
    uri, local_path = str(uri), Path(local_path)
    if not local_path.is_file():
        raise FileNotFoundError(f"{local_path}: no such file (uploading to {uri})")
    if not is_s3(uri):
        with _atomic_local(Path(uri)) as tmp:
            shutil.copyfile(local_path, tmp)
            _fsync(tmp)
        return uri
    bucket, key = split_s3(uri)
    ensure_bucket(bucket)
    size = _part_size(part_size)
    # A retry re-uploads from scratch: minio aborts the failed multipart upload, so no stale parts mix in.
    retry(f"{uri}: upload", lambda: client(uri).fput_object(bucket, key, str(local_path), part_size=size))
    return uri


def download_file(uri: str, local_path: str | Path) -> Path:
    """Copy a URI to a local file atomically (temp file + rename)."""
    uri, local_path = str(uri), Path(local_path)
    if not is_s3(uri):
        if not Path(uri).is_file():
            raise FileNotFoundError(f"{uri}: no such file")
        upload_file(uri, str(local_path))
        return local_path
    bucket, key = split_s3(uri)

    def get(tmp: Path) -> None:
        # Each attempt rewrites the temp file from byte 0, so a retry after a dropped connection is whole.
        resp = client(uri).get_object(bucket, key)
        try:
            with open(tmp, "wb") as fh:
                fh.writelines(resp.stream(_CHUNK))
        finally:
            resp.close()
            resp.release_conn()

    try:
        with _atomic_local(local_path) as tmp:
            retry(f"{uri}: download", lambda: get(tmp))
    except StorageError as exc:
        raise _missing_as_fnf(uri, exc) from exc.__cause__
    return local_path


def size(uri: str) -> int:
    """Size in bytes of a file or object."""
    uri = str(uri)
    if not is_s3(uri):
        try:
            return Path(uri).stat().st_size
        except FileNotFoundError:
            raise FileNotFoundError(f"{uri}: no such file") from None
    bucket, key = split_s3(uri)
    try:
        return int(retry(f"{uri}: stat", lambda: client(uri).stat_object(bucket, key)).size)
    except StorageError as exc:
        raise _missing_as_fnf(uri, exc) from exc.__cause__


def exists(uri: str) -> bool:
    """True for an existing file/object, or a directory/prefix with something under it."""
    uri = str(uri)
    if not is_s3(uri):
        return Path(uri).exists()
    bucket, key = split_s3(uri)
    c = client(uri)
    if not key:
        return retry(f"{uri}: exists", lambda: c.bucket_exists(bucket))
    # A "directory" exists when something lives under `key/` (listing `key` itself would find the object).
    return _object_exists(c, bucket, key) or bool(list_uris(uri.rstrip("/") + "/", recursive=True, limit=1))


def list_uris(prefix: str, recursive: bool = True, limit: int | None = None) -> list[str]:
    """Files under a prefix (full URIs, sorted). Local: files under a directory; S3: objects under a key prefix.

    Local dot-files are skipped (they are in-flight temp files of atomic writes or editor litter).
    """
    prefix = str(prefix)
    if not is_s3(prefix):
        root = Path(prefix)
        if not root.exists():
            return []
        if root.is_file():
            return [str(root)]
        found = root.rglob("*") if recursive else root.iterdir()
        files = sorted(str(p) for p in found if p.is_file() and not _is_temp(p.name))
        return files[:limit] if limit else files
    bucket, key = split_s3(prefix)
    if key and not key.endswith("/"):
        key += "/"
    c = client(prefix)
    if not retry(f"{prefix}: list", lambda: c.bucket_exists(bucket)):
        return []
    out: list[str] = []
    last: list[str | None] = [None]

    def listing() -> None:
        # Resumes after the last key received, so a server restart mid-pagination neither loses nor repeats keys.
        pages = c._list_objects(
            bucket,
            delimiter=None if recursive else "/",
            encoding_type="url",
            max_keys=LIST_PAGE_SIZE,
            prefix=key,
            start_after=last[0],
        )
        for obj in pages:
            if obj.is_dir:
                continue
            out.append(f"s3://{bucket}/{obj.object_name}")
            last[0] = obj.object_name
            if limit and len(out) >= limit:
                return

    retry(f"{prefix}: list", listing)
    if not out and key and not prefix.endswith("/") and _object_exists(c, bucket, key.rstrip("/")):
        return [prefix.rstrip("/")]  # like a local file path: listing a single object yields that object
    return sorted(out)


def _object_exists(c, bucket: str, key: str) -> bool:
    def stat() -> bool:
        try:
            c.stat_object(bucket, key)
            return True
        except Exception as exc:  # only "missing" is an answer; the rest goes to retry()
            if is_missing(exc):
                return False
            raise

    return retry(f"s3://{bucket}/{key}: stat", stat)


def copy(src: str, dst: str) -> str:
    """Copy a file/object between any two URIs (server-side for S3 -> S3)."""
    src, dst = str(src), str(dst)
    if not is_s3(src) and not is_s3(dst):
        return upload_file(src, dst)
    if not is_s3(src):
        return upload_file(src, dst)
    if not is_s3(dst):
        download_file(src, dst)
        return dst
    from minio.commonconfig import CopySource

    sb, sk = split_s3(src)
    db, dk = split_s3(dst)
    ensure_bucket(db)
    try:
        # copy_object switches to a multipart compose for sources over 5 GiB by itself.
        retry(f"{src} -> {dst}: copy", lambda: client(dst).copy_object(db, dk, CopySource(sb, sk)))
    except StorageError as exc:
        raise (FileNotFoundError(f"{src}: no such object") if is_missing(exc) else exc) from exc.__cause__
    return dst


def delete(uri: str) -> None:
    """Remove a file/object, or a directory/prefix with everything under it; a missing one is not an error."""
    uri = str(uri)
    if not is_s3(uri):
        p = Path(uri)
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
        return
    from minio.deleteobjects import DeleteObject

    bucket, key = split_s3(uri)
    c = client(uri)
    keys = [key] if key else []
    keys += [split_s3(u)[1] for u in list_uris(uri.rstrip("/") + "/")]

    def remove() -> None:
        errors = list(c.remove_objects(bucket, [DeleteObject(k) for k in keys]))
        if errors:
            raise StorageError(f"{uri}: delete failed for {len(errors)} objects, first: {errors[0]}")

    if keys:
        retry(f"{uri}: delete", remove)


def upload_dir(local_dir: str | Path, uri: str) -> list[str]:
    """Copy every file under a local directory to a URI prefix (keeps relative paths; skips dot-files; JSON
    files last, see `_publish_order`)."""
    local_dir = Path(local_dir)
    if not local_dir.is_dir():
        raise FileNotFoundError(f"{local_dir}: no such directory (uploading to {uri})")
    out = []
    for path in _publish_order([p for p in local_dir.rglob("*") if p.is_file() and not _is_temp(p.name)]):
        rel = path.relative_to(local_dir).as_posix()
        out.append(upload_file(path, join(uri, rel)))
    return out


def download_dir(uri: str, local_dir: str | Path) -> Path:
    """Copy every file under a URI prefix into a local directory (keeps relative paths)."""
    local_dir = Path(local_dir)
    base = str(uri).rstrip("/")
    items = list_uris(base)
    if not items and not exists(base):
        raise FileNotFoundError(f"{uri}: no such directory or prefix")
    for item in items:
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
    name = basename(uri) or "blob"
    if suffix and not name.endswith(suffix):
        name += suffix  # readers that dispatch on the extension (np.load, torch.load) need it
    with tempfile.TemporaryDirectory() as tmp:
        yield download_file(uri, Path(tmp) / name)


def _publish_order(files: list[Path]) -> list[Path]:
    """Data files first, then the JSON files: those are what readers open first (metrics.json marks a member
    finished, classes.json goes with manifest.parquet), so they must never point at a file not yet there."""
    return sorted(files, key=lambda p: (p.suffix == ".json", str(p)))


def _fsync(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


@contextlib.contextmanager
def output_dir(uri: str) -> Iterator[Path]:
    """A local directory to write a step's outputs into, published when the block exits cleanly.

    Local: a hidden staging directory beside `uri` (same filesystem); each file is then renamed into `uri`, so
    a reader sees every file either whole or not at all. S3: uploaded (each object appears whole). Both publish
    in `_publish_order`, and a block that fails publishes nothing.
    """
    uri = str(uri)
    if is_s3(uri):
        with tempfile.TemporaryDirectory() as tmp:
            yield Path(tmp)
            upload_dir(tmp, uri)
        return
    target = Path(uri).resolve()
    target.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.staging-"))
    try:
        yield staging
        files = [p for p in staging.rglob("*") if p.is_file() and not _is_temp(p.name)]
        for path in _publish_order(files):
            dst = target / path.relative_to(staging)
            dst.parent.mkdir(parents=True, exist_ok=True)
            _fsync(path)  # the rename must never expose a file whose bytes are still in flight
            os.replace(path, dst)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
