"""The served model's input rules, without a trained model: what a row may carry, what makes it an error row, and
that server-side files stay closed unless the deployment opens one directory. Also what is logged with it."""

from __future__ import annotations

import base64
import io
import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from finegrain.tracking.pyfunc import PATH_ROOT_ENV, EnsembleModel, image_bytes, read_under, row_bytes
from finegrain.tracking.registry import SERVING_MODULES, input_example, model_signature, pinned_requirements


def _jpeg(width: int = 40, height: int = 30) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 90, np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def _model(min_side: int = 16, max_pixels: int = 40_000_000) -> tuple[EnsembleModel, list]:
    """An EnsembleModel whose members are replaced by a stub that records the images it is given."""
    model = EnsembleModel()
    model.classes = ["a", "b"]
    model.spec = {
        "columns": ["a", "b"], "column_to_class": {"a": "a", "b": "b"}, "aliases": {}, "alias_mode": "split",
        "min_side": min_side, "max_pixels": max_pixels,
    }  # fmt: skip
    seen: list = []

    def proba(images):
        seen.extend(images)
        return np.tile([0.25, 0.75], (len(images), 1))

    model.predict_proba = proba
    return model, seen


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b"\xff\xd8raw", id="raw-bytes"),
        pytest.param(bytearray(b"\xff\xd8raw"), id="bytearray"),
        pytest.param(base64.b64encode(b"\xff\xd8raw").decode(), id="base64"),
        pytest.param(base64.encodebytes(b"\xff\xd8raw" * 40).decode(), id="base64-with-newlines"),
        pytest.param("data:image/jpeg;base64," + base64.b64encode(b"\xff\xd8raw").decode(), id="data-url"),
    ],
)
def test_image_cells_are_bytes_or_base64(value):
    expected = b"\xff\xd8raw" * (40 if isinstance(value, str) and "\n" in value else 1)
    assert image_bytes(value) == expected


@pytest.mark.parametrize("value, why", [("not base64!", "not valid base64"), (42, "not int")])
def test_other_cells_are_refused_with_the_reason(value, why):
    with pytest.raises(ValueError, match=why):
        image_bytes(value)


def test_bad_rows_get_their_reason_and_the_others_are_scored():
    model, seen = _model(min_side=16, max_pixels=10_000)
    rows = [
        ("ok", base64.b64encode(_jpeg()).decode()),
        ("garbage", base64.b64encode(b"<html>no</html>").decode()),
        ("truncated", _jpeg()[:200]),
        ("tiny", _jpeg(12, 10)),
        ("bomb", _jpeg(200, 100)),  # 20,000 pixels > max_pixels: refused from the header
        ("empty", None),
        ("ok-bytes", _jpeg()),
    ]
    frame = pd.DataFrame({"id": [r[0] for r in rows], "image": [r[1] for r in rows]})
    out = model.predict(None, frame)
    assert list(out.columns) == ["id", "a", "b", "error"] and list(out["id"]) == [r[0] for r in rows]
    errors = dict(zip(out["id"], out["error"]))
    assert errors["ok"] == errors["ok-bytes"] == "" and len(seen) == 2
    assert "row 1: cannot decode image" in errors["garbage"] and "not an image" in errors["garbage"]
    assert "row 2: cannot decode image (200 bytes)" in errors["truncated"]
    assert "too small: 12x10 < preprocess.min_side 16" in errors["tiny"]
    assert "decompression bomb refused before decoding" in errors["bomb"]
    assert errors["empty"] == "row 5: no image (column 'image' is empty)"
    bad = out["error"] != ""
    assert out.loc[bad, ["a", "b"]].isna().all().all()
    assert out.loc[bad, "a"].tolist() == [None] * int(bad.sum())  # null in JSON, not NaN
    np.testing.assert_allclose(out.loc[~bad, ["a", "b"]].to_numpy(dtype=float), [[0.25, 0.75]] * 2)


def test_a_batch_of_good_images_gets_the_columns_alone_as_floats():
    model, _ = _model()
    out = model.predict(None, pd.DataFrame({"image": [_jpeg(), _jpeg()]}))
    assert list(out.columns) == ["a", "b"] and out["a"].dtype == np.float64


def test_server_side_paths_are_refused_unless_the_deployment_opens_a_directory(monkeypatch):
    monkeypatch.delenv(PATH_ROOT_ENV, raising=False)
    model, _ = _model()
    with pytest.raises(ValueError, match=f"reads no server-side files.*{PATH_ROOT_ENV}"):
        model.predict(None, pd.DataFrame({"path": ["/etc/passwd"]}))


def test_paths_are_read_only_inside_the_opened_directory(tmp_path, monkeypatch):
    root, outside = tmp_path / "images", tmp_path / "secret"
    root.mkdir()
    outside.mkdir()
    (root / "a.jpg").write_bytes(_jpeg())
    (outside / "b.jpg").write_bytes(_jpeg())
    os.symlink(outside / "b.jpg", root / "link.jpg")
    monkeypatch.setenv(PATH_ROOT_ENV, str(root))
    model, seen = _model()
    paths = ["a.jpg", str(root / "a.jpg"), "../secret/b.jpg", str(outside / "b.jpg"), "link.jpg", "missing.jpg"]
    out = model.predict(None, pd.DataFrame({"path": paths}))
    errors = list(out["error"])
    assert errors[:2] == ["", ""] and len(seen) == 2
    for why in errors[2:5]:
        assert f"is outside {PATH_ROOT_ENV}" in why
    assert "cannot read path 'missing.jpg'" in errors[5] and str(root) not in errors[5]


def test_read_under_refuses_escapes(tmp_path):
    with pytest.raises(ValueError, match="outside"):
        read_under(str(tmp_path), "../x")


def test_a_frame_without_image_or_path_is_refused():
    with pytest.raises(ValueError, match="needs a column 'image'"):
        row_bytes(pd.DataFrame({"picture": [b""]}), None)


def test_signature_and_input_example_say_what_to_send():
    signature = model_signature(["a", "b"])
    assert [(c.name, c.type.name, c.required) for c in signature.inputs.inputs] == [
        ("image", "binary", False), ("id", "string", False), ("path", "string", False)
    ]  # fmt: skip
    assert [(c.name, c.required) for c in signature.outputs.inputs] == [
        ("id", False), ("a", True), ("b", True), ("error", False)
    ]  # fmt: skip
    example = input_example(min_side=100)
    assert list(example.columns) == ["image", "id"]
    with Image.open(io.BytesIO(example["image"][0])) as img:
        assert img.format == "JPEG" and min(img.size) >= 100


def test_requirements_pin_what_the_model_imports_to_the_installed_versions():
    from importlib.metadata import version

    pins = dict(r.split("==") for r in pinned_requirements())
    assert len(pins) == len(SERVING_MODULES)  # one distribution per module; mlflow, not mlflow-skinny too
    assert pins["mlflow"] == version("mlflow") and pins["torch"] == version("torch")
    assert pins["pillow"] == version("pillow") and pins["PyYAML"] == version("pyyaml")
