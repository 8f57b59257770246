"""What a dataset must have before anything is trained on it, and which declared aliases apply to it.

    aliases, ignored = dataset_aliases(cfg.data.aliases, ds.classes)   # the pairs this dataset has
    notes = check_dataset(ds, cfg.data.folds, cfg.data.aliases)       # DatasetError naming the fix, or notes

Checked on the file listing, so a dataset that cannot make a submission fails in seconds (before preprocess
decodes a single image, and in `finegrain run` before any task starts): at least one test image (an empty test
set would make an empty "valid" submission), at least two classes (a classifier of one class predicts nothing),
and in every class at least as many images as folds (each fold's validation set must hold every class, or its
member never learns that class while being scored on it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from finegrain.data.layouts import Dataset, DatasetError, nfc

SHOWN = 10  # names listed in one error line


def dataset_aliases(
    aliases: Mapping[str, str], classes: Sequence[str]
) -> tuple[dict[str, str], dict[str, str]]:
    """Split declared `{alias: canonical}` pairs into those whose two classes this dataset has, and the rest.

    A pair naming a class the dataset does not have cannot merge anything here (a config written for another
    dataset, like the sample's pair), and an alias whose canonical class is missing would leave predictions with
    no submission column; both are ignored. Preprocess and submit use this one rule, so they agree.
    """
    have = {nfc(c) for c in classes}
    kept, ignored = {}, {}
    for alias, canonical in aliases.items():
        if nfc(alias) in have and nfc(canonical) in have:
            kept[nfc(alias)] = nfc(canonical)  # in the form the dataset's labels take
        else:
            ignored[alias] = canonical
    return kept, ignored


def ignored_aliases_note(ignored: Mapping[str, str]) -> str:
    """The one line saying which declared aliases this dataset does not use."""
    pairs = ", ".join(f"{a} -> {c}" for a, c in list(ignored.items())[:SHOWN])
    return (
        f"data.aliases: ignoring {len(ignored)} pair(s) naming a class this dataset does not have: {pairs}"
        f"{' ...' if len(ignored) > SHOWN else ''}"
    )


def _listing(names: list[str]) -> str:
    return ", ".join(names[:SHOWN]) + (f" ... ({len(names)} in all)" if len(names) > SHOWN else "")


def check_dataset(ds: Dataset, folds: int, aliases: Mapping[str, str] | None = None) -> list[str]:
    """DatasetError (one line naming the fix) when `ds` cannot train `folds` folds and make a submission.

    Returns notes worth a warning line (declared aliases this dataset ignores). Class sizes count image files
    after the applicable alias merges; preprocess checks again after dropping corrupt files and duplicates.
    """
    kept, ignored = dataset_aliases(aliases or {}, ds.classes)
    if not ds.test_ids:
        where = "test.csv lists no images" if ds.layout == "hecto" else "no images under test/"
        raise DatasetError(
            f"{ds.root}: no test images ({where}): the submission needs at least one; add the images to predict "
            f"({'test.csv and test/' if ds.layout == 'hecto' else 'test/<file>'})"
        )
    sizes = Counter(kept.get(label, label) for label in ds.train["label"])
    if len(sizes) < 2:
        raise DatasetError(
            f"{ds.root}: {len(sizes)} class ({_listing(sorted(sizes))}): a classifier needs at least 2 classes; "
            "add a train/<class>/ folder for each further class"
        )
    small = sorted((c for c, n in sizes.items() if n < folds), key=lambda c: (sizes[c], c))
    if small:
        raise DatasetError(
            f"{ds.root}: {len(small)} class(es) with fewer images than data.folds={folds}: "
            f"{_listing([f'{c} ({sizes[c]})' for c in small])}; every fold's validation set needs each class: "
            f"add images, remove those class folders, or lower data.folds (--set data.folds=N, N >= 2)"
        )
    return [ignored_aliases_note(ignored)] if ignored else []
