"""The registered ensemble as a caller outside the pipeline finds it, and the promotion gate, on a tiny learnable
dataset (each class a colour; tests/support/colour_dataset.py) with a labelled holdout set.

One chain (preprocess, two trained members, calibrate, ensemble) is registered three times, in order:
  v1  the trained members with a flat calibration (temperatures x1000: near-uniform)  -> first: champion
  v2  untrained members (fresh weights), same calibration files                      -> worse: champion stays
  v3  the trained members as calibrated                                               -> better: champion moves
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from finegrain.config import load_config
from finegrain.orchestration import layout
from finegrain.steps import calibrate, ensemble, preprocess, register, train
from tests.support.colour_dataset import make_colour_dataset
from tests.support.paths import REPO

pytestmark = pytest.mark.slow

BACKBONE = "test_efficientnet"
MARGIN = 0.01


@pytest.fixture(scope="module")
def chain(tmp_path_factory, mlflow_db_template):
    root = tmp_path_factory.mktemp("registry")
    make_colour_dataset(root / "data")
    make_colour_dataset(root / "holdout", per_class=10, n_test=0, seed=1)
    shutil.copyfile(mlflow_db_template, root / "mlruns.db")
    cfg = load_config(REPO / "configs" / "sample.yaml", [
        "data.folds=2", "data.layout=imagefolder", "data.aliases={}", f"train.backbones=[{BACKBONE}]",
        "train.image_size=32", "train.batch_size=8", "train.epochs=3", "train.max_steps_per_epoch=8",
        "train.num_workers=0", "train.head.name=linear", "train.head.embedding_dim=16", "train.lr=0.01",
        "train.warmup_epochs=0", "train.swa.enabled=false", "train.tta=[identity]", f"train.cache_dir={root / 'cache'}",
        "preprocess.workers=1", f"tracking.uri=sqlite:///{root / 'mlruns.db'}", f"promotion.min_improvement={MARGIN}",
        f"promotion.holdout_uri={root / 'holdout'}",
    ])  # fmt: skip
    out = root / "out"
    members = [layout.member_uri(str(out), BACKBONE, k) for k in range(2)]
    preprocess.run(cfg, str(root / "data"), str(out / "preprocess"))
    for k, member in enumerate(members):
        train.run(cfg, str(out / "preprocess"), k, BACKBONE, member)
    calibrate.run(cfg, members, str(out / "calibrate"))
    ensemble.run(cfg, members, str(out / "calibrate"), str(out / "ensemble"))
    return SimpleNamespace(cfg=cfg, root=root, out=out, members=members)


def _flat_calibration(chain) -> str:
    dst = chain.root / "variants" / "flat-calibration"
    shutil.copytree(chain.out / "calibrate", dst)
    cal = json.loads((dst / "calibration.json").read_text(encoding="utf-8"))
    for entry in cal.values():
        entry["temperature"] *= 1000.0
    (dst / "calibration.json").write_text(json.dumps(cal), encoding="utf-8")
    return str(dst)


def _untrained_members(chain) -> list[str]:
    from finegrain.config import config_from_dict
    from finegrain.models import build_model

    out = []
    for k, member in enumerate(chain.members):
        dst = Path(layout.member_uri(str(chain.root / "variants" / "untrained"), BACKBONE, k))
        shutil.copytree(member, dst)
        blob = torch.load(dst / "model.pt", map_location="cpu", weights_only=True)
        mcfg = config_from_dict(blob["config"])
        torch.manual_seed(k)
        fresh = build_model(mcfg.train.backbone(BACKBONE), mcfg.train.head, blob["num_classes"])
        blob["state_dict"] = fresh.state_dict()
        torch.save(blob, dst / "model.pt")
        out.append(str(dst))
    return out


def _register(chain, name: str, members: list[str], calibration: str) -> dict:
    return register.run(
        chain.cfg, members, calibration, str(chain.out / "ensemble"), str(chain.root / "data"), str(chain.root / name)
    )


@pytest.fixture(scope="module")
def versions(chain) -> dict:
    calibrated = str(chain.out / "calibrate")
    return {
        "first": _register(chain, "v1", chain.members, _flat_calibration(chain)),
        "worse": _register(chain, "v2", _untrained_members(chain), calibrated),
        "better": _register(chain, "v3", chain.members, calibrated),
    }


def _client(chain):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=chain.cfg.tracking.uri)


def _alias(chain, alias: str) -> str:
    return str(_client(chain).get_model_version_by_alias("finegrain-ensemble", alias).version)


def test_first_version_becomes_champion(versions):
    first = versions["first"]
    assert first["registered_model"] == "finegrain-ensemble/1"
    assert first["promotion"]["decision"] == "promoted" and first["promotion"]["champion_before"] is None


def test_worse_members_leave_the_champion_where_it_was(versions):
    p = versions["worse"]["promotion"]
    assert p["version"] == "2" and p["champion_before"] == "1"
    assert p["decision"] == "kept" and p["champion"] == "1", p
    assert p["challenger_logloss"] > p["champion_logloss"] - MARGIN


def test_better_members_move_the_champion(chain, versions):
    p = versions["better"]["promotion"]
    assert p["decision"] == "promoted" and p["champion_before"] == "1", p
    assert p["champion_logloss"] - p["challenger_logloss"] >= MARGIN
    assert p["images"] == 40 and p["eval_set"].startswith(f"holdout {chain.root / 'holdout'}")
    assert _alias(chain, "champion") == "3" and _alias(chain, "challenger") == "3"


def test_decision_scores_and_margin_are_version_tags_and_in_the_markdown(chain, versions):
    tags = _client(chain).get_model_version("finegrain-ensemble", "2").tags
    p = versions["worse"]["promotion"]
    assert tags["finegrain.promotion.decision"] == "kept"
    assert float(tags["finegrain.promotion.challenger_logloss"]) == pytest.approx(p["challenger_logloss"])
    assert float(tags["finegrain.promotion.champion_logloss"]) == pytest.approx(p["champion_logloss"])
    assert tags["finegrain.promotion.margin"] == str(MARGIN) and tags["finegrain.promotion.champion_before"] == "1"
    assert tags["finegrain.promotion.eval_set"].startswith("holdout ")
    page = (chain.root / "v2" / "registration.md").read_text(encoding="utf-8")
    assert "## Promotion gate: kept" in page and f"{p['challenger_logloss']:.4f}" in page
    assert f"{p['champion_logloss']:.4f}" in page and f"Margin: {MARGIN:g}" in page
    assert "`champion` is now version 1" in page


def test_a_missing_holdout_fails_before_anything_is_registered(chain, versions):
    cfg = chain.cfg.model_copy(deep=True)
    cfg.promotion.holdout_uri = str(chain.root / "no-such-holdout")
    with pytest.raises(FileNotFoundError, match="no-such-holdout"):
        register.run(cfg, chain.members, str(chain.out / "calibrate"), str(chain.out / "ensemble"),
                     str(chain.root / "data"), str(chain.root / "v-missing"))  # fmt: skip
    assert len(_client(chain).search_model_versions("name='finegrain-ensemble'")) == 3


def test_model_info_says_what_to_send(chain, versions):
    import mlflow

    mlflow.set_tracking_uri(chain.cfg.tracking.uri)
    info = mlflow.models.get_model_info("models:/finegrain-ensemble@champion")
    inputs = {c.name: (c.type.name, c.required) for c in info.signature.inputs.inputs}
    assert inputs == {"image": ("binary", False), "id": ("string", False), "path": ("string", False)}
    outputs = [c.name for c in info.signature.outputs.inputs]
    assert outputs == ["id", "blue", "green", "red", "yellow", "error"]
    assert info.saved_input_example_info["type"] == "dataframe"
    model_dir = Path(mlflow.artifacts.download_artifacts("models:/finegrain-ensemble@champion", dst_path=str(chain.root / "dl")))
    requirements = (model_dir / "requirements.txt").read_text().split()
    installed = {r.split("==")[0].lower(): r for r in requirements}
    for dist in ("mlflow", "torch", "timm", "numpy", "pandas", "pillow", "scipy", "pydantic"):
        from importlib.metadata import version

        assert installed[dist] == f"{installed[dist].split('==')[0]}=={version(dist)}", requirements
    assert (model_dir / "code" / "finegrain" / "tracking" / "pyfunc.py").is_file()
    assert not list((model_dir / "code").rglob("__pycache__"))
    # the serving example, as a request carries it (base64 in JSON), is a usable image for the model
    example = json.loads((model_dir / "serving_input_example.json").read_text())["dataframe_split"]
    frame = pd.DataFrame(example["data"], columns=example["columns"])
    out = mlflow.pyfunc.load_model(str(model_dir)).predict(frame)
    assert "error" not in out.columns and list(out["id"]) == ["example"]  # a usable image


def test_each_member_weights_are_stored_once_per_version(chain, versions):
    """Member runs log no model.pt while a model is registered: the store holds two weight files per version."""
    store = chain.root / "mlartifacts"
    weights = sorted(store.rglob("*.pt"))
    assert all(p.parent.name == "artifacts" and p.name.startswith("member") for p in weights), weights
    assert len(weights) == 3 * len(chain.members)
    member_hashes = {hashlib.sha256(Path(m, "model.pt").read_bytes()).hexdigest() for m in chain.members}
    stored = [hashlib.sha256(p.read_bytes()).hexdigest() for p in weights]
    assert sum(h in member_hashes for h in stored) == 2 * len(chain.members)  # v1 and v3 hold them, once each


# Run in a fresh interpreter where finegrain cannot be imported from the installation: only from a model's code/.
_CLEAN_LOAD = r"""
import json, os, sys
from importlib.machinery import PathFinder

