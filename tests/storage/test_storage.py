"""finegrain.storage against the local filesystem and a real S3 server (SeaweedFS), including server restarts."""

from __future__ import annotations

import hashlib
import os
import threading
import time
import unicodedata
from pathlib import Path

import pytest
from minio.api import Minio

from finegrain import storage
from finegrain.storage import listing, settings
from finegrain.storage.s3client import StorageError

KOREAN = "스포티지_5세대_2021_2023"
NFC, NFD = unicodedata.normalize("NFC", KOREAN), unicodedata.normalize("NFD", KOREAN)


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def base(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A writable root URI: a local directory, or a fresh bucket on the S3 test server."""
    if request.param == "local":
        return str(tmp_path / "root")
    return request.getfixturevalue("s3_bucket")


def test_round_trip_bytes_and_text(base: str) -> None:
    blob = bytes(range(256)) * 10
    storage.write_bytes(storage.join(base, "a", "blob.bin"), blob)
    storage.write_text(storage.join(base, "a", "note.txt"), f"클래스 {NFC}\n")
    assert storage.read_bytes(storage.join(base, "a", "blob.bin")) == blob
    assert storage.read_text(storage.join(base, "a", "note.txt")) == f"클래스 {NFC}\n"
    assert storage.size(storage.join(base, "a", "blob.bin")) == len(blob)
    # Overwrite replaces the content entirely.
    storage.write_bytes(storage.join(base, "a", "blob.bin"), b"short")
    assert storage.read_bytes(storage.join(base, "a", "blob.bin")) == b"short"


def test_missing_is_file_not_found_naming_uri(base: str, tmp_path: Path) -> None:
    missing = storage.join(base, "nope", "missing.json")
    for call in (
        lambda: storage.read_bytes(missing),
        lambda: storage.download_file(missing, tmp_path / "x"),
        lambda: storage.copy(missing, storage.join(base, "copy.json")),
        lambda: storage.size(missing),
    ):
        with pytest.raises(FileNotFoundError, match="missing.json"):
            call()
    with pytest.raises(FileNotFoundError, match="missing.json"), storage.local_path(missing):
        pass
    assert not (tmp_path / "x").exists()
    assert not storage.exists(missing)


def test_local_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out" / "metrics.json"
    storage.write_text(str(target), "old")
    assert os.listdir(target.parent) == ["metrics.json"]  # no temp file left behind

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        storage.write_text(str(target), "new content that never fully lands")
    assert target.read_text() == "old"
    assert os.listdir(target.parent) == ["metrics.json"]


def test_list_nested_and_korean_keys(base: str) -> None:
    names = ["top.txt", "a/1.txt", "a/b/2.txt", f"train/{NFC}/x.jpg", f"train/{NFD}/y.jpg", "ab/3.txt"]
    for name in names:
        storage.write_text(storage.join(base, name), name)
    listed = storage.list_uris(base)
    assert listed == sorted(storage.join(base, n) for n in names)
    # NFC and NFD spellings are different keys and each stays readable exactly as listed.
    for uri in listed:
        assert storage.read_text(uri) == uri[len(base) + 1 :].replace(os.sep, "/")
    assert storage.list_uris(storage.join(base, "a")) == [
        storage.join(base, "a/1.txt"),
        storage.join(base, "a/b/2.txt"),
    ]
    assert storage.list_uris(storage.join(base, "a"), recursive=False) == [storage.join(base, "a/1.txt")]
    assert len(storage.list_uris(base, limit=2)) == 2
    assert storage.list_uris(storage.join(base, "no-such-prefix")) == []
    assert storage.list_uris(storage.join(base, "top.txt")) == [storage.join(base, "top.txt")]  # a file lists itself


def test_exists_for_key_and_prefix(base: str) -> None:
    storage.write_text(storage.join(base, "run", "fold0", "metrics.json"), "{}")
    assert storage.exists(storage.join(base, "run", "fold0", "metrics.json"))
    assert storage.exists(storage.join(base, "run"))
    assert storage.exists(storage.join(base, "run", "fold0"))
    assert not storage.exists(storage.join(base, "ru"))  # a prefix of a name is not a directory
    assert not storage.exists(storage.join(base, "run", "fold1"))


def test_exists_bucket(s3_bucket: str) -> None:
    assert storage.exists(s3_bucket)
    assert not storage.exists("s3://no-such-bucket-finegrain")
    assert storage.list_uris("s3://no-such-bucket-finegrain/x") == []


def test_copy_every_direction(s3_bucket: str, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload" * 1000)
    storage.copy(str(src), f"{s3_bucket}/one.bin")  # local -> s3
    storage.copy(f"{s3_bucket}/one.bin", f"{s3_bucket}/two/two.bin")  # s3 -> s3 (server side)
    storage.copy(f"{s3_bucket}/two/two.bin", str(tmp_path / "back" / "three.bin"))  # s3 -> local
    storage.copy(str(tmp_path / "back" / "three.bin"), str(tmp_path / "four.bin"))  # local -> local
    assert (tmp_path / "four.bin").read_bytes() == src.read_bytes()


def test_upload_and_download_dir(s3_bucket: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    for rel in ["a.txt", "sub/b.txt", f"sub/{NFC}/c.txt"]:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(rel)
    (src / ".a.txt.x1y2.tmp").write_text("in-flight temp file")
    uploaded = storage.upload_dir(src, f"{s3_bucket}/run")
    assert len(uploaded) == 3
    out = storage.download_dir(f"{s3_bucket}/run", tmp_path / "dst")
    got = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert got == sorted(["a.txt", "sub/b.txt", f"sub/{NFC}/c.txt"])
    assert (out / "sub" / NFC / "c.txt").read_text() == f"sub/{NFC}/c.txt"
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        storage.download_dir(f"{s3_bucket}/nothing-here", tmp_path / "dst2")


def test_delete_object_and_prefix(base: str) -> None:
    for name in ["keep.txt", "run/a.txt", "run/b/c.txt"]:
        storage.write_text(storage.join(base, name), name)
    storage.delete(storage.join(base, "keep.txt"))
    assert not storage.exists(storage.join(base, "keep.txt"))
    storage.delete(storage.join(base, "run"))
    assert storage.list_uris(base) == []
    storage.delete(storage.join(base, "never-existed"))  # not an error


def test_output_dir_uploads_on_success_only(s3_bucket: str) -> None:
    with storage.output_dir(f"{s3_bucket}/step") as out:
        (out / "report.md").write_text("# ok")
    assert storage.read_text(f"{s3_bucket}/step/report.md") == "# ok"
    with pytest.raises(RuntimeError), storage.output_dir(f"{s3_bucket}/failed") as out:
        (out / "half.md").write_text("partial")
        raise RuntimeError("step crashed")
    assert not storage.exists(f"{s3_bucket}/failed")
    with storage.local_path(f"{s3_bucket}/step/report.md") as local:
        assert local.read_text() == "# ok"


def test_local_output_dir_publishes_whole_files_json_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "prep"
    (target).mkdir()
    (target / "classes.json").write_text("old")
    published: list[tuple[str, list[str]]] = []
    real_replace = os.replace

    def recording_replace(src, dst) -> None:
        real_replace(src, dst)
        published.append((Path(dst).name, sorted(os.listdir(target))))

    with storage.output_dir(str(target)) as out:
        assert out.parent == target.parent and out.name.startswith(".")  # staged beside, hidden, same filesystem
        (out / "classes.json").write_text("new")
        (out / "manifest.parquet").write_bytes(b"rows")
        (out / "sub").mkdir()
        (out / "sub" / "report.md").write_text("# r")
        assert sorted(os.listdir(target)) == ["classes.json"] and (target / "classes.json").read_text() == "old"
        monkeypatch.setattr(os, "replace", recording_replace)
    monkeypatch.undo()
    assert [name for name, _ in published] == ["manifest.parquet", "report.md", "classes.json"]
    assert published[0][1] == ["classes.json", "manifest.parquet"]  # the old classes.json until the very end
    assert (target / "classes.json").read_text() == "new" and (target / "sub" / "report.md").read_text() == "# r"
    assert sorted(os.listdir(tmp_path)) == ["prep"]  # no staging directory left


def test_local_output_dir_publishes_nothing_when_the_step_fails(tmp_path: Path) -> None:
    target = tmp_path / "prep"
    with pytest.raises(RuntimeError), storage.output_dir(str(target)) as out:
        (out / "manifest.parquet").write_bytes(b"half")
        raise RuntimeError("step crashed")
    assert os.listdir(target) == [] and sorted(os.listdir(tmp_path)) == ["prep"]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _big_file(tmp_path: Path, mib: int = 12) -> Path:
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(mib * 1024 * 1024 + 123))
    return path


def test_multipart_round_trip(s3_bucket: str, tmp_path: Path) -> None:
    big = _big_file(tmp_path)
    uri = storage.upload_file(big, f"{s3_bucket}/models/model.pt", part_size=5 * 1024 * 1024)
    bucket, key = storage.split_s3(uri)
    etag = storage.client().stat_object(bucket, key).etag
    assert etag.endswith("-3"), f"expected a 3-part multipart ETag, got {etag!r}"
    back = storage.download_file(uri, tmp_path / "back.bin")
    assert _sha256(back) == _sha256(big)


def _kill_on_request(monkeypatch, s3_server, matches, nth: int) -> threading.Thread:
    """Make the nth S3 request matching `matches` find the server SIGKILLed; it is restarted 1 s later."""
    real = Minio._url_open
    seen = {"n": 0}
    lock = threading.Lock()
    restarter = threading.Thread(target=lambda: (time.sleep(1.0), s3_server.start()), daemon=True)

    def url_open(self, method, region, bucket_name=None, object_name=None, body=None, headers=None,
                 query_params=None, **kw):  # fmt: skip
        with lock:
            if matches(method, query_params or {}):
                seen["n"] += 1
                if seen["n"] == nth:
                    s3_server.stop()
                    restarter.start()
        return real(self, method, region, bucket_name, object_name, body, headers, query_params, **kw)

    monkeypatch.setattr(Minio, "_url_open", url_open)
    return restarter


def test_listing_survives_server_restart(s3_server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    names = [f"img/{i:03d}.jpg" for i in range(60)]
    for name in names:
        storage.write_bytes(f"{s3_bucket}/{name}", b"x")
    monkeypatch.setattr(listing, "LIST_PAGE_SIZE", 7)
    # The 4th page request hits a dead server; the listing resumes after the restart.
    restarter = _kill_on_request(
        monkeypatch, s3_server, lambda m, q: m == "GET" and q.get("list-type") == "2", 4
    )
    t0 = time.monotonic()
    listed = storage.list_uris(f"{s3_bucket}/img")
    restarter.join(timeout=60)
    assert not restarter.is_alive(), "the restart never happened: the test did not exercise a restart"
    assert listed == [f"{s3_bucket}/{n}" for n in names]
    assert time.monotonic() - t0 > 0.5  # it really waited for the server


def test_multipart_upload_survives_server_restart(
    s3_server, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = _big_file(tmp_path)
    # The 2nd part upload (PUT with an uploadId) hits a dead server; the whole upload is retried after restart.
    restarter = _kill_on_request(monkeypatch, s3_server, lambda m, q: m == "PUT" and "uploadId" in q, 2)
    uri = storage.upload_file(big, f"{s3_bucket}/model.pt", part_size=5 * 1024 * 1024)
    restarter.join(timeout=60)
    assert not restarter.is_alive()
    monkeypatch.undo()
    bucket, key = storage.split_s3(uri)
    assert storage.client().stat_object(bucket, key).size == big.stat().st_size
    assert _sha256(storage.download_file(uri, tmp_path / "back.bin")) == _sha256(big)


def test_dead_server_fails_with_uri_after_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.servers import free_port

    monkeypatch.setenv("FINEGRAIN_S3_ENDPOINT", f"127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.setenv("FINEGRAIN_S3_RETRIES", "1")
    with pytest.raises(StorageError, match="s3://bucket/key.txt"):
        storage.read_bytes("s3://bucket/key.txt")


def test_missing_endpoint_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("FINEGRAIN_S3_ENDPOINT", "MLFLOW_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(StorageError, match=r"s3://bucket/key.txt.*FINEGRAIN_S3_ENDPOINT"):
        storage.read_bytes("s3://bucket/key.txt")
    with pytest.raises(StorageError, match="no bucket"):
        storage.split_s3("s3:///key")


def test_configure_applies_the_storage_section(
    s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from finegrain.config import StorageConfig
    from finegrain.storage import s3client

    monkeypatch.setattr(settings, "MULTIPART_PART_SIZE", settings.MULTIPART_PART_SIZE)
    monkeypatch.setattr(s3client, "DEFAULT_RETRIES", s3client.DEFAULT_RETRIES)
    monkeypatch.delenv("FINEGRAIN_S3_PART_SIZE_MB", raising=False)
    storage.configure(StorageConfig(retries=2, multipart_threshold_mb=5))
    assert s3client.DEFAULT_RETRIES == 2
    uri = storage.write_bytes(f"{s3_bucket}/w.bin", os.urandom(11 * 1024 * 1024))  # > 5 MiB: multipart
    assert storage.client().stat_object(*storage.split_s3(uri)).etag.endswith("-3")
