import pytest
import yaml

from pipeline.config import ConfigError, load_file, load_schema, resolve
from conftest import REPO


def test_defaults_are_the_schema_defaults():
    cfg = resolve({})
    assert cfg["dataset"]["name"] == "synthetic"
    assert cfg["classifier"]["backbone"] == {"name": "resnet50", "weights": "imagenet", "freeze_bn": "auto",
                                             "frozen_stages": 0, "precision": "float32"}
    assert cfg["classifier"]["momentum"] == 0.9
    assert cfg["cams"]["scales"] == [1.0, 0.5, 1.5, 2.0]
    assert cfg["classifier"]["color_jitter"] == {"brightness": 0.3, "contrast": 0.3, "saturation": 0.3, "hue": 0.1}


def test_user_values_override_defaults_and_keep_siblings():
    cfg = resolve({"backbone": {"name": "mobilenet_v2", "precision": "bfloat16"},
                   "segmenter": {"backbone": {"weights": "none", "precision": "float32"}},
                   "classifier": {"backbone": {"name": "resnet18"}, "color_jitter": {"hue": 0.0}}})
    # the shared block, then each network's own keys
    assert cfg["classifier"]["backbone"] == {"name": "resnet18", "weights": "imagenet", "freeze_bn": "auto",
                                             "frozen_stages": 0, "precision": "bfloat16"}
    assert cfg["affinity"]["backbone"] == {"name": "mobilenet_v2", "weights": "imagenet", "freeze_bn": "auto",
                                           "frozen_stages": 0, "precision": "bfloat16"}
    assert cfg["segmenter"]["backbone"] == {"name": "mobilenet_v2", "weights": "none", "freeze_bn": "auto",
                                            "frozen_stages": 0, "precision": "float32"}
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
    # an lbfgs classifier is ImageNet's backbone unchanged: no network can start from it, and random
    # features are no fit
    with pytest.raises(ConfigError) as e:
        resolve({"classifier": {"fit": "lbfgs"}, "affinity": {"init_from_classifier": True},
                 "sccam": {"enabled": True, "init_from_previous": True}})
    assert "affinity.init_from_classifier: true, but classifier.fit: lbfgs" in str(e.value)
    assert "sccam.init_from_previous" in str(e.value) and "segmenter.init_from_classifier" not in str(e.value)
    with pytest.raises(ConfigError, match="backbone.weights: none are random"):
        resolve({"classifier": {"fit": "lbfgs", "backbone": {"weights": "none"}}})
    assert resolve({"classifier": {"fit": "lbfgs"}})["classifier"]["fit"] == "lbfgs"


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


def test_extends_puts_a_partial_config_on_top_of_the_embedded_default(tmp_path):
    from pipeline.config import DEFAULT_CONFIG, layered, scale_warning

    mine = tmp_path / "mine.yaml"
    mine.write_text("extends: config/config.yaml\nclassifier: {epochs: 2}\n")  # found under the repository
    cfg, chain = layered([mine])
    embedded = load_file(DEFAULT_CONFIG)
    assert chain == [DEFAULT_CONFIG, mine]
    assert cfg["classifier"]["epochs"] == 2 and cfg["classifier"]["lr"] == embedded["classifier"]["lr"]
    assert cfg["classifier"]["backbone"] == embedded["classifier"]["backbone"]  # resnet18, not the schema's resnet50
    assert scale_warning(cfg, chain) is None
    # the same file without extends runs the rest at the papers' full scale, and says so
    alone = tmp_path / "alone.yaml"
    alone.write_text("classifier: {epochs: 2}\n")
    cfg, chain = layered([alone])
    assert cfg["classifier"]["backbone"]["name"] == "resnet50"
    warning = scale_warning(cfg, chain)
    assert warning.startswith(f"{alone} does not extend config/config.yaml, so the sections it leaves out "
                              "(dataset, backbone,") and "extends:" in warning
    # a relative extends from the file's folder, and a cycle
    (tmp_path / "a.yaml").write_text("extends: b.yaml\nseed: 1\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match=r"b.yaml: extends 'a.yaml', which extends it back"):
        layered([tmp_path / "a.yaml"])
    (tmp_path / "c.yaml").write_text("extends: missing.yaml\n")
    with pytest.raises(ConfigError, match=r"c.yaml: extends 'missing.yaml', found neither"):
        layered([tmp_path / "c.yaml"])


def test_config_values_are_typed_and_their_errors_name_config(tmp_path):
    from pipeline.config import layered, typed_overrides

    # what Snakemake's parser hands over for --config 'classifier={epochs: 2, rescale: [0.5, 1.5]}' seed=3
    raw = {"classifier": {"epochs": "2", "rescale": ["0.5", "1.5"], "color_jitter": {"hue": "0.0"}}, "seed": 3}
    assert typed_overrides(raw) == {"classifier": {"epochs": 2, "rescale": [0.5, 1.5], "color_jitter": {"hue": 0.0}},
                                    "seed": 3}
    base = tmp_path / "base.yaml"
    base.write_text("extends: config/config.yaml\n")
    cfg, _ = layered([base], raw)
    assert cfg["classifier"]["epochs"] == 2 and cfg["classifier"]["rescale"] == [0.5, 1.5] and cfg["seed"] == 3
    with pytest.raises(ConfigError, match=r"from --config, on top of .*base.yaml\):\n  classifier.epochs"):
        layered([base], {"classifier": {"epochs": "-1"}})
    broken = tmp_path / "broken.yaml"
    broken.write_text("classifier: {epochs: 0}\n")
    with pytest.raises(ConfigError, match=rf"\(from {broken}\)"):  # the file is wrong on its own
        layered([broken], {"seed": 1})


@pytest.mark.slow
def test_snakemake_layers_extends_and_config_and_names_config_in_errors(tmp_path):
    from conftest import snakemake

    mine = tmp_path / "mine.yaml"
    mine.write_text("extends: config/config.yaml\ndataset: {n_shards: 2}\n")
    proc = snakemake(tmp_path, mine, "--dry-run", "--config", "classifier={epochs: 2, lr: 0.01}")
    assert "does not extend" not in proc.stdout and "train_classifier" in proc.stdout
    bad = snakemake(tmp_path, mine, "--dry-run", "--config", "classifier={epochs: -1}", check=False)
    assert bad.returncode != 0 and (f"invalid configuration (from --config, on top of {REPO / 'config/config.yaml'}"
                                    in bad.stdout)
    alone = tmp_path / "alone.yaml"
    alone.write_text("dataset: {n_shards: 2}\n")
    assert f"{alone} does not extend config/config.yaml" in snakemake(tmp_path, alone, "--dry-run").stdout
    assert not (tmp_path / "results").exists()
