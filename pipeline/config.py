"""Configuration: validate a user's config against the schema and fill in the defaults.

The schema (workflow/schemas/config.schema.yaml) is the one place where every value is
named, with its default. Errors name the key, the problem and the config files involved
(or `--config`), and are raised before any job runs.

Layers, lowest first: the schema's defaults (the papers' values), the files a config file
`extends:` (a path relative to that file, or to the repository: `extends: config/config.yaml`
puts a partial config on top of the embedded default), the config files in the order given,
and Snakemake's `--config` values, whose nested values Snakemake leaves as strings and are
read as YAML here (`--config 'classifier={epochs: 2}'`).
"""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SCHEMA_PATH = REPO / "workflow" / "schemas" / "config.schema.yaml"
DEFAULT_CONFIG = REPO / "config" / "config.yaml"


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
    if error.validator == "oneOf":
        options = [f"one of {o['enum']}" if "enum" in o else f"a mapping {{{', '.join(o.get('required', []))}: ...}}"
                   for o in error.validator_value]
        return f"{where}: {error.instance!r} is not {' or '.join(options)}"
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
    if cfg["predict"]["images"] and cfg["predict"]["split"]:
        problems.append("predict: set images or split, not both")
    if cfg["classifier"]["fit"] == "lbfgs":
        # an lbfgs classifier keeps ImageNet's backbone unchanged and ends at its last block: nothing to start from
        starts = [f"{n}.init_from_classifier" for n in ("affinity", "segmenter", "eps", "prm")
                  if cfg[n]["init_from_classifier"]]
        starts += ["sccam.init_from_previous"] if cfg["sccam"]["enabled"] and cfg["sccam"]["init_from_previous"] else []
        problems += [f"{key}: true, but classifier.fit: lbfgs keeps the ImageNet backbone unchanged; set it to "
                     "false (the network then starts from backbone.weights)" for key in starts]
        if {**cfg["backbone"], **cfg["classifier"]["backbone"]}["weights"] == "none":
            problems.append("classifier.fit: lbfgs fits a head on the fixed backbone's features, which with "
                            "backbone.weights: none are random; use weights: imagenet (or a file) or fit: sgd")
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


def deep_merge(base: dict, extra: dict) -> dict:
    """`extra` on top of `base`: mappings merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def read_mapping(path: str | Path) -> dict:
    path = Path(path)
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read the config file: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
    return data


def load_layers(path: str | Path, _seen: tuple[Path, ...] = ()) -> tuple[dict, list[Path]]:
    """A config file on top of the chain of files it extends; returns (merged values, the
    files from the base up)."""
    path = Path(path)
    data = read_mapping(path)
    parent = data.pop("extends", None)
    if parent is None:
        return data, [path]
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: extends must be one config file's path, got {parent!r}")
    candidates = [path.parent / parent, REPO / parent]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise ConfigError(f"{path}: extends {parent!r}, found neither {candidates[0]} nor {candidates[1]}")
    if found.resolve() in {p.resolve() for p in (*_seen, path)}:
        raise ConfigError(f"{path}: extends {parent!r}, which extends it back (a cycle)")
    base, chain = load_layers(found, (*_seen, path))
    return deep_merge(base, data), [*chain, path]


def _typed(value):
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    if isinstance(value, str):
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        return value if isinstance(parsed, (dict, list)) else parsed
    return value


def typed_overrides(overrides: dict) -> dict:
    """Snakemake's --config values with the scalars inside nested values read as YAML (Snakemake
    leaves them strings: `classifier={epochs: 2}` arrives as {"epochs": "2"})."""
    return {k: _typed(v) if isinstance(v, (dict, list)) else v for k, v in (overrides or {}).items()}


def layered(configfiles, overrides: dict | None = None) -> tuple[dict, list[Path]]:
    """The validated config of config files (each on top of what it extends) and --config
    values; returns it with the chain of files it was read from."""
    values, chain = {}, []
    for f in configfiles:
        data, files = load_layers(f)
        values = deep_merge(values, data)
        chain += files
    sources = [str(p) for p in chain]
    if not overrides:
        return resolve(values, sources), chain
    try:
        merged = deep_merge(values, typed_overrides(overrides))
        return resolve(merged, ["--config", f"on top of {', '.join(sources)}"]), chain
    except ConfigError:
        resolve(values, sources)  # the files alone are wrong: name them
        raise


def scale_warning(cfg: dict, chain: list[Path]) -> str | None:
    """A warning when a config runs the synthetic data without the embedded default under it:
    what it leaves out takes the schema's full-scale paper values (ResNet-50, the papers'
    epochs), far slower than the embedded default."""
    if cfg["dataset"]["name"] != "synthetic" or any(p.resolve() == DEFAULT_CONFIG.resolve() for p in chain):
        return None
    given = {}
    for p in chain:
        given = deep_merge(given, read_mapping(p))
    embedded = read_mapping(DEFAULT_CONFIG)
    left = [k for k in embedded if k not in given]
    if not left:
        return None
    names = ", ".join(str(p) for p in chain)
    return (f"{names} does not extend config/config.yaml, so the sections it leaves out ({', '.join(left)}) take "
            "the schema's full-scale paper defaults (workflow/schemas/config.schema.yaml), far slower than the "
            "embedded default on the synthetic data. Add `extends: config/config.yaml` to the file (or pass "
            "`--configfile config/config.yaml "
            f"{chain[-1]}`) to change only what the file names.")


def load_file(path: str | Path) -> dict:
    """Read and resolve one config file, on top of the files it extends (for the command line and tests)."""
    return layered([path])[0]