class OnlyModelCode:
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name != "finegrain":
            return None
        spec = PathFinder.find_spec(name, [p for p in sys.path if os.path.basename(p) == "code"])
        if spec is None:
            raise ModuleNotFoundError("finegrain is not installed here")
        return spec

sys.meta_path.insert(0, OnlyModelCode)
try:
    import finegrain  # noqa
    raise SystemExit("finegrain was importable before the model was loaded")
except ModuleNotFoundError:
    pass
import mlflow, pandas as pd
mlflow.set_tracking_uri(sys.argv[1])
model = mlflow.pyfunc.load_model("models:/finegrain-ensemble@champion", dst_path=sys.argv[2])
out = model.predict(pd.DataFrame({"image": [open(sys.argv[3], "rb").read()]}))
import finegrain
from importlib.metadata import distributions
owner = {}  # the distribution each installed file belongs to (namespace packages such as google.* share a name)
for dist in distributions():
    for f in dist.files or []:
        if f.suffix in (".py", ".so", ".pyd"):
            owner[os.path.normpath(str(dist.locate_file(f)))] = dist.metadata["Name"]
files = {os.path.normpath(m.__file__) for m in list(sys.modules.values()) if getattr(m, "__file__", None)}
print(json.dumps({"finegrain": finegrain.__file__, "error": out["error"][0] if "error" in out else "",
                  "imported": sorted({owner[f] for f in files if f in owner})}))
