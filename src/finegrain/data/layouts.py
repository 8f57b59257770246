"""Read a dataset in the Hecto layout or the ImageFolder layout, local or under an `s3://` prefix, into one table.

    ds = read_dataset("data/sample")              # layout detected: test.csv / sample_submission.csv => hecto
    ds.images                                     # image_id, path, split, label  (one row per image)
    ds.submission_columns                         # the sample submission's exact column strings, in its order

Hecto: `train/<class>/*.jpg`, `test/*.jpg`, `test.csv` (ID,img_path), `sample_submission.csv` (ID + classes).
ImageFolder: `train/<class>/*`, optional `test/*` (IDs = file stems); submission columns = sorted class names.

Class names are normalised to NFC everywhere: the real Hecto archive was zipped on macOS and its folder names
are NFD, while its sample_submission.csv is NFC. Paths keep the bytes found on disk / in the bucket (an NFD key
must be read back as NFD); only labels are normalised. Submission columns keep the sample's exact strings.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from finegrain import storage
from finegrain.data.links import links_message, refused_links

__all__ = ["Dataset", "DatasetError", "detect_layout", "nfc", "read_dataset"]

LAYOUTS = ("hecto", "imagefolder")
DEFAULT_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class DatasetError(ValueError):
    """The dataset on disk / in the bucket does not have the expected layout; the message names the file."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """The dataset root itself is missing: an input/storage problem (the CLI exits 2), not a bad dataset."""


def nfc(text: str) -> str:
    """A class name in NFC: the one normal form labels, submission columns and groups are compared in."""
    return unicodedata.normalize("NFC", str(text))


@dataclass
class Dataset:
    root: str
    layout: str  # "hecto" | "imagefolder"
    images: pd.DataFrame  # image_id, path, split ("train"|"test"), label (NFC class name; "" for test)
    classes: list[str]  # sorted NFC train class names
    submission_columns: list[str]  # exact sample_submission column strings (minus ID), in its order
    test_ids: list[str]  # test.csv order (Hecto) / sorted file stems (ImageFolder)
    skipped: list[str] = field(
        default_factory=list
    )  # files not used: other extensions, test files not listed

    def column_to_class(self) -> dict[str, str]:
        """Exact submission column -> NFC class name."""
        return {col: nfc(col) for col in self.submission_columns}

    @property
    def train(self) -> pd.DataFrame:
        return self.images[self.images["split"] == "train"]

    @property
    def test(self) -> pd.DataFrame:
        return self.images[self.images["split"] == "test"]



def _root(uri: str) -> str:
    uri = str(uri)
    # Absolute local paths: the table is handed to steps that may run from another working directory.
    return uri.rstrip("/") if storage.is_s3(uri) else str(Path(uri).absolute())


def _list_files(root: str) -> dict[str, str]:
    """Relative posix path -> full URI of every file under the root; DatasetError when the root is missing."""
    if not storage.is_s3(root):
        if not Path(root).is_dir():
            raise DatasetNotFoundError(f"{root}: dataset root not found (no such directory)")
        refused = refused_links(root)
        if refused:
            raise DatasetError(links_message(root, refused))
        return {Path(p).relative_to(root).as_posix(): p for p in storage.list_uris(root)}
    files = storage.list_uris(root)
    if not files:
        raise DatasetNotFoundError(f"{root}: dataset root not found (no objects under this prefix)")
    return {uri[len(root) + 1 :]: uri for uri in files}


def _detect(rels: dict[str, str], root: str) -> str:
    if "test.csv" in rels or "sample_submission.csv" in rels:
        return "hecto"
    if any(r.startswith("train/") for r in rels):
        return "imagefolder"
    raise DatasetError(
        f"{root}: cannot detect the layout: no test.csv or sample_submission.csv (Hecto) and no train/ folder "
        "(ImageFolder)"
    )


def detect_layout(uri: str) -> str:
    """'hecto' when test.csv or sample_submission.csv sits at the root, else 'imagefolder' when train/ exists."""
    root = _root(uri)
    return _detect(_list_files(root), root)


def _is_image(rel: str, extensions: Sequence[str]) -> bool:
    return rel.lower().endswith(tuple(e.lower() for e in extensions))


def _stem(rel: str) -> str:
    name = rel.rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] if "." in name else name


def _without_ext(rel: str) -> str:
    head, _, name = rel.rpartition("/")
    return f"{head}/{_stem(name)}" if head else _stem(name)



def _train_rows(
    root: str, rels: dict[str, str], extensions: Sequence[str], skipped: list[str]
) -> tuple[list[dict], list[str]]:
    """Rows for train/<class>/**, sorted by image_id, and the sorted NFC class names."""
    if not any(r.startswith("train/") for r in rels):
        raise DatasetError(
            f"{storage.join(root, 'train')}: train/ folder not found (expected train/<class>/*)"
        )
    rows, folders = [], Counter()
    for rel, uri in rels.items():
        if not rel.startswith("train/"):
            continue
        parts = rel.split("/")
        if len(parts) < 3:
            if _is_image(rel, extensions):
                raise DatasetError(f"{uri}: image directly under train/; expected train/<class>/<file>")
            skipped.append(uri)
            continue
        folders[parts[1]] += 0
        if not _is_image(rel, extensions):
            skipped.append(uri)
            continue
        folders[parts[1]] += 1
        rows.append(
            {"image_id": nfc(_without_ext(rel)), "path": uri, "split": "train", "label": nfc(parts[1])}
        )
    if not storage.is_s3(root):
        # Object stores have no empty folders, but a local tree can: count those as classes without images.
        for child in Path(root, "train").iterdir():
            if child.is_dir():
                folders[child.name] += 0
    for folder, count in sorted(folders.items()):
        if count == 0:
            raise DatasetError(
                f"{storage.join(root, 'train', folder)}: empty class folder (no {'/'.join(extensions)} images)"
            )
    if not rows:
        raise DatasetError(f"{storage.join(root, 'train')}: no images in train/<class>/ folders")
    rows.sort(key=lambda r: r["image_id"])
    _check_unique([r["image_id"] for r in rows], [r["path"] for r in rows], "train image_id")
    return rows, sorted({r["label"] for r in rows})


def _check_unique(ids: list[str], where: list[str], what: str) -> None:
    seen: dict[str, str] = {}
    for i, w in zip(ids, where):
        if i in seen:
            raise DatasetError(f"{w}: duplicate {what} {i!r} (also {seen[i]})")
        seen[i] = w



def _read_csv(uri: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a CSV, decoded as utf-8-sig (Excel-written files start with a BOM)."""
    try:
        text = storage.read_bytes(uri).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{uri}: not UTF-8 text ({exc})") from None
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        raise DatasetError(f"{uri}: empty CSV (no header)")
    return [h.strip() for h in rows[0]], [r for r in rows[1:] if any(cell.strip() for cell in r)]


def _hecto_test(root: str, rels: dict[str, str], skipped: list[str]) -> list[dict]:
    uri = storage.join(root, "test.csv")
    if "test.csv" not in rels:
        raise DatasetError(f"{uri}: test.csv not found (Hecto layout needs ID,img_path)")
    header, body = _read_csv(uri)
    missing = [c for c in ("ID", "img_path") if c not in header]
    if missing:
        raise DatasetError(f"{uri}: missing column(s) {missing}; header is {header}")
    i_id, i_path = header.index("ID"), header.index("img_path")
    by_nfc = {nfc(r): r for r in rels}
    rows, used = [], set()
    for line, row in enumerate(body, start=2):
        if len(row) <= max(i_id, i_path):
            raise DatasetError(f"{uri}:{line}: row has {len(row)} fields, expected {len(header)}")
        image_id, img_path = row[i_id].strip(), row[i_path].strip()
        rel = img_path.replace("\\", "/").removeprefix("./").lstrip("/")
        found = rel if rel in rels else by_nfc.get(nfc(rel))
        if found is None:
            raise DatasetError(
                f"{uri}:{line}: ID {image_id} names {img_path}, which does not exist under {root}"
            )
        used.add(found)
        rows.append({"image_id": image_id, "path": rels[found], "split": "test", "label": ""})
    _check_unique([r["image_id"] for r in rows], [f"{uri}:{n}" for n in range(2, len(rows) + 2)], "test ID")
    skipped.extend(u for r, u in rels.items() if r.startswith("test/") and r not in used)
    return rows


def _hecto_columns(root: str, rels: dict[str, str], classes: list[str], test_ids: list[str]) -> list[str]:
    uri = storage.join(root, "sample_submission.csv")
    if "sample_submission.csv" not in rels:
        raise DatasetError(
            f"{uri}: sample_submission.csv not found (Hecto layout needs ID + one column per class)"
        )
    header, body = _read_csv(uri)
    if not header or header[0] != "ID":
        raise DatasetError(f"{uri}: first column must be ID; header starts with {header[:1]}")
    columns = header[1:]
    _check_unique([nfc(c) for c in columns], [uri] * len(columns), "submission column (after NFC)")
    known = set(classes)
    unmatched = [c for c in columns if nfc(c) not in known]
    if unmatched:
        raise DatasetError(f"{uri}: column(s) with no matching train/<class> folder: {unmatched[:10]}")
    have = {nfc(c) for c in columns}
    no_column = [c for c in classes if c not in have]
    if no_column:
        raise DatasetError(f"{uri}: train class(es) with no submission column: {no_column[:10]}")
    sample_ids = [r[0].strip() for r in body if r]
    if sample_ids and set(sample_ids) != set(test_ids):
        extra = sorted(set(sample_ids) - set(test_ids))[:5]
        lacking = sorted(set(test_ids) - set(sample_ids))[:5]
        raise DatasetError(
            f"{uri}: IDs differ from test.csv (only here: {extra}; only in test.csv: {lacking})"
        )
    return columns



def _imagefolder_test(rels: dict[str, str], extensions: Sequence[str], skipped: list[str]) -> list[dict]:
    rows = []
    for rel, uri in rels.items():
        if not rel.startswith("test/"):
            continue
        if not _is_image(rel, extensions):
            skipped.append(uri)
            continue
        rows.append({"image_id": _stem(rel), "path": uri, "split": "test", "label": ""})
    rows.sort(key=lambda r: r["image_id"])
    _check_unique([r["image_id"] for r in rows], [r["path"] for r in rows], "test ID (file stem)")
    return rows


def read_dataset(uri: str, layout: str = "auto", extensions: Sequence[str] = DEFAULT_EXTENSIONS) -> Dataset:
    """Read a Hecto or ImageFolder dataset (local dir or s3:// prefix); DatasetError names what is wrong."""
    root = _root(uri)
    rels = _list_files(root)
    if layout == "auto":
        layout = _detect(rels, root)
    if layout not in LAYOUTS:
        raise DatasetError(
            f"{root}: unknown layout {layout!r}; choose one of ['auto', 'hecto', 'imagefolder']"
        )
    skipped: list[str] = []
    train, classes = _train_rows(root, rels, extensions, skipped)
    if layout == "hecto" and _detect(rels, root) == "imagefolder":
        raise DatasetError(
            f"{root}: data.layout is 'hecto' but there is no test.csv or sample_submission.csv; this looks like an "
            "ImageFolder set (train/<class>/, test/): set data.layout: auto (or --set data.layout=auto)"
        )
    if layout == "hecto":
        test = _hecto_test(root, rels, skipped)
        test_ids = [r["image_id"] for r in test]
        columns = _hecto_columns(root, rels, classes, test_ids)
    else:
        test = _imagefolder_test(rels, extensions, skipped)
        test_ids = [r["image_id"] for r in test]
        columns = list(classes)
    images = pd.DataFrame(train + test, columns=["image_id", "path", "split", "label"])
    return Dataset(
        root=root,
        layout=layout,
        images=images.reset_index(drop=True),
        classes=classes,
        submission_columns=columns,
        test_ids=test_ids,
        skipped=sorted(skipped),
    )
