"""Every bad-input kind gets status corrupt with a reason; the odd-but-usable ones become RGB and stay ok."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from finegrain.preprocess.validate import check_image, read_file, scan_image

LIMIT = {"max_pixels": 40_000_000, "min_side": 16}


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _photo(w: int = 120, h: int = 80) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


@pytest.mark.parametrize(
    "name, data, needle",
    [
        ("zero-byte", b"", "empty file"),
        ("truncated", _encode(_photo(), "JPEG")[:1500], "truncated"),
        ("not an image", b"<html>this is not a jpeg</html>" * 10, "not an image"),
        ("garbage after JPEG magic", b"\xff\xd8\xff\xe0" + b"\x00" * 300, "not an image"),
        ("too small", _encode(_photo(8, 8), "PNG"), "too small"),
    ],
)
def test_bad_files_are_corrupt_with_reason(name: str, data: bytes, needle: str) -> None:
    result = check_image(data, **LIMIT)
    assert result.status == "corrupt", name
    assert result.image is None
    assert needle.lower() in result.reason.lower(), result.reason


def test_decompression_bomb_refused_from_header_before_decoding(monkeypatch) -> None:
    data = _encode(_photo(400, 300), "PNG")
    decoded = []
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append(1))  # any decode attempt is recorded
    result = check_image(data, max_pixels=100_000, min_side=1)
    assert result.status == "corrupt" and "decompression bomb" in result.reason
    assert (result.width, result.height) == (400, 300)
    assert not decoded


def test_pil_bomb_error_is_caught() -> None:
    # Beyond PIL's own 2x MAX_IMAGE_PIXELS limit Image.open itself raises; that must still be a status, not a crash.
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = 1000
    try:
        result = check_image(_encode(_photo(400, 300), "PNG"), max_pixels=10**9, min_side=1)
    finally:
        Image.MAX_IMAGE_PIXELS = old
    assert result.status == "corrupt" and "decompression bomb" in result.reason


def _rgba() -> bytes:
    img = _photo().convert("RGBA")
    alpha = np.zeros((80, 120), np.uint8)
    alpha[:, 60:] = 255
    img.putalpha(Image.fromarray(alpha))
    return _encode(img, "PNG")


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    return _encode(_photo(120, 80), "JPEG", exif=exif.tobytes())


@pytest.mark.parametrize(
    "name, data, note",
    [
        ("alpha", _rgba(), "alpha flattened"),
        ("cmyk", _encode(_photo().convert("CMYK"), "JPEG"), "CMYK"),
        ("grayscale", _encode(_photo().convert("L"), "PNG"), "grayscale"),
        (
            "16-bit",
            _encode(Image.fromarray((np.arange(120 * 80).reshape(80, 120) * 6).astype(np.uint16)), "PNG"),
            "16-bit",
        ),
        ("exif", _exif_rotated(), "EXIF orientation 6"),
    ],
)
def test_odd_but_usable_images_become_rgb(name: str, data: bytes, note: str) -> None:
    result = check_image(data, **LIMIT)
    assert result.status == "ok", result.reason
    assert result.image is not None and result.image.mode == "RGB"
    assert note in result.reason
    if name == "exif":
        assert result.image.size == (80, 120) and (result.width, result.height) == (80, 120)
    if name == "alpha":
        px = np.asarray(result.image)
        assert (px[:, :60] == 255).all()  # transparent half flattened on white
    if name == "16-bit":
        px = np.asarray(result.image)[..., 0]
        assert px.max() > 200 and px.min() < 10  # scaled over the 8-bit range, not clipped to white


@pytest.mark.parametrize(
    "name, data, note",
    [
        ("colour jpeg", _encode(_photo(), "JPEG"), ""),
        ("grayscale jpeg", _encode(_photo().convert("L"), "JPEG"), "grayscale converted to RGB"),
        ("cmyk jpeg", _encode(_photo().convert("CMYK"), "JPEG"), "CMYK converted to RGB"),
        ("alpha png", _rgba(), "alpha flattened"),
        ("exif jpeg", _exif_rotated(), "EXIF orientation 6"),
    ],
)
def test_gray_mode_gives_luma_with_the_rgb_paths_notes(name: str, data: bytes, note: str) -> None:
    # The scan decodes as luma to save time, but the manifest's reason must say what training (RGB) will see.
    rgb, gray = check_image(data, **LIMIT), check_image(data, gray=True, **LIMIT)
    assert gray.status == "ok" and gray.image.mode == "L" and gray.reason == rgb.reason
    assert (note in gray.reason) if note else gray.reason == ""
    assert gray.image.size == rgb.image.size and (gray.width, gray.height) == (rgb.width, rgb.height)
    # JPEG luma is the RGB picture's gray up to rounding and chroma upsampling (a level or two).
    diff = np.abs(np.asarray(gray.image, np.float64) - np.asarray(rgb.image.convert("L"), np.float64))
    assert diff.mean() < 2.0, (name, diff.mean())


def test_gray_mode_still_catches_truncation() -> None:
    data = _encode(_photo(800, 600), "JPEG")
    assert check_image(data, gray=True, draft_size=64, **LIMIT).status == "ok"
    bad = check_image(data[: len(data) * 2 // 3], gray=True, draft_size=64, **LIMIT)
    assert bad.status == "corrupt" and "truncated" in bad.reason


def test_unreadable_path_is_never_corrupt(tmp_path) -> None:
    # Bytes that could not be read say nothing about the image: "unread" (the step fails on it), not corrupt.
    for uri in (tmp_path / "missing.jpg", tmp_path):  # gone, and a directory where a file was expected
        assert read_file(str(uri))[0] is None
        scan = scan_image(str(uri), **LIMIT)
        assert scan["status"] == "unread" and scan["reason"], scan


def test_transient_read_failure_raises_instead_of_judging(tmp_path, monkeypatch) -> None:
    from finegrain import storage
    from finegrain.preprocess.workers import TransientReadError

    def flaky(uri: str) -> bytes:
        raise OSError(5, "Input/output error")  # what a network file system says while its server is away

    monkeypatch.setattr(storage, "read_bytes", flaky)
    with pytest.raises(TransientReadError) as err:
        scan_image(str(tmp_path / "a.jpg"), **LIMIT)
    assert err.value.uri.endswith("a.jpg") and "Input/output error" in err.value.reason


def test_draft_decode_still_catches_truncation() -> None:
    data = _encode(_photo(800, 600), "JPEG")
    ok = check_image(data, draft_size=128, **LIMIT)
    assert ok.status == "ok" and ok.image.size[0] < 800 and (ok.width, ok.height) == (800, 600)
    bad = check_image(data[: len(data) * 2 // 3], draft_size=128, **LIMIT)
    assert bad.status == "corrupt" and "truncated" in bad.reason


@pytest.mark.parametrize("kept", [0.5, 0.9, 0.995])
def test_scan_at_thumbnail_draft_still_catches_truncation(tmp_path, kept: float) -> None:
    # The scan decodes JPEGs at 1/8 scale (THUMB draft): every entropy-coded block must still be read.
    pixels = (np.random.default_rng(0).random((600, 800, 3)) * 255).astype(np.uint8)
    data = _encode(Image.fromarray(pixels), "JPEG", quality=90)
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: int(len(data) * kept)])
    scan = scan_image(str(path), **LIMIT)
    assert scan["status"] == "corrupt" and "truncated" in scan["reason"] and scan["sha256"]
    path.write_bytes(data)
    assert scan_image(str(path), **LIMIT)["status"] == "ok"
