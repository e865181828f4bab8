"""What the VOC and folder adapters share: class names to values, the labels CSV."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from ..manifest import ManifestError


def labels_from_names(names, classes, where: str) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """Class values (1-based) of class names; an unknown name is a ManifestError at `where`."""
    values = set()
    for n in names:
        if n not in classes:
            raise ManifestError(f"{where}: unknown class name {n!r} (known: {', '.join(classes)})")
        values.add(classes.index(n) + 1)
    return labels_from_values(values, classes, where)


def labels_from_values(values, classes, where: str) -> tuple[tuple[int, ...], tuple[str, ...]]:
    ordered = tuple(sorted({int(v) for v in values}))
    bad = [v for v in ordered if not 1 <= v <= len(classes)]
    if bad:
        raise ManifestError(f"{where}: class value(s) {bad} outside 1..{len(classes)}")
    return ordered, tuple(classes[v - 1] for v in ordered)


@dataclass(frozen=True)
class LabelRow:
    labels: tuple[int, ...]
    names: tuple[str, ...]
    split: str
    image: str


def read_labels_csv(path, classes) -> dict[str, LabelRow]:
    """Rows of a labels CSV by image id.

    Columns: image_id, and the labels as class_names (names separated by spaces) or
    class_indices (values 1..C separated by spaces); optional split and image.
    """
    path = Path(path)
    try:
        f = open(path, newline="")
    except OSError as e:
        raise ManifestError(f"{path}: cannot read the labels CSV: {e}") from None
    rows = {}
    with f:
        reader = csv.DictReader(f)
        cols = set(reader.fieldnames or ())
        if "image_id" not in cols or not cols & {"class_names", "class_indices"}:
            raise ManifestError(f"{path}: a labels CSV needs the columns image_id and class_names "
                                f"(or class_indices); found {sorted(cols)}")
        for line, row in enumerate(reader, start=2):
            where = f"{path}, line {line}"
            iid = (row["image_id"] or "").strip()
            if not iid:
                raise ManifestError(f"{where}: empty image_id")
            if iid in rows:
                raise ManifestError(f"{where}: image {iid!r} is listed twice")
            if "class_names" in cols:
                labels, names = labels_from_names((row["class_names"] or "").split(), classes, where)
            else:
                try:
                    values = [int(v) for v in (row["class_indices"] or "").split()]
                except ValueError:
                    raise ManifestError(
                        f"{where}: class_indices must be integers, got {row['class_indices']!r}") from None
                labels, names = labels_from_values(values, classes, where)
            rows[iid] = LabelRow(labels, names, (row.get("split") or "").strip(), (row.get("image") or "").strip())
    return rows
