"""Dataset layouts: Hecto and ImageFolder, local and on S3, NFD folder names, and every layout error."""

from __future__ import annotations

import io
import shutil
import unicodedata
from pathlib import Path

import pytest
from PIL import Image

from finegrain import storage
from finegrain.data.layouts import DatasetError, detect_layout, read_dataset

# Deliberately not in sorted order: code that sorts submission columns must fail these tests.
CLASSES = ["소나타_DN8_2020_2023", "G80_RG3_2021_2024", "아반떼_CN7_2021_2023"]


def _jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (seed * 40 % 256, 80, 120)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


def make_hecto(
    root: Path,
    per_class: int = 2,
    n_test: int = 3,
    folder_form: str = "NFC",
    column_form: str = "NFC",
    bom: bool = False,
) -> Path:
    """A small Hecto-layout dataset; folder names and submission columns in the given normal forms."""
    for ci, name in enumerate(CLASSES):
        folder = root / "train" / unicodedata.normalize(folder_form, name)
        folder.mkdir(parents=True)
        for i in range(per_class):
            (folder / f"{unicodedata.normalize(folder_form, name)}_{i:04d}.jpg").write_bytes(_jpeg(ci + i))
    (root / "test").mkdir()
    ids = [f"TEST_{i:05d}" for i in range(n_test)]
    for i, test_id in enumerate(ids):
        (root / "test" / f"{test_id}.jpg").write_bytes(_jpeg(i))
    # test.csv in reverse file order: the reader must keep test.csv order, not sort.
    (root / "test.csv").write_text(
        "ID,img_path\n" + "".join(f"{t},./test/{t}.jpg\n" for t in reversed(ids)), encoding="utf-8"
    )
    columns = [unicodedata.normalize(column_form, c) for c in CLASSES]
    text = "ID," + ",".join(columns) + "\n" + "".join(f"{t}" + ",0.333" * 3 + "\n" for t in ids)
    (root / "sample_submission.csv").write_text(text, encoding="utf-8-sig" if bom else "utf-8")
    return root


def test_hecto_local(tmp_path: Path) -> None:
    root = make_hecto(tmp_path / "ds", bom=True)
    (root / "train" / CLASSES[0] / "notes.txt").write_text("not an image")
    ds = read_dataset(str(root))
    assert ds.layout == "hecto" == detect_layout(str(root))
    assert ds.submission_columns == CLASSES  # exact strings, sample order (BOM stripped from "ID")
    assert ds.classes == sorted(CLASSES)
    assert ds.test_ids == ["TEST_00002", "TEST_00001", "TEST_00000"]
    assert [s.endswith("notes.txt") for s in ds.skipped] == [True]
    train, test = ds.train, ds.test
    assert len(train) == 6 and len(test) == 3
    assert list(ds.images.columns) == ["image_id", "path", "split", "label"]
    assert list(train["image_id"]) == sorted(train["image_id"])
    assert f"train/{CLASSES[0]}/{CLASSES[0]}_0001" in set(train["image_id"])
    assert list(test["image_id"]) == ds.test_ids and set(test["label"]) == {""}
    assert set(train["label"]) == set(CLASSES)
    assert all(Path(p).is_file() for p in ds.images["path"])
    assert ds.column_to_class() == {c: c for c in CLASSES}


@pytest.mark.parametrize(("folder_form", "column_form"), [("NFD", "NFC"), ("NFC", "NFD")])
def test_nfd_names(tmp_path: Path, folder_form: str, column_form: str) -> None:
    root = make_hecto(tmp_path / "ds", folder_form=folder_form, column_form=column_form)
    ds = read_dataset(str(root))
    nfc = [unicodedata.normalize("NFC", c) for c in CLASSES]
    assert ds.classes == sorted(nfc)
    assert all(unicodedata.is_normalized("NFC", x) for x in ds.images["label"])
    assert all(unicodedata.is_normalized("NFC", x) for x in ds.images["image_id"])
    # Columns keep the sample's exact code points; the mapping lands on the NFC class names.
    assert ds.submission_columns == [unicodedata.normalize(column_form, c) for c in CLASSES]
    mapping = ds.column_to_class()
    assert [mapping[c] for c in ds.submission_columns] == nfc
    # Paths keep the bytes on disk, so they still open.
    assert all(Path(p).is_file() for p in ds.images["path"])
    if folder_form == "NFD":
        assert any(_nfd(CLASSES[0]) in p for p in ds.images["path"])


