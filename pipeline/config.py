"""Configuration: validate a user's config against the schema and fill in the defaults.

The schema (workflow/schemas/config.schema.yaml) is the one place where every value is
named, with its default. Errors name the key, the problem and the config files involved,
and are raised before any job runs.
"""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"


# the config blocks of the networks with a backbone (the others train as `classifier` does)
BACKBONE_NETWORKS = ("classifier", "affinity", "segmenter")


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type or inconsistent."""


def load_schema() -> dict:
    with open(SCHEMA_PATH) as f:
        return yaml.safe_load(f)


def _merge_defaults(value: dict, default: dict) -> None:
    for key, d in default.items():
        if key not in value:
            value[key] = copy.deepcopy(d)
        elif isinstance(value[key], dict) and isinstance(d, dict):
            _merge_defaults(value[key], d)


def _fill_defaults(value: dict, schema: dict, root: dict | None = None) -> None:
    """Fill missing keys from the schema's defaults, recursively. A mapping default (such as a
    CRF profile's values) also completes a mapping the user gave only in part."""
    root = root or schema
    for key, sub in schema.get("properties", {}).items():
        if "$ref" in sub:  # only local references: "#/$defs/<name>"
            sub = {**root["$defs"][sub["$ref"].rsplit("/", 1)[1]], **{k: v for k, v in sub.items() if k != "$ref"}}
        if key not in value and "default" in sub:
            value[key] = copy.deepcopy(sub["default"])
        elif isinstance(value.get(key), dict) and isinstance(sub.get("default"), dict):
            _merge_defaults(value[key], sub["default"])
        if isinstance(value.get(key), dict) and "properties" in sub:
            _fill_defaults(value[key], sub, root)


def _canonical(value, schema: dict):
    """The value with every mapping in schema order (then sorted): equal configs print equally,
    whatever the order of the user's keys, so Snakemake's params comparison sees no change."""
    if not isinstance(value, dict):
        return value
    props = schema.get("properties", {})
    extra = schema.get("additionalProperties")
    keys = [k for k in props if k in value] + sorted(k for k in value if k not in props)
    return {k: _canonical(value[k], props.get(k, extra if isinstance(extra, dict) else {})) for k in keys}


def _describe(error) -> str:
    where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        return f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(allowed)}"
    if error.validator == "enum":
        return f"{where}: {error.instance!r} is not one of {error.validator_value}"
    if error.validator == "type":
        return f"{where}: {error.instance!r} should be of type {error.validator_value}"
    return f"{where}: {error.message}"


def _check_consistency(cfg: dict) -> list[str]:
    problems = []
    ds = cfg["dataset"]
    syn = ds["synthetic"]
    if syn["min_size"] > syn["max_size"]:
        problems.append("dataset.synthetic: min_size is larger than max_size")
    if ds["name"] == "voc" and not ds["voc"]["root"]:
        problems.append("dataset.voc.root: required when dataset.name is voc")
    if ds["name"] == "voc" and ds["voc"]["labels"] == "csv" and not ds["voc"]["labels_csv"]:
        problems.append("dataset.voc.labels_csv: required when dataset.voc.labels is csv")
    if ds["name"] == "folder":
        for key in ("images", "labels_csv"):
            if not ds["folder"][key]:
                problems.append(f"dataset.folder.{key}: required when dataset.name is folder")
        if not ds["folder"]["classes"]:
            problems.append("dataset.folder.classes: list the class names when dataset.name is folder")
    lo, hi = cfg["classifier"]["rescale"]
    if lo > hi:
        problems.append("classifier.rescale: the first value must not exceed the second")
    bt = cfg["evaluation"]["bg_threshold"]
    if bt["min"] > bt["max"]:
        problems.append("evaluation.bg_threshold: min is larger than max")
    return problems


def resolve(user_config: dict | None, sources: list[str] | tuple[str, ...] = ()) -> dict:
    """Return the validated config with every default filled in.

    `sources` names the config files the values came from, for the error message.
    """
    import jsonschema

    cfg = copy.deepcopy(dict(user_config or {}))
    schema = load_schema()
    _fill_defaults(cfg, schema)
    validator = jsonschema.Draft202012Validator(schema)
    problems = [_describe(e) for e in sorted(validator.iter_errors(cfg), key=lambda e: list(e.absolute_path))]
    if not problems:
        problems = _check_consistency(cfg)
    if problems:
        origin = f" (from {', '.join(map(str, sources))})" if sources else ""
        raise ConfigError(f"invalid configuration{origin}:\n  " + "\n  ".join(problems))
    for network in BACKBONE_NETWORKS:  # each network's backbone: the shared block, then its own keys
        cfg[network]["backbone"] = {**cfg["backbone"], **cfg[network]["backbone"]}
    return _canonical(cfg, schema)


def load_file(path: str | Path) -> dict:
    """Read and resolve one config file (for the command line and tests)."""
    path = Path(path)
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read the config file: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
    return resolve(data, [str(path)])
