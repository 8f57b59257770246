"""Member loading (checks and errors), pickle-free npz round trips, and the synthetic member factory."""

from __future__ import annotations

import json

import numpy as np
import pytest

from finegrain import storage
from finegrain.posthoc.members import load_member, load_members, load_npz, save_npz
from tests.support.synthetic_members import make_members


def test_npz_round_trip_is_pickle_free(tmp_path) -> None:
    uri = str(tmp_path / "x.npz")
    save_npz(uri, ids=np.array(["가", "b"], dtype=object), logits=np.eye(2), classes=["현대", "기아"])
    out = load_npz(uri)
    assert out["ids"].dtype.kind == "U" and out["classes"].tolist() == ["현대", "기아"]
    np.testing.assert_array_equal(out["logits"], np.eye(2))
    # An object array that needs pickle is refused on load.
    np.savez(tmp_path / "p.npz", a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ValueError, match="pickle-free"):
        load_npz(str(tmp_path / "p.npz"))


def test_npz_round_trip_on_s3(s3_bucket) -> None:
    save_npz(f"{s3_bucket}/m/test.npz", image_id=["a", "b"], logits=np.ones((2, 3)))
    assert load_npz(f"{s3_bucket}/m/test.npz")["logits"].shape == (2, 3)


def test_synthetic_members_layout(tmp_path) -> None:
    uris = make_members(tmp_path, n_classes=6, n_per_class=10, backbones=("a", "b"), folds=3)
    members = load_members(uris)
    assert [m.key for m in members] == [f"{b}/fold{k}" for b in "ab" for k in range(3)]
    for backbone in "ab":
        ids = np.concatenate([m.oof_ids for m in members if m.backbone == backbone])
        assert len(ids) == 60 and len(set(ids)) == 60  # every train row out-of-fold exactly once
    assert all(np.array_equal(m.test_ids, members[0].test_ids) for m in members)
    a = [m.metrics["val_logloss"] for m in members if m.backbone == "a"]
    b = [m.metrics["val_logloss"] for m in members if m.backbone == "b"]
    assert np.mean(a) < np.mean(b)  # backbones differ in quality
    assert members[0].oof_embeddings.shape == (len(members[0].oof_ids), 16)


def test_load_member_names_missing_file(tmp_path) -> None:
    uri = make_members(tmp_path, backbones=("a",), folds=2)[0]
    (tmp_path / "members" / "a" / "fold0" / "test.npz").unlink()
    with pytest.raises(FileNotFoundError, match="test.npz"):
        load_member(uri)


def test_load_member_names_missing_key_and_bad_shapes(tmp_path) -> None:
    uri = make_members(tmp_path, backbones=("a",), folds=2)[0]
    oof_uri = storage.join(uri, "oof.npz")
    oof = load_npz(oof_uri)
    save_npz(oof_uri, **{k: v for k, v in oof.items() if k != "labels"})
    with pytest.raises(ValueError, match=r"oof.npz: missing array\(s\) \['labels'\]"):
        load_member(uri)
    save_npz(oof_uri, **(oof | {"logits": oof["logits"][:, :-1]}))
    with pytest.raises(ValueError, match="oof.npz: logits shape"):
        load_member(uri)
    save_npz(oof_uri, **(oof | {"labels": oof["labels"][:-1]}))
    with pytest.raises(ValueError, match="do not match logits rows"):
        load_member(uri)
    save_npz(oof_uri, **oof)
    storage.write_text(storage.join(uri, "metrics.json"), json.dumps({"fold": 0}))
    with pytest.raises(ValueError, match="metrics.json: missing field 'backbone'"):
        load_member(uri)


def test_load_members_checks_class_order_and_duplicates(tmp_path) -> None:
    a = make_members(tmp_path / "x", backbones=("a",), folds=2)
    names = [f"class_{i:03d}" for i in range(12)]
    b = make_members(tmp_path / "y", backbones=("b",), folds=2, classes=names[::-1])
    with pytest.raises(ValueError, match="different order"):
        load_members(a + b)
    with pytest.raises(ValueError, match="also used by"):
        load_members([a[0], a[0]])
    with pytest.raises(ValueError, match="no members"):
        load_members([])
