"""The predict step's own rules, without a model: which files are images, their IDs, where the errors go, the
frames it writes, and the batch runner keeping input order while files fail to read or decode. The step end to
end (a registered model, a corrupt file among the test images) is in tests/orchestration/test_local_run.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from finegrain.steps.predict import errors_uri, frames, list_images, write_predictions
from finegrain.tracking.batch_predict import BatchResult, predict_uris

EXTENSIONS = [".jpg", ".png"]


def test_images_are_listed_by_path_with_ids_relative_to_the_root(tmp_path):
    for rel in ["b.jpg", "a.PNG", "sub/c.jpg", "notes.txt", ".hidden.jpg"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    ids, uris = list_images(str(tmp_path) + "/", EXTENSIONS)
    assert ids == ["a", "b", "sub/c"]
    assert uris == [str(tmp_path / "a.PNG"), str(tmp_path / "b.jpg"), str(tmp_path / "sub" / "c.jpg")]
    assert list_images(str(tmp_path / "b.jpg"), EXTENSIONS) == (["b"], [str(tmp_path / "b.jpg")])


def test_images_on_s3_get_ids_relative_to_the_prefix(s3_bucket):
    from finegrain import storage

    for rel in ["new/x.jpg", "new/deeper/y.png", "other/z.jpg"]:
        storage.write_bytes(f"{s3_bucket}/{rel}", b"x")
    assert list_images(f"{s3_bucket}/new", EXTENSIONS) == (
        ["deeper/y", "x"], [f"{s3_bucket}/new/deeper/y.png", f"{s3_bucket}/new/x.jpg"]
    )  # fmt: skip


def test_two_files_with_one_id_and_an_empty_folder_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no images"):
        list_images(str(tmp_path), EXTENSIONS)
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "a.png").write_bytes(b"x")
    with pytest.raises(ValueError, match="share the ID 'a'"):
        list_images(str(tmp_path), EXTENSIONS)


@pytest.mark.parametrize(
    "out, expected",
    [
        ("predictions.csv", "predictions.errors.csv"),
        ("runs/p/new.csv", "runs/p/new.errors.csv"),
        ("s3://b/p/out.csv", "s3://b/p/out.errors.csv"),
        ("s3://b/p/out", "s3://b/p/out.errors.csv"),
    ],
)
def test_errors_go_beside_the_predictions(out, expected):
    assert errors_uri(out) == expected


def test_frames_and_files_keep_input_order_and_list_the_failures(tmp_path):
    result = BatchResult(
        ["c1", "c2"], np.array([[0.1, 0.9], [np.nan, np.nan], [0.5, 0.5]]), ["", "not an image", ""]
    )
    predictions, errors = frames(["x", "y", "z"], ["/d/x.jpg", "/d/y.jpg", "/d/z.jpg"], result)
    assert list(predictions["ID"]) == ["x", "z"] and list(predictions.columns) == ["ID", "c1", "c2"]
    assert errors.to_dict("records") == [{"ID": "y", "path": "/d/y.jpg", "error": "not an image"}]
    summary = write_predictions(predictions, errors, str(tmp_path / "out" / "p.csv"))
    assert summary["rows"] == 2 and summary["unreadable"] == [{"path": "/d/y.jpg", "error": "not an image"}]
    assert (tmp_path / "out" / "p.csv").read_bytes().startswith(b"\xef\xbb\xbfID,c1,c2")
    back = pd.read_csv(tmp_path / "out" / "p.errors.csv", encoding="utf-8-sig")
    assert list(back["ID"]) == ["y"]


class _Echo:
    """A stand-in pyfunc: each image's first byte as the probability of c1; b"bad..." is refused."""

    class _Inner:
        spec = {"columns": ["c1", "c2"]}

    def unwrap_python_model(self):
        return self._Inner()

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        rows = []
        for i, data in enumerate(frame["image"]):
            if data.startswith(b"bad"):
                rows.append({"c1": None, "c2": None, "error": f"row {i}: cannot decode image: nope"})
            else:
                rows.append({"c1": data[0] / 255, "c2": 1 - data[0] / 255, "error": ""})
        return pd.DataFrame(rows)


def test_the_batch_runner_keeps_order_across_batches_read_failures_and_refusals(tmp_path):
    uris = []
    for i in range(7):
        path = tmp_path / f"{i}.jpg"
        path.write_bytes(b"bad" if i == 2 else bytes([i * 10]))
        uris.append(str(path))
    uris.insert(4, str(tmp_path / "gone.jpg"))
    done = []
    result = predict_uris(_Echo(), uris, batch_size=3, on_batch=done.append)
    assert done == [3, 3, 2]
    assert result.errors[2] == "cannot decode image: nope" and "cannot read" in result.errors[4]
    ok = [i for i, e in enumerate(result.errors) if not e]
    assert ok == [0, 1, 3, 5, 6, 7]
    np.testing.assert_allclose(result.probs[ok, 0], [0, 10 / 255, 30 / 255, 40 / 255, 50 / 255, 60 / 255])
    assert np.isnan(result.probs[[2, 4]]).all()
