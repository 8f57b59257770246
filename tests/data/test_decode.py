"""One decoder: every file preprocess calls ok decodes in training, to the pixels serving sees.

Planted: PCX, ICO and float32 TIFF under .jpg/.png names (PIL reads them, OpenCV -- the old training decoder --
does not), an alpha PNG whose transparent half hides black, and the usual odd-but-usable kinds.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from finegrain.config import load_config
from finegrain.data.decode import UndecodableImageError, check_image, decode_image
from finegrain.data.loader import build_image_cache
from finegrain.preprocess.dedup.normalize import DETAIL as THUMB  # what the scan drafts JPEGs to
from finegrain.steps import preprocess
from finegrain.tracking.pyfunc import EnsembleModel

H, W = 48, 64


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _photo(seed: int, h: int = H, w: int = W) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.repeat(np.repeat(rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8), 8, 0), 8, 1)


def _alpha_png() -> bytes:
    rgba = np.dstack([_photo(1), np.full((H, W), 255, np.uint8)])
    rgba[:, : W // 2] = 0  # transparent black: OpenCV's IMREAD_COLOR used to keep the black
    return _save(Image.fromarray(rgba, "RGBA"), "PNG")


def _float_tiff(values: np.ndarray) -> bytes:
    return _save(Image.fromarray(values.astype(np.float32), "F"), "TIFF")


def _exif_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return _save(Image.fromarray(_photo(2)), "JPEG", exif=exif.tobytes())


def _palette_transparent_gif() -> bytes:
    img = Image.fromarray(_photo(3)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return _save(img, "GIF", transparency=0)


GOOD = {  # name on disk -> bytes; all usable, whatever the extension claims
    "pcx.jpg": lambda: _save(Image.fromarray(_photo(4)), "PCX"),
    "ico.png": lambda: _save(Image.fromarray(_photo(5, H, H)), "ICO", sizes=[(H, H)]),
    "float01.jpg": lambda: _float_tiff(np.linspace(0, 1, H * W).reshape(H, W)),
    "float255.png": lambda: _float_tiff(np.linspace(0, 255, H * W).reshape(H, W)),
    "alpha.png": _alpha_png,
    "gif.jpg": _palette_transparent_gif,
    "cmyk.jpg": lambda: _save(Image.fromarray(_photo(6)).convert("CMYK"), "JPEG"),
    "gray16.png": lambda: _save(Image.fromarray((np.arange(H * W).reshape(H, W) * 20).astype(np.uint16)), "PNG"),
    "exif.jpg": _exif_jpeg,
    "plain.jpg": lambda: _save(Image.fromarray(_photo(7)), "JPEG"),
}
BAD = {  # refused with a reason saying why, everywhere
    "float_wild.jpg": (lambda: _float_tiff(np.linspace(-5, 300, H * W).reshape(H, W)), "neither [0, 1] nor [0, 255]"),
    "float_nan.png": (lambda: _float_tiff(np.full((H, W), np.nan)), "NaN"),
}


def _dataset(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / "train" / c).mkdir(parents=True)
        for i in range(3):
            data = _save(Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)), "JPEG")
            (root / "train" / c / f"{c}{i}.jpg").write_bytes(data)
    for name, make in GOOD.items():
        (root / "train" / "a" / name).write_bytes(make())
    for name, (make, _) in BAD.items():
        (root / "train" / "b" / name).write_bytes(make())
    (root / "test").mkdir()
    (root / "test" / "t.png").write_bytes(_alpha_png())
    return root


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("decode")
    data = _dataset(root / "data")
    cfg = load_config("configs/sample.yaml", ["data.layout=imagefolder"])
    cfg.preprocess.workers = 1
    preprocess.run(cfg, str(data), str(root / "prep"))
    return root, pd.read_parquet(root / "prep" / "manifest.parquet").set_index("image_id")


def _served_images(monkeypatch, blobs: list[bytes]) -> list[np.ndarray]:
    """The pixels the registered model's predict hands to its members, for these encoded files."""
    model = EnsembleModel()
    model.classes = ["a", "b"]
    model.spec = {"columns": ["a", "b"], "column_to_class": {"a": "a", "b": "b"}, "aliases": {}, "alias_mode": "split"}
    seen: list[np.ndarray] = []

    def proba(images):
        seen.extend(images)
        return np.full((len(images), 2), 0.5)

    monkeypatch.setattr(model, "predict_proba", proba)
    model.predict(None, pd.DataFrame({"image": blobs}))
    return seen


