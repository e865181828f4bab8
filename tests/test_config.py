import pytest
import yaml

from pipeline.config import ConfigError, load_file, load_schema, resolve
from conftest import REPO


def test_defaults_are_the_schema_defaults():
    cfg = resolve({})
    assert cfg["dataset"]["name"] == "synthetic"
    assert cfg["classifier"]["backbone"] == {"name": "resnet50", "weights": "imagenet", "freeze_bn": "auto", "frozen_stages": 0}
    assert cfg["classifier"]["momentum"] == 0.9
    assert cfg["cams"]["scales"] == [1.0, 0.5, 1.5, 2.0]
    assert cfg["classifier"]["color_jitter"] == {"brightness": 0.3, "contrast": 0.3, "saturation": 0.3, "hue": 0.1}


def test_user_values_override_defaults_and_keep_siblings():
    cfg = resolve({"backbone": {"name": "mobilenet_v2"}, "segmenter": {"backbone": {"weights": "none"}},
                   "classifier": {"backbone": {"name": "resnet18"}, "color_jitter": {"hue": 0.0}}})
    # the shared block, then each network's own keys
    assert cfg["classifier"]["backbone"] == {"name": "resnet18", "weights": "imagenet", "freeze_bn": "auto", "frozen_stages": 0}
    assert cfg["affinity"]["backbone"] == {"name": "mobilenet_v2", "weights": "imagenet", "freeze_bn": "auto", "frozen_stages": 0}
    assert cfg["segmenter"]["backbone"] == {"name": "mobilenet_v2", "weights": "none", "freeze_bn": "auto", "frozen_stages": 0}
    assert resolve(cfg) == cfg  # resolving twice changes nothing
    assert cfg["classifier"]["color_jitter"]["hue"] == 0.0
    assert cfg["classifier"]["color_jitter"]["brightness"] == 0.3
    assert cfg["classifier"]["epochs"] == 5


def test_every_schema_property_has_a_default():
    root = load_schema()

    def walk(schema, where):
        for key, sub in schema.get("properties", {}).items():
            override = sub.get("$ref") == "#/$defs/backbone_override"
            if "$ref" in sub:
                sub = {**root["$defs"][sub["$ref"].rsplit("/", 1)[1]], **sub}
            assert "default" in sub, f"{where}.{key} has no default"
            if sub["default"] == {} and not override:  # filled from its children's defaults (an
                # override's keys have none of their own: they default to the shared backbone block's)
                walk(sub, f"{where}.{key}")
    walk(root, "config")
    profiles = resolve({})["crf"]["profiles"]
    assert set(profiles) == {"deeplab", "psa", "irn"} and all(len(p) == 5 for p in profiles.values())


def test_shipped_configs_are_valid():
    for path in (REPO / "config").glob("*.yaml"):
        load_file(path)


def test_unknown_key_names_key_and_allowed_keys():
    with pytest.raises(ConfigError) as e:
        resolve({"dataset": {"synthetic": {"n_imagse": {"train": 3}}}}, ["my.yaml"])
    msg = str(e.value)
    assert "dataset.synthetic" in msg and "'n_imagse'" in msg and "n_images" in msg and "my.yaml" in msg


def test_wrong_type_and_enum_are_errors():
    with pytest.raises(ConfigError, match=r"classifier.epochs: 'five' should be of type integer"):
        resolve({"classifier": {"epochs": "five"}})
    with pytest.raises(ConfigError, match=r"classifier.backbone.name: 'resnet19' is not one of"):
        resolve({"classifier": {"backbone": {"name": "resnet19"}}})
    with pytest.raises(ConfigError, match=r"dataset.n_shards"):
        resolve({"dataset": {"n_shards": 0}})


def test_inconsistent_values_are_errors():
    with pytest.raises(ConfigError, match="dataset.voc.root: required"):
        resolve({"dataset": {"name": "voc"}})
    with pytest.raises(ConfigError, match="dataset.folder.classes"):
        resolve({"dataset": {"name": "folder", "folder": {"images": "x", "labels_csv": "y.csv"}}})
    with pytest.raises(ConfigError, match="min_size is larger"):
        resolve({"dataset": {"synthetic": {"min_size": 100, "max_size": 60}}})


def test_load_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: [1, 2")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_file(bad)
    listed = tmp_path / "list.yaml"
    listed.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(ConfigError, match="list.yaml: the top level must be a mapping"):
        load_file(listed)


def test_resolved_config_prints_the_same_whatever_the_key_order():
    a = resolve({"classifier": {"epochs": 5, "output_stride": 8}, "seed": 0})
    b = resolve({"seed": 0, "classifier": {"output_stride": 8}})
    # Snakemake compares params by their printed form: equal configs must print equally
    assert repr(a) == repr(b)
    assert list(resolve({"dataset": {"synthetic": {"n_images": {"val": 2, "train": 3}}}})
                ["dataset"]["synthetic"]["n_images"]) == ["train", "val"]


def test_csv_labels_need_a_csv():
    with pytest.raises(ConfigError, match="dataset.voc.labels_csv: required"):
        resolve({"dataset": {"name": "voc", "voc": {"root": "x", "labels": "csv"}}})
