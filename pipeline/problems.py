"""Per-image problems (unreadable image, missing mask, ...) recorded in a report file.

A stage that meets a bad image records it here and goes on with the others; the report is a
declared output (tab-separated: image_id, path, problem), empty but for its header when all
went well, so that users find every skipped image in one place.
"""
from __future__ import annotations

import csv
import logging
from pathlib import Path

from .atomic import atomic_path

log = logging.getLogger(__name__)
COLUMNS = ("image_id", "path", "problem")


class ProblemReport:
    def __init__(self, path):
        self.path = Path(path)
        self.rows: list[tuple[str, str, str]] = []

    def add(self, image_id: str, path: str, problem: str) -> None:
        self.rows.append((image_id, str(path), problem))
        log.warning("skipped image %s: %s", image_id, problem)

    def __len__(self):
        return len(self.rows)

    def ids(self) -> set[str]:
        return {r[0] for r in self.rows}

    def write(self) -> None:
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as f:
            w = csv.writer(f, delimiter="\t", lineterminator="\n")
            w.writerow(COLUMNS)
            w.writerows(self.rows)
        if self.rows:
            log.warning("%d image(s) skipped, listed in %s", len(self.rows), self.path)


def with_output(records, reader, problems: ProblemReport, what: str, upstream: str) -> list:
    """The records that have an output in `reader` (an ArtifactReader); the others go to
    `problems` as skipped upstream, pointing at the `upstream` stage's problems files."""
    present = [r for r in records if r.image_id in reader]
    for r in records:
        if r.image_id not in reader:
            problems.add(r.image_id, r.image, f"no {what}: the image was skipped upstream (see {upstream} problems)")
    return present


def read_report(path) -> list[tuple[str, str, str]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    return [tuple(r) for r in rows[1:]]


def readable_images(records, problems: ProblemReport):
    """(record, RGB uint8 image) for every record whose image decodes; the others go to
    `problems` with the reason."""
    from .imageio import ImageReadError, read_image

    for r in records:
        try:
            rgb = read_image(r.image)
        except ImageReadError as e:
            problems.add(r.image_id, r.image, str(e))
            continue
        yield r, rgb