def test_preprocess_verdicts_on_planted_formats(prepared) -> None:
    _, manifest = prepared
    for name in GOOD:
        row = manifest.loc[f"train/a/{Path(name).stem}"]
        assert row.status != "corrupt", (name, row.reason)
    for name, (_, why) in BAD.items():
        row = manifest.loc[f"train/b/{Path(name).stem}"]
        assert row.status == "corrupt" and why in row.reason, (name, row.reason)
    assert "alpha flattened on white" in manifest.loc["train/a/alpha"].reason
    assert "float [0, 1] image scaled" in manifest.loc["train/a/float01"].reason


def test_every_ok_file_decodes_in_training_as_in_serving(prepared, monkeypatch) -> None:
    root, manifest = prepared
    usable = manifest[manifest.status != "corrupt"]
    paths = usable.path.tolist()
    # Short side of every picture: the cache's resize is then the identity, so raw decoded pixels compare.
    blobs = [Path(p).read_bytes() for p in paths]
    sides = {min(decode_image(b).shape[:2]) for b in blobs}
    assert sides == {H}, sides
    cache = build_image_cache(paths, short_side=H, cache_root=root / "cache", workers=2)  # OpenCV raised here
    served = _served_images(monkeypatch, blobs)
    for i, (path, blob) in enumerate(zip(paths, blobs)):
        trained = cache[i]
        assert trained.dtype == np.uint8 and trained.shape[2] == 3, path
        np.testing.assert_array_equal(trained, served[i], err_msg=path)
        checked = check_image(blob, max_pixels=40_000_000)  # preprocess's RGB view of the file
        np.testing.assert_array_equal(np.asarray(checked.image), served[i], err_msg=path)


def test_alpha_is_flattened_on_white_in_preprocess_training_and_serving(prepared, monkeypatch) -> None:
    root, manifest = prepared
    path = manifest.loc["train/a/alpha", "path"]
    blob = Path(path).read_bytes()
    trained = build_image_cache([path], short_side=H, cache_root=root / "cache-alpha")[0]
    served = _served_images(monkeypatch, [blob])[0]
    preprocessed = np.asarray(check_image(blob, max_pixels=40_000_000).image)
    scanned = np.asarray(check_image(blob, max_pixels=40_000_000, draft_size=THUMB, gray=True).image)
    for pixels in (trained, served, preprocessed):
        assert (pixels[:, : W // 2] == 255).all()  # the transparent half is white, not the black it hid
        np.testing.assert_array_equal(pixels[:, W // 2 :], _photo(1)[:, W // 2 :])
    assert (scanned[:, : W // 2] == 255).all()  # the luma the hashes come from agrees


def test_undecodable_bytes_name_the_file_and_the_reason() -> None:
    with pytest.raises(UndecodableImageError, match=r"s3://b/x\.jpg: .*not an image"):
        decode_image(b"<html>nope</html>", "s3://b/x.jpg")


def test_scan_verdict_equals_the_decoders_on_damaged_jpegs() -> None:
    # The scan validates a JPEG at 1/8 scale, as luma; the verdict must be the full decoder's. Truncations and
    # single-byte damage anywhere, baseline and progressive, 4:4:4 and 4:2:0.
    rng = np.random.default_rng(0)
    photo = np.asarray(Image.fromarray(_photo(8, 40, 48)).resize((400, 320), Image.Resampling.BICUBIC))
    checked = 0
    for progressive in (False, True):
        for subsampling in (0, 2):
            data = _save(Image.fromarray(photo), "JPEG", quality=90, progressive=progressive, subsampling=subsampling)
            cases = [data[: int(len(data) * f)] for f in np.linspace(0.05, 0.999, 12)]
            for _ in range(40):
                damaged = bytearray(data)
                damaged[rng.integers(0, len(data))] ^= int(rng.integers(1, 256))
                cases.append(bytes(damaged))
            for case in cases:
                scan_ok = check_image(case, max_pixels=40_000_000, draft_size=THUMB, gray=True).status == "ok"
                try:
                    decode_image(case)
                    decoded = True
                except UndecodableImageError:
                    decoded = False
                assert scan_ok == decoded
                checked += not decoded
    assert checked > 40  # the damage really produced refusals to agree on
