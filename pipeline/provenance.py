"""Provenance: hashes of parameters and of the code a stage runs, and library versions.

Snakemake does not track imported code, so every rule receives `code_hash(module)` in its
params: a hash over the source of the stage module and of every `pipeline` module it
imports, found statically. Editing a stage's code reruns that stage and what follows;
editing an unrelated module does not.
"""
from __future__ import annotations

import ast
import hashlib
import json
from functools import lru_cache
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PACKAGE = PACKAGE_DIR.name


def stable_json(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def params_hash(params) -> str:
    return hashlib.sha256(stable_json(params).encode()).hexdigest()[:16]


def file_id(path) -> str:
    """Size and modification time of a file: enough to tell a rewritten input from the one a
    checkpoint was trained on."""
    st = Path(path).stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def _module_file(module: str) -> Path | None:
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    base = PACKAGE_DIR.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@lru_cache(maxsize=None)
def _imports(module: str, path: Path) -> frozenset[str]:
    """Modules of this package imported by `path` (absolute and relative imports); parsed once
    per process (the DAG build asks for ~30 closures that share most of their modules)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            found.add(prefix)
            found.update(f"{prefix}.{alias.name}" for alias in node.names)
    result = set()
    for name in found:
        # "pipeline.a.b" also imports the packages "pipeline.a" and "pipeline"
        parts = name.split(".")
        result.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return frozenset(m for m in result if _module_file(m) is not None)


@lru_cache(maxsize=None)
def module_closure(module: str) -> tuple[str, ...]:
    """The module and every module of this package it imports, directly or not."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = _module_file(name)
        if path is None:
            raise ValueError(f"{name} is not a module of the {PACKAGE} package")
        seen.add(name)
        todo.extend(_imports(name, path) - seen)
    return tuple(sorted(seen))


@lru_cache(maxsize=None)
def code_hash(*modules: str) -> str:
    """Hash of the source files of `modules` and everything of this package they import."""
    digest = hashlib.sha256()
    names = sorted(set().union(*(module_closure(m) for m in modules)))
    for name in names:
        digest.update(name.encode() + b"\0" + _module_file(name).read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def library_versions() -> dict[str, str]:
    import importlib.metadata as md
    import platform

    versions = {"python": platform.python_version()}
    for dist in ("wsss-pipeline", "torch", "torchvision", "numpy", "h5py", "scikit-image",
                 "scikit-learn", "snakemake", "pillow", "pydensecrf2"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    try:
        import h5py

        versions["hdf5"] = h5py.version.hdf5_version
    except ImportError:
        pass
    return versions
