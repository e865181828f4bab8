"""The manifest: one row per image of a split, and the fixed shards that per-image stages run on.

A manifest file is tab-separated with a header:
    image_id  image  labels  label_names  mask  instances  meta
`labels` are the class values (1..C, as in the masks; 0 is background) separated by spaces,
`mask` / `instances` are paths or empty, `meta` is JSON with dataset-specific facts (for
example the synthetic sub-types) or empty.
"""
from __future__ import annotations

import csv
import hashlib
import json
import zlib
from dataclasses import dataclass, field, fields
from pathlib import Path

from .atomic import atomic_path
from .problems import ProblemReport

COLUMNS = ("image_id", "image", "labels", "label_names", "mask", "instances", "meta")
GROUND_TRUTH = "ground_truth"  # a mask source's name for the manifest's own masks (the `mask` column)


class ManifestError(ValueError):
    """A dataset listing is wrong; the message names the file and the problem."""


@dataclass(frozen=True)
class Record:
    image_id: str
    image: str
    labels: tuple[int, ...]
    label_names: tuple[str, ...] = ()
    mask: str = ""
    instances: str = ""
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    def row(self) -> dict:
        # a shallow dict, not dataclasses.asdict: its recursive copy was most of the digests'
        # time in a VOC-sized DAG build (24,000 rows)
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["labels"] = " ".join(map(str, self.labels))
        d["label_names"] = " ".join(self.label_names)
        d["meta"] = json.dumps(self.meta, sort_keys=True) if self.meta else ""
        return d


def shard_of(image_id: str, n_shards: int) -> int:
    """Shard index of an image: a pure function of its id, stable across runs and machines."""
    return zlib.crc32(image_id.encode("utf-8")) % n_shards


def shard_name(index: int, n_shards: int) -> str:
    return f"shard{index:0{max(2, len(str(n_shards - 1)))}d}"


def split_into_shards(records: list[Record], n_shards: int) -> dict[str, list[Record]]:
    """Non-empty shards by name, each sorted by image id."""
    shards: dict[int, list[Record]] = {}
    for r in records:
        shards.setdefault(shard_of(r.image_id, n_shards), []).append(r)
    return {shard_name(i, n_shards): sorted(rs, key=lambda r: r.image_id) for i, rs in sorted(shards.items())}


def digest(records: list[Record]) -> str:
    """Hash of the rows; equal rows give equal digests whatever their order."""
    h = hashlib.sha256()
    for r in sorted(records, key=lambda r: r.image_id):
        h.update(json.dumps(r.row(), sort_keys=True).encode())
    return h.hexdigest()[:16]


def write_shard(records: list[Record], path) -> str:
    """A shard's manifest; returns the line for the job's log."""
    write_tsv(records, path)
    return f"{len(records)} images\n"


def write_split(records: list[Record], left_out, manifest_path, problems_path) -> str:
    """A split's manifest and the images left out of it ((image id, reason) pairs) as a problems
    file; returns the line for the job's log."""
    write_tsv(records, manifest_path)
    report = ProblemReport(problems_path)
    for image_id, reason in left_out:
        report.add(image_id, "", reason)
    report.write()
    return f"{len(records)} images, {len(report)} left out\n"


def write_tsv(records: list[Record], path) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS, delimiter="\t", lineterminator="\n")
        w.writeheader()
        for r in sorted(records, key=lambda r: r.image_id):
            w.writerow(r.row())


def read_tsv(path) -> list[Record]:
    path = Path(path)
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f, delimiter="\t")
            missing = set(COLUMNS) - set(reader.fieldnames or ())
            if missing:
                raise ManifestError(f"{path}: not a manifest, missing columns {sorted(missing)}")
            records = []
            for line, row in enumerate(reader, start=2):
                try:
                    records.append(Record(
                        image_id=row["image_id"],
                        image=row["image"],
                        labels=tuple(int(v) for v in row["labels"].split()),
                        label_names=tuple(row["label_names"].split()),
                        mask=row["mask"] or "",
                        instances=row["instances"] or "",
                        meta=json.loads(row["meta"]) if row["meta"] else {},
                    ))
                except (ValueError, TypeError) as e:
                    raise ManifestError(f"{path}, line {line}: {e}") from None
    except OSError as e:
        raise ManifestError(f"{path}: cannot read the manifest: {e}") from None
    return records