"""


def _requirement_closure(requirements: list[str]) -> set[str]:
    """Every distribution the pinned requirements pull in (their install_requires, recursively; no extras)."""
    from importlib.metadata import PackageNotFoundError, requires

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    todo, seen = [Requirement(r).name for r in requirements], set()
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            reqs = requires(name) or []
        except PackageNotFoundError:
            continue
        for text in reqs:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def test_loads_and_predicts_where_finegrain_is_not_installed(chain, versions):
    """The model's code/ and its pinned requirements are all a clean environment needs: finegrain comes from
    code/, and every distribution the model imports is a requirement or one of theirs."""
    from packaging.utils import canonicalize_name

    image = next((chain.root / "data" / "test").glob("*.jpg"))
    dst = chain.root / "clean-load"
    dst.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-c", _CLEAN_LOAD, chain.cfg.tracking.uri, str(dst), str(image)],
        capture_output=True, text=True, timeout=600, env=env, cwd=chain.root,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Path(result["finegrain"]).is_relative_to(dst / "code") and result["error"] == ""
    requirements = (dst / "requirements.txt").read_text().split()
    closure = _requirement_closure(requirements)
    imported = {canonicalize_name(d) for d in result["imported"]}
    # finegrain: this venv's editable-install finder (its .pth runs at start). The others are imported only because
    # they are installed here, each inside try/except ImportError: psutil by opentelemetry-sdk, pygments by mako,
    # nvidia-ml-py (pynvml) by mlflow's GPU monitor.
    optional = {"finegrain", "psutil", "pygments", "nvidia-ml-py"}
    assert imported - closure <= optional, sorted(imported - closure)
