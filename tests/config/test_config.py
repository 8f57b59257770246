"""finegrain.config: YAML + `key=value` overrides, errors that name the key, the shipped configs, save/load."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from finegrain.config import Config, ConfigError, config_from_dict, load_config, parse_override
from tests.support.paths import REPO


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", ["sample.yaml", "small.yaml", "hecto.yaml"])
def test_shipped_configs_load(name: str) -> None:
    cfg = load_config(REPO / "configs" / name)
    assert cfg.train.backbones and cfg.data.folds >= 2
    for alias, canonical in cfg.data.aliases.items():
        assert alias != canonical


def test_hecto_declares_the_five_alias_pairs() -> None:
    cfg = load_config(REPO / "configs" / "hecto.yaml")
    assert cfg.data.aliases["RAV4_2016_2018"] == "라브4_4세대_2013_2018"
    assert len(cfg.data.aliases) == 5


def test_unknown_key_in_file_names_key_and_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "train:\n  epochz: 3\n")
    with pytest.raises(ConfigError, match=r"train\.epochz: unknown key") as err:
        load_config(path)
    assert str(path) in str(err.value)


def test_unknown_key_in_override_names_key() -> None:
    with pytest.raises(ConfigError, match=r"train\.head\.marginn: unknown key"):
        load_config(None, ["train.head.marginn=0.3"])
    with pytest.raises(ConfigError, match=r"trian: unknown key"):
        load_config(None, ["trian.epochs=2"])


def test_a_replaced_near_duplicate_setting_says_what_replaced_it(tmp_path: Path) -> None:
    path = _write(tmp_path, "preprocess:\n  near_dup_distance: 8\n")
    with pytest.raises(ConfigError, match=r"near_dup_distance is no longer a setting: use near_dup_neighbours") as err:
        load_config(path)
    assert str(path) in str(err.value)
    with pytest.raises(ConfigError, match=r"confirm_max_local_diff is no longer a setting: use confirm_max_changed"):
        load_config(None, ["preprocess.confirm_max_local_diff=0.2"])
    assert load_config(None, ["preprocess.near_dup_neighbours=3"]).preprocess.near_dup_neighbours == 3


def test_unknown_key_inside_a_list_item_names_its_index(tmp_path: Path) -> None:
    path = _write(tmp_path, "train:\n  backbones:\n    - {name: convnext_tiny, pretrainde: true}\n")
    with pytest.raises(ConfigError, match=r"train\.backbones\.0\.pretrainde: unknown key"):
        load_config(path)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.epochs=abc", "train.epochs"),
        ("train.epochs=0", "train.epochs"),  # ge=1
        ("train.head.name=cosface", "train.head.name"),
        ("data.folds=[1, 2]", "data.folds"),
        ("calibrate.ece_bins=", "calibrate.ece_bins"),
    ],
)
def test_wrong_type_or_range_names_key(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"{key.replace('.', '[.]')}: "):
        load_config(None, [override])


def test_nested_overrides_apply_on_top_of_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "train:\n  epochs: 7\n  head: {name: arcface, margin: 0.5}\n")
    cfg = load_config(path, ["train.head.margin=0.3", "train.swa.enabled=false", "train.epochs=2"])
    assert cfg.train.epochs == 2
    assert cfg.train.head.name == "arcface" and cfg.train.head.margin == 0.3
    assert cfg.train.swa.enabled is False
    assert cfg.train.lr == Config().train.lr  # untouched keys keep their defaults


def test_override_values_are_parsed_as_yaml() -> None:
    cfg = load_config(
        None,
        [
            "data.aliases={RAV4_2016_2018: 라브4_4세대_2013_2018}",
            "train.backbones=[convnext_tiny]",
            "train.tta=[identity, hflip, vflip]",
            "train.max_steps_per_epoch=null",
            "tracking.enabled=no",
            "train.lr=3e-4",
        ],
    )
    assert cfg.data.aliases == {"RAV4_2016_2018": "라브4_4세대_2013_2018"}
    assert [b.name for b in cfg.train.backbones] == ["convnext_tiny"]
    assert cfg.train.backbones[0].pretrained is False
    assert cfg.train.tta == ["identity", "hflip", "vflip"]
    assert cfg.train.max_steps_per_epoch is None
    assert cfg.tracking.enabled is False
    assert cfg.train.lr == pytest.approx(3e-4)
    assert parse_override("a.b=x=y") == ("a.b", "x=y")  # only the first '=' splits


def test_malformed_overrides(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected key.path=value"):
        load_config(None, ["train.epochs"])
    with pytest.raises(ConfigError, match="empty key"):
        load_config(None, ["=3"])
    with pytest.raises(ConfigError, match=r"train\.epochs: is a value"):
        load_config(_write(tmp_path, "train: {epochs: 3}\n"), ["train.epochs.max=3"])
    with pytest.raises(ConfigError, match=r"train\.epochs: "):
        load_config(None, ["train.epochs.max=3"])
    with pytest.raises(ConfigError, match=r"data\.aliases: value .* not valid YAML"):
        load_config(None, ["data.aliases={a: [b"])


def test_alias_validation() -> None:
    with pytest.raises(ConfigError, match="'x' is mapped to itself"):
        config_from_dict({"data": {"aliases": {"x": "x"}}})
    with pytest.raises(ConfigError, match="'b' is itself an alias"):
        config_from_dict({"data": {"aliases": {"a": "b", "b": "c"}}})
    with pytest.raises(ConfigError, match=r"data\.aliases"):
        load_config(None, ["data.aliases=[a, b]"])  # a list where a mapping is needed


def test_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(_write(tmp_path, "train: [epochs: 3\n"))
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(_write(tmp_path, "- a\n- b\n"))
    assert load_config(_write(tmp_path, "")) == Config()  # an empty file is all defaults


def test_backbone_lookup() -> None:
    cfg = load_config(None, ["train.backbones=[convnext_tiny, {name: resnet18, image_size: 64}]"])
    assert cfg.train.backbone("resnet18").image_size == 64
    with pytest.raises(ConfigError, match="no backbone named 'vit'"):
        cfg.train.backbone("vit")


def _round_trip(out: str) -> None:
    """The config.yaml a step writes beside its outputs loads back as the same config."""
    from finegrain import storage
    from finegrain.steps.outputs import write_step_files

    cfg = load_config(REPO / "configs" / "hecto.yaml", ["train.epochs=2"])
    with storage.output_dir(out) as local:
        write_step_files(local, cfg, {})
    again = load_config(storage.join(out, "config.yaml"))
    assert again == cfg
    assert again.data.aliases["RAV4_2016_2018"] == "라브4_4세대_2013_2018"
    assert yaml.safe_load(cfg.to_yaml())["train"]["epochs"] == 2


def test_step_config_round_trip_local(tmp_path: Path) -> None:
    _round_trip(str(tmp_path / "step"))
    assert "라브4" in (tmp_path / "step" / "config.yaml").read_text(
        encoding="utf-8"
    )  # readable, not \u escapes


def test_step_config_round_trip_s3(s3_bucket: str) -> None:
    _round_trip(f"{s3_bucket}/runs/train/convnext/fold0")


def _alias_bomb(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.timeout(20, method="thread")  # a hang inside pydantic-core ignores signals
def test_alias_bomb_file_fails_fast_naming_the_file(tmp_path: Path) -> None:
    # Under a key that is validated: the error message would echo the value, walking all 9^9 leaves.
    path = _write(tmp_path, "train:\n  epochs: 2\ndata:\n  aliases:\n" + "".join(
        "    " + line + "\n" for line in _alias_bomb().splitlines()))  # fmt: skip
    with pytest.raises(ConfigError, match=r"cfg\.yaml: expands to more than 100000 nodes"):
        load_config(path)


@pytest.mark.timeout(20, method="thread")  # a hang inside pydantic-core ignores signals
def test_alias_bomb_override_fails_fast_naming_the_key() -> None:
    value = "{" + _alias_bomb().replace("\n", ", ").rstrip(", ") + "}"
    with pytest.raises(ConfigError, match=r"data\.aliases: override value expands to more than"):
        load_config(None, [f"data.aliases={value}"])


def test_recursive_alias_and_deep_nesting_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="recursive"):
        load_config(_write(tmp_path, "data: &d {uri: x, more: *d}\n"))
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config(_write(tmp_path, "data: " + "[" * 5000 + "]" * 5000 + "\n"))


def test_oversized_and_non_utf8_files_are_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * (1 << 20) + "\n")
    with pytest.raises(ConfigError, match=r"big\.yaml: larger than 1048576 bytes"):
        load_config(big)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("data: {aliases: {caf\xe9: cafe}}\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin\.yaml: not UTF-8 text"):
        load_config(latin)
    with pytest.raises(ConfigError, match="train.epochs: override value larger than 65536 bytes"):
        load_config(None, ["train.epochs=" + "1" * 70_000])


def test_anchors_within_the_limits_still_work(tmp_path: Path) -> None:
    text = "train:\n  backbones:\n    - &spec {name: resnet18, image_size: 64}\n  head: {name: linear}\n" \
           "regroup: {seed: &seed 7}\ncalibrate: {}\ndata: {seed: *seed}\n"  # fmt: skip
    cfg = load_config(_write(tmp_path, text))
    assert cfg.data.seed == 7 == cfg.regroup.seed and cfg.train.backbone("resnet18").image_size == 64


def test_linear_probe_must_leave_epochs_to_fine_tune() -> None:
    with pytest.raises(ConfigError, match="linear_probe_epochs"):
        config_from_dict({"train": {"epochs": 2, "linear_probe_epochs": 2}})
    assert config_from_dict({"train": {"epochs": 2, "linear_probe_epochs": 1.5}}).train.linear_probe_epochs == 1.5


def test_backbone_lr_scale_is_a_fraction() -> None:
    with pytest.raises(ConfigError, match="backbone_lr_scale"):
        config_from_dict({"train": {"backbone_lr_scale": 0}})


def test_crop_scale_is_an_ordered_fraction_of_the_area() -> None:
    assert config_from_dict({"train": {"crop_scale": [0.7, 1.0]}}).train.crop_scale == (0.7, 1.0)
    for bad in ([0.8, 0.5], [0.0, 1.0], [0.5, 1.2]):
        with pytest.raises(ConfigError, match="crop_scale"):
            config_from_dict({"train": {"crop_scale": bad}})
