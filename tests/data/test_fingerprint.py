"""The dataset fingerprint that keys preprocess's cache and names a run's work root, locally and on S3."""

from pathlib import Path

import pytest

from finegrain import storage
from finegrain.data.fingerprint import dataset_fingerprint


def _write(root: str, rel: str, data: bytes) -> None:
    if storage.is_s3(root):
        storage.write_bytes(storage.join(root, rel), data)
    else:
        Path(root, rel).parent.mkdir(parents=True, exist_ok=True)
        Path(root, rel).write_bytes(data)


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "data")
    return request.getfixturevalue("s3_bucket") + "/datasets/cars"


def test_every_kind_of_change_changes_the_fingerprint(root):
    _write(root, "train/a/1.jpg", b"one")
    _write(root, "train/b/2.jpg", b"two")
    base = dataset_fingerprint(root)
    assert dataset_fingerprint(root) == base  # deterministic

    _write(root, "train/b/3.jpg", b"three")  # an added image
    added = dataset_fingerprint(root)
    assert added != base

    _write(root, "train/b/3.jpg", b"THREE")  # same size, other content
    edited = dataset_fingerprint(root)
    assert edited != added

    _write(root, "train/b/3.jpg", b"three")  # back to the same bytes: the same fingerprint
    assert dataset_fingerprint(root) == added


def test_a_renamed_file_changes_the_fingerprint(tmp_path):
    root = tmp_path / "data"
    _write(str(root), "train/a/1.jpg", b"one")
    before = dataset_fingerprint(str(root))
    (root / "train" / "a" / "1.jpg").rename(root / "train" / "a" / "2.jpg")
    assert dataset_fingerprint(str(root)) != before


def test_s3_fingerprint_sees_only_its_prefix(s3_bucket):
    root = s3_bucket + "/cars"
    _write(root, "train/a/1.jpg", b"one")
    before = dataset_fingerprint(root)
    _write(s3_bucket + "/cars-other", "train/a/9.jpg", b"neighbour")  # a sibling prefix, not this dataset
    assert dataset_fingerprint(root) == before


def test_missing_local_dataset_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        dataset_fingerprint(str(tmp_path / "nowhere"))
