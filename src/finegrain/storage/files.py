"""Read, write, copy and delete files (local) or objects (S3), each appearing whole or not at all.

Local writes go to a temp file in the same directory (`.<name>.<random>.tmp`, skipped by listings), fsynced
and renamed into place; S3 objects only appear once the (multipart) upload completes. A missing file or
object is a FileNotFoundError naming the URI; other failures are StorageError naming the URI.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from finegrain.storage import settings
from finegrain.storage.listing import list_uris, object_exists
from finegrain.storage.s3client import StorageError, client, ensure_bucket, is_missing, retry
from finegrain.storage.uris import basename, is_s3, split_s3

_CHUNK = 1024 * 1024


@contextlib.contextmanager
def atomic_local(path: Path) -> Iterator[Path]:
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


def fsync_file(path: Path) -> None:
    """Flush a file's bytes to disk: a rename must never expose a file whose bytes are still in flight."""
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _missing_as_fnf(uri: str, exc: StorageError) -> Exception:
    return FileNotFoundError(f"{uri}: no such object") if is_missing(exc) else exc


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
        if len(data) > settings.part_size():
            with tempfile.NamedTemporaryFile() as tmp:
                tmp.write(data)
                tmp.flush()
                return upload_file(tmp.name, uri)
        bucket, key = split_s3(uri)
        ensure_bucket(bucket)
        retry(f"{uri}: write", lambda: client(uri).put_object(bucket, key, io.BytesIO(data), len(data)))
        return uri
    with atomic_local(Path(uri)) as tmp, open(tmp, "wb") as fh:
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
        with atomic_local(Path(uri)) as tmp:
            shutil.copyfile(local_path, tmp)
            fsync_file(tmp)
        return uri
    bucket, key = split_s3(uri)
    ensure_bucket(bucket)
    size = settings.part_size(part_size)
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
        with atomic_local(local_path) as tmp:
            retry(f"{uri}: download", lambda: get(tmp))
    except StorageError as exc:
        raise _missing_as_fnf(uri, exc) from exc.__cause__
    return local_path


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
    return object_exists(c, bucket, key) or bool(list_uris(uri.rstrip("/") + "/", recursive=True, limit=1))


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
