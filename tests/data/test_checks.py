"""What a dataset must have before training (test images, two classes, an image per fold in every class), which
declared aliases apply to it, and the links and layout mismatches the reader refuses -- each one line naming
the fix."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from finegrain.data.checks import check_dataset, dataset_aliases
from finegrain.data.layouts import DatasetError, read_dataset
from tests.support.datasets import imagefolder, noise_jpeg


def test_a_trainable_dataset_passes(tmp_path: Path) -> None:
    ds = read_dataset(str(imagefolder(tmp_path / "ds", {"a": 3, "b": 2})))
    assert check_dataset(ds, folds=2) == []


@pytest.mark.parametrize(
    "sizes, n_test, folds, needles",
    [
        ({"a": 3, "b": 3}, 0, 2, ["no test images (no images under test/)", "add the images to predict"]),
        ({"a": 4}, 2, 2, ["1 class (a)", "at least 2 classes"]),
        (
            {"a": 4, "b": 1, "c": 2},
            2,
            3,
            ["2 class(es) with fewer images than data.folds=3: b (1), c (2)", "lower data.folds"],
        ),
    ],
    ids=["no test images", "one class", "classes smaller than the folds"],
)
def test_untrainable_datasets_fail_in_one_line_naming_the_fix(
    tmp_path, sizes, n_test, folds, needles
) -> None:
    ds = read_dataset(str(imagefolder(tmp_path / "ds", sizes, n_test)))
    with pytest.raises(DatasetError) as err:
        check_dataset(ds, folds=folds)
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(tmp_path / "ds"))
    for needle in needles:
        assert needle in message, message


def test_aliases_apply_only_where_both_classes_exist(tmp_path: Path) -> None:
    ds = read_dataset(str(imagefolder(tmp_path / "ds", {"a": 1, "a2": 1, "b": 2})))
    declared = {"a2": "a", "x": "b", "b": "missing"}
    assert dataset_aliases(declared, ds.classes) == ({"a2": "a"}, {"x": "b", "b": "missing"})
    # a2 merged into a makes a class of 2 images: enough for 2 folds; the other pairs are named in a note
    notes = check_dataset(ds, folds=2, aliases=declared)
    assert notes == [
        "data.aliases: ignoring 2 pair(s) naming a class this dataset does not have: x -> b, b -> missing"
    ]
    with pytest.raises(DatasetError, match=r"a \(1\), a2 \(1\)"):
        check_dataset(ds, folds=2)


def test_nfd_alias_names_match_nfc_classes() -> None:
    import unicodedata

    alias, canonical = "뉴_스포티지", "스포티지"
    nfd = {unicodedata.normalize("NFD", alias): unicodedata.normalize("NFD", canonical)}
    assert dataset_aliases(nfd, [alias, canonical]) == ({alias: canonical}, {})


def test_hecto_layout_on_an_imagefolder_set_names_the_fix(tmp_path: Path) -> None:
    root = imagefolder(tmp_path / "ds", {"a": 2, "b": 2})
    with pytest.raises(
        DatasetError, match="data.layout is 'hecto' but there is no test.csv.*data.layout=auto"
    ):
        read_dataset(str(root), layout="hecto")


def test_links_out_of_the_dataset_are_refused(tmp_path: Path) -> None:
    root = imagefolder(tmp_path / "ds", {"a": 2, "b": 2})
    outside = tmp_path / "home"
    (outside / "photos").mkdir(parents=True)
    (outside / "secret.jpg").write_bytes(noise_jpeg(7))
    (outside / "photos" / "p.jpg").write_bytes(noise_jpeg(8))
    os.symlink(outside / "secret.jpg", root / "train" / "a" / "leak.jpg")
    os.symlink(outside / "photos", root / "train" / "c")
    os.symlink(tmp_path / "nothing.jpg", root / "test" / "gone.jpg")
    with pytest.raises(DatasetError) as err:
        read_dataset(str(root))
    message = str(err.value)
    assert "3 symbolic link(s)" in message and "cp -rL" in message and "\n" not in message
    assert f"{root / 'train' / 'a' / 'leak.jpg'} -> {outside / 'secret.jpg'} (outside the dataset)" in message
    assert f"{root / 'train' / 'c'} -> {outside / 'photos'} (a linked directory)" in message
    assert "gone.jpg" in message and "(points to nothing)" in message


def test_a_link_to_a_file_inside_the_dataset_is_read(tmp_path: Path) -> None:
    root = imagefolder(tmp_path / "ds", {"a": 2, "b": 2})
    os.symlink(root / "train" / "a" / "a0.jpg", root / "train" / "b" / "copy.jpg")  # a duplicate, found later
    ds = read_dataset(str(root))
    assert "train/b/copy" in set(ds.train["image_id"])