def test_imagefolder_local(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    for ci, name in enumerate(["b_class", "a_class"]):
        (root / "train" / name).mkdir(parents=True)
        for i in range(2):
            (root / "train" / name / f"img{i}.png").write_bytes(_jpeg(ci))
    ds = read_dataset(str(root))
    assert ds.layout == "imagefolder" and ds.test_ids == [] and len(ds.test) == 0
    assert ds.root == str(root)  # absolute, so the table works from any working directory
    assert ds.submission_columns == ds.classes == ["a_class", "b_class"]
    (root / "test").mkdir()
    for stem in ("zz", "aa", "mm"):
        (root / "test" / f"{stem}.jpg").write_bytes(_jpeg(1))
    (root / "test" / "Thumbs.db").write_bytes(b"x")
    ds = read_dataset(str(root), layout="imagefolder")
    assert ds.test_ids == ["aa", "mm", "zz"] == list(ds.test["image_id"])
    assert list(ds.train["image_id"]) == [f"train/{c}/img{i}" for c in ("a_class", "b_class") for i in (0, 1)]
    assert [Path(s).name for s in ds.skipped] == ["Thumbs.db"]


@pytest.mark.s3
def test_hecto_s3(tmp_path: Path, s3_bucket: str) -> None:
    root = make_hecto(tmp_path / "ds", folder_form="NFD")
    storage.upload_dir(root, f"{s3_bucket}/data/hecto")
    local = read_dataset(str(root))
    remote = read_dataset(f"{s3_bucket}/data/hecto/")
    assert remote.layout == "hecto" and remote.root == f"{s3_bucket}/data/hecto"
    assert remote.classes == local.classes and remote.submission_columns == local.submission_columns
    assert remote.test_ids == local.test_ids
    cols = ["image_id", "split", "label"]
    assert remote.images[cols].equals(local.images[cols])
    assert all(p.startswith(f"{s3_bucket}/data/hecto/") for p in remote.images["path"])
    # The NFD keys are kept byte-for-byte, so every listed object reads back.
    assert storage.read_bytes(remote.train["path"].iloc[0]) == Path(local.train["path"].iloc[0]).read_bytes()
    with pytest.raises(DatasetError, match="not found"):
        read_dataset(f"{s3_bucket}/no/such/prefix")


# ------------------------------------------------------------------------------------------------ errors


def _drop_column(root: Path) -> str:
    p = root / "sample_submission.csv"
    lines = p.read_text(encoding="utf-8").splitlines()
    p.write_text("\n".join(",".join(line.split(",")[:-1]) for line in lines) + "\n", encoding="utf-8")
    return f"sample_submission.csv: train class(es) with no submission column: ['{CLASSES[-1]}']"


def _extra_column(root: Path) -> str:
    p = root / "sample_submission.csv"
    lines = p.read_text(encoding="utf-8").splitlines()
    lines = [lines[0] + ",모닝_JA_2018_2020"] + [line + ",0" for line in lines[1:]]
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return "sample_submission.csv: column(s) with no matching train/<class> folder: ['모닝_JA_2018_2020']"


def _empty_class(root: Path) -> str:
    (root / "train" / "빈_클래스").mkdir()
    (root / "train" / "빈_클래스" / "readme.txt").write_text("no images here")
    return "빈_클래스: empty class folder"


def _missing_test_image(root: Path) -> str:
    (root / "test" / "TEST_00001.jpg").unlink()
    return "test.csv:3: ID TEST_00001 names ./test/TEST_00001.jpg, which does not exist"


def _duplicate_id(root: Path) -> str:
    with open(root / "test.csv", "a", encoding="utf-8") as fh:
        fh.write("TEST_00000,./test/TEST_00001.jpg\n")
    return "test.csv:5: duplicate test ID 'TEST_00000'"


def _test_csv_columns(root: Path) -> str:
    (root / "test.csv").write_text("id,path\nTEST_00000,./test/TEST_00000.jpg\n", encoding="utf-8")
    return "test.csv: missing column(s) ['ID', 'img_path']"


def _duplicate_train_id(root: Path) -> str:
    folder = root / "train" / CLASSES[1]
    (folder / f"{CLASSES[1]}_0000.png").write_bytes(_jpeg(3))
    return f"duplicate train image_id 'train/{CLASSES[1]}/{CLASSES[1]}_0000'"


def _submission_ids_differ(root: Path) -> str:
    p = root / "sample_submission.csv"
    p.write_text(p.read_text(encoding="utf-8").replace("TEST_00002", "TEST_99999"), encoding="utf-8")
    return "sample_submission.csv: IDs differ from test.csv (only here: ['TEST_99999']"


def _image_in_train_root(root: Path) -> str:
    (root / "train" / "stray.jpg").write_bytes(_jpeg(0))
    return "train/stray.jpg: image directly under train/"


def _missing_root(root: Path) -> str:
    shutil.rmtree(root)
    return "ds: dataset root not found"


def _missing_train(root: Path) -> str:
    shutil.rmtree(root / "train")
    return "train: train/ folder not found"


def _missing_test_csv(root: Path) -> str:
    (root / "test.csv").unlink()
    return "test.csv: test.csv not found"


def _missing_sample_submission(root: Path) -> str:
    (root / "sample_submission.csv").unlink()
    return "sample_submission.csv: sample_submission.csv not found"


ERRORS = {
    "missing root": _missing_root,
    "missing train": _missing_train,
    "missing test.csv": _missing_test_csv,
    "missing sample_submission": _missing_sample_submission,
    "empty class": _empty_class,
    "missing test image": _missing_test_image,
    "column without class": _extra_column,
    "class without column": _drop_column,
    "duplicate test ID": _duplicate_id,
    "test.csv columns": _test_csv_columns,
    "duplicate train id": _duplicate_train_id,
    "image in train root": _image_in_train_root,
    "submission IDs differ": _submission_ids_differ,
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_layout_errors_name_the_file(tmp_path: Path, case: str) -> None:
    root = make_hecto(tmp_path / "ds")
    expected = ERRORS[case](root)
    with pytest.raises(DatasetError) as info:
        read_dataset(str(root), layout="hecto")
    assert expected in str(info.value)
    assert str(tmp_path / "ds") in str(info.value)  # the message names where the problem is


def test_empty_class_folder_without_files(tmp_path: Path) -> None:
    root = make_hecto(tmp_path / "ds")
    (root / "train" / "빈_클래스").mkdir()
    with pytest.raises(DatasetError, match="빈_클래스: empty class folder"):
        read_dataset(str(root))


def test_detect_layout_errors(tmp_path: Path) -> None:
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file.txt").write_text("x")
    with pytest.raises(DatasetError, match="cannot detect the layout"):
        detect_layout(str(tmp_path / "junk"))
    root = make_hecto(tmp_path / "ds")
    with pytest.raises(DatasetError, match="unknown layout 'coco'"):
        read_dataset(str(root), layout="coco")
