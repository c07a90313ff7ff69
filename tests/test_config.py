import pytest

from pipeline.config import ConfigError, PipelineConfig, load_config, parse_set_flags


def test_defaults_are_offline_demo():
    cfg = load_config()
    assert isinstance(cfg, PipelineConfig)
    assert cfg.data.source == "demo" and cfg.data.layout == "bbbc020"
    assert cfg.train.encoder_weights is None
    assert cfg.tracking.mode == "offline"


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 9\n  encoder_weights: imagenet\ndata:\n  target: nuclei\n")
    cfg = load_config(path, {"train.epochs": "3", "data.channels": "c1,c5"})
    assert cfg.train.epochs == 3  # the override wins over the file
    assert cfg.train.encoder_weights == "imagenet"
    assert cfg.data.target == "nuclei"
    assert cfg.data.channels == ["c1", "c5"]
    assert load_config(None, {"baseline.methods": "[otsu, watershed]"}).baseline.methods == [
        "otsu",
        "watershed",
    ]


def test_numbers_as_users_write_them():
    # YAML 1.1 reads "1e-3" (no dot) as a string; it is a number here.
    cfg = load_config(None, {"train.lr": "1e-3", "baseline.watershed.min_distance": "7"})
    assert cfg.train.lr == 0.001 and cfg.baseline.watershed.min_distance == 7


def test_nested_sections_from_yaml_and_dotted_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "baseline:\n  watershed:\n    min_distance: 9\npostprocess:\n  threshold: 0.4\n"
    )
    cfg = load_config(path, {"postprocess.watershed.sigma": 2})
    assert cfg.baseline.watershed.min_distance == 9 and cfg.postprocess.threshold == 0.4
    assert cfg.postprocess.watershed.sigma == 2.0 and cfg.baseline.watershed.sigma == 1.0


def test_a_mapping_from_yaml_or_a_flow_map_on_the_command_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  group_weights:\n    Fluo-N2DL-HeLa: 2\n")
    assert load_config(path).train.group_weights == {"Fluo-N2DL-HeLa": 2.0}
    flag = parse_set_flags(["train.group_weights={Fluo-N2DL-HeLa: 3, Fluo-N2C-DH-GOWT1: 1}"])
    assert load_config(path, flag).train.group_weights == {
        "Fluo-N2DL-HeLa": 3.0,
        "Fluo-N2C-DH-GOWT1": 1.0,
    }
    assert load_config(path, {"train.group_weights": ""}).train.group_weights == {}
    assert load_config().train.group_weights == {}


def test_none_and_bool_coercion():
    cfg = load_config(None, {"train.encoder_weights": "none", "validate.fail_on_warning": "true"})
    assert cfg.train.encoder_weights is None
    assert cfg.validate.fail_on_warning is True


def test_relative_paths_anchor_on_cellseg_home(tmp_path, monkeypatch):
    monkeypatch.setenv("CELLSEG_HOME", str(tmp_path))
    cfg = load_config()
    assert cfg.paths.runs_dir == str(tmp_path / "runs")
    assert cfg.registry.uri == str(tmp_path / "registry")
    assert load_config(None, {"registry.uri": "s3://b/p"}).registry.uri == "s3://b/p"


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"train.epochs": "many"}, "train.epochs='many': expected an integer"),
        ({"train.epochs": 0}, "train.epochs=0 must be > 0"),
        ({"data.target": "mitochondria"}, "choose one of cells, nuclei"),
        ({"train.nope": 1}, "unknown config key 'train.nope'"),
        ({"bogus.key": 1}, "unknown config section 'bogus'"),
        ({"data.val_fraction": 0.5, "data.test_fraction": 0.5}, "leaves no training"),
        ({"train.crop_size": 100}, "multiple of 32"),
        ({"train.lr": ".nan"}, "train.lr=nan must be a finite number"),
        ({"train.lr": ".inf"}, "train.lr=inf must be a finite number"),
        ({"train.weight_decay": -0.1}, "train.weight_decay=-0.1 must be >= 0.0"),
        ({"data.download_timeout_s": 0}, "data.download_timeout_s=0.0 must be > 0"),
        ({"baseline.watershed.threshold": "magic"}, "choose one of otsu, li"),
        ({"postprocess.instances": "magic"}, "choose one of network, watershed, components"),
        ({"train.group_weights": "2"}, "train.group_weights=2: expected a mapping"),
        ({"train.group_weights": "{a: many}"}, "train.group_weights.a='many': expected a number"),
        ({"train.group_weights": "{a: -1}"}, "train.group_weights.a=-1.0 must be a finite"),
    ],
)
def test_invalid_values_name_key_and_fix(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(None, overrides)


def test_missing_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_parse_set_flags():
    assert parse_set_flags(["train.epochs=3", "data.source=/x=y"]) == {
        "train.epochs": "3",
        "data.source": "/x=y",
    }
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_set_flags(["epochs"])


def test_shipped_yaml_configs_load():
    from pathlib import Path

    configs = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))
    assert configs, "configs/*.yaml missing"
    for path in configs:
        load_config(path)


def test_the_default_target_follows_the_layout_an_explicit_one_stays(tmp_path):
    assert load_config().data.target == "cells"  # BBBC020's, the default layout
    assert load_config(None, {"data.layout": "ctc"}).data.target == "nuclei"
    yaml_file = tmp_path / "folder.yaml"
    yaml_file.write_text("data:\n  layout: folder\n")
    assert load_config(yaml_file).data.target == "nuclei"
    bbbc020_nuclei = load_config(None, {"data.target": "nuclei"})
    assert bbbc020_nuclei.data.target == "nuclei"  # BBBC020 holds both: as asked
    explicit = load_config(None, {"data.layout": "ctc", "data.target": "cells"})
    assert explicit.data.target == "cells"  # refused where the data is read, as asked
