"""HDF5 artifacts: one file per (stage, shard), one group per image, provenance at the root.

Layout of every artifact:
    /                 attrs: stage, split, shard, classes (JSON list of names; class value
                             i is classes[i - 1]), params_hash, code_hash, versions (JSON),
                             created_utc, n_images, format_version
    /params           JSON string: the full parameters the stage ran with
    /images/<id>/     one group per image; datasets such as cams [K, H, W] float16 and
                      keys [K]; attrs such as image_path, height, width
    /tables/<name>/   optional per-artifact tables that are not per image (for example the
                      cluster centres of one class)
Arrays of two or more dimensions are chunked and compressed with gzip + shuffle, which
h5dump, h5ls and HDFView read without plugins. A file is written under a temporary name
and renamed when complete, so a killed job never leaves a half-written artifact. Readers
open read-only without HDF5 file locking (safe on cluster file systems, and never blocked
by a writer, since writers only ever rename finished files into place).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import h5py
import numpy as np

from .atomic import AtomicFile
from .provenance import library_versions, params_hash, stable_json

FORMAT_VERSION = 1


class ArtifactError(ValueError):
    """An artifact is missing, unreadable or lacks what a reader needs (message names file and image)."""


class ArtifactWriter:
    """Context manager that writes one artifact atomically.

    with ArtifactWriter(path, stage="cam", split="val", shard="shard00", classes=names,
                        params=p, code_hash=h) as w:
        w.add("2007_000032", {"image_path": ...}, cams=cams, keys=keys)
    """

    def __init__(self, path, *, stage: str, split: str, shard: str, classes, params: dict, code_hash: str):
        self.path = Path(path)
        self.meta = dict(stage=stage, split=split, shard=shard, classes=json.dumps(list(classes)),
                         params_hash=params_hash(params), code_hash=code_hash, format_version=FORMAT_VERSION)
        self.params = params
        self.file = None
        self.n_images = 0

    def __enter__(self):
        self._target = AtomicFile(self.path)
        self.file = h5py.File(self._target.tmp, "w", locking=False, track_order=True)
        self.images = self.file.create_group("images", track_order=True)
        return self

    def add(self, image_id: str, attrs: dict | None = None, **arrays: np.ndarray) -> None:
        if "/" in image_id or image_id in (".", ""):
            raise ArtifactError(f"{self.path}: image id {image_id!r} cannot name an HDF5 group")
        self._fill(self.images.create_group(image_id), attrs, arrays)
        self.n_images += 1

    def add_table(self, name: str, attrs: dict | None = None, **arrays: np.ndarray) -> None:
        """A group /tables/<name> of arrays that belong to the whole artifact, not to one image."""
        if "/" in name or name in (".", ""):
            raise ArtifactError(f"{self.path}: table name {name!r} cannot name an HDF5 group")
        self._fill(self.file.require_group("tables").create_group(name), attrs, arrays)

    @staticmethod
    def _fill(group, attrs, arrays) -> None:
        for name, arr in arrays.items():
            arr = np.asarray(arr)
            if arr.ndim >= 2 and arr.size > 0:
                group.create_dataset(name, data=arr, chunks=True, compression="gzip",
                                     compression_opts=4, shuffle=True)
            else:
                group.create_dataset(name, data=arr)
        for key, value in (attrs or {}).items():
            group.attrs[key] = value

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self.file.attrs.update(self.meta)
                self.file.attrs["versions"] = json.dumps(library_versions(), sort_keys=True)
                self.file.attrs["created_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                self.file.attrs["n_images"] = self.n_images
                self.file.create_dataset("params", data=stable_json(self.params))
            self.file.close()
            if exc_type is None:
                self._target.commit()
        finally:
            self.file.close()
            self._target.discard()
        return False


class ArtifactReader:
    """Read-only view of an artifact with checks that name the file and the image."""

    def __init__(self, path, *, stage: str | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise ArtifactError(f"{self.path}: artifact not found")
        try:
            self.file = h5py.File(self.path, "r", locking=False)
        except OSError as e:
            raise ArtifactError(f"{self.path}: not a readable HDF5 file ({e})") from None
        missing = [k for k in ("stage", "params_hash", "code_hash") if k not in self.file.attrs]
        if missing or "images" not in self.file:
            self.close()
            raise ArtifactError(f"{self.path}: not a pipeline artifact (missing {missing or ['/images']})")
        if stage is not None and self.attrs["stage"] != stage:
            found = self.attrs["stage"]
            self.close()
            raise ArtifactError(f"{self.path}: expected an artifact of stage {stage!r}, found {found!r}")

    @property
    def attrs(self) -> dict:
        return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in self.file.attrs.items()}

    def classes(self) -> list[str]:
        """The object class names; class value i is classes[i - 1]."""
        return json.loads(self.attrs.get("classes", "[]"))

    def params(self) -> dict:
        raw = self.file["params"][()] if "params" in self.file else b"{}"
        return json.loads(raw.decode() if isinstance(raw, bytes) else raw)

    def image_ids(self) -> list[str]:
        return list(self.file["images"].keys())

    def __contains__(self, image_id: str) -> bool:
        return image_id in self.file["images"]

    def fail(self, image_id: str, problem: str):
        raise ArtifactError(f"{self.path}: image {image_id}: {problem}")

    def image_attrs(self, image_id: str) -> dict:
        if image_id not in self:
            self.fail(image_id, "not in this artifact")
        return dict(self.file["images"][image_id].attrs)

    def read(self, image_id: str, *names: str) -> dict[str, np.ndarray]:
        if image_id not in self:
            self.fail(image_id, "not in this artifact")
        group = self.file["images"][image_id]
        out = {}
        for name in names:
            if name not in group:
                self.fail(image_id, f"dataset {name!r} missing (has {sorted(group.keys())})")
            try:
                out[name] = group[name][()]
            except OSError as e:
                self.fail(image_id, f"dataset {name!r} unreadable ({e})")
        return out

    def table_names(self) -> list[str]:
        return list(self.file["tables"].keys()) if "tables" in self.file else []

    def read_table(self, name: str) -> tuple[dict[str, np.ndarray], dict]:
        """(arrays, attrs) of the table /tables/<name>."""
        if name not in self.table_names():
            raise ArtifactError(f"{self.path}: table {name!r} missing (has {self.table_names()})")
        group = self.file["tables"][name]
        return {k: group[k][()] for k in group}, dict(group.attrs)

    def close(self):
        self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class ShardSet:
    """The shards of one stage and split read as one artifact: each image id finds its shard's
    reader. Every shard is opened at once (and closed again if one of them cannot be read)."""

    def __init__(self, paths, *, stage: str | None = None):
        self.readers: list[ArtifactReader] = []
        try:
            for path in paths:
                self.readers.append(ArtifactReader(path, stage=stage))
        except BaseException:
            self.close()
            raise
        self._where = {image_id: rd for rd in self.readers for image_id in rd.image_ids()}

    def __contains__(self, image_id: str) -> bool:
        return image_id in self._where

    def image_ids(self) -> list[str]:
        return list(self._where)

    def reader(self, image_id: str) -> ArtifactReader:
        """The reader of the shard that holds `image_id` (KeyError when none does)."""
        return self._where[image_id]

    def read(self, image_id: str, *names: str) -> dict[str, np.ndarray]:
        return self.reader(image_id).read(image_id, *names)

    def close(self):
        for rd in self.readers:
            rd.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def shard_index(paths, *, stage: str | None = None) -> dict[str, str]:
    """image id -> the path of the shard that holds it, for readers opened later (in another
    process, or one image at a time)."""
    where = {}
    for path in paths:
        with ArtifactReader(path, stage=stage) as rd:
            where.update(dict.fromkeys(rd.image_ids(), str(path)))
    return where
