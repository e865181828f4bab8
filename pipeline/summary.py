"""The results table: one row per evaluated stage, from the metrics JSON files.

results/metrics/summary.tsv is tab-separated with the columns
    stage  split  miou  miou_decided  n_images  n_skipped  best_threshold  threshold_from  precision
    coverage  image_labels  iou_<class> ...
(mIoU, IoU, precision and coverage in 0..1; best_threshold only for stages that sweep a
background threshold, with threshold_from the split it was chosen on (the training split's
pseudo masks where they have ground truth; the reported split itself otherwise); precision and
coverage only for label maps; image_labels: whether the row uses the ground-truth image
labels at inference (CAMs, walks, MCOF's training-split rows, PRM: yes; segmenters: no), so
that like is compared with like. A stage that leaves
pixels undecided, such as affinity_labels, has coverage < 1: its miou (and iou_<class>) count
the undecided pixels as background, as a segmenter's output would be scored, so every row
compares on whole images; miou_decided beside it is the mIoU of its decided pixels only.
The `fully_supervised` row is the segmenter trained on the ground-truth masks: an upper bound,
not a weakly-supervised result.)
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from .atomic import write_text

UPPER_BOUND = "fully_supervised"  # the row trained on ground truth
# what column image_labels (and the report's two groups of rows) means
IMAGE_LABELS_NOTE = ("yes: the row uses the ground-truth image labels at inference (CAMs, walks, PRM); "
                     "no: it predicts without them (segmenters)")
FIXED = ("stage", "split", "miou", "miou_decided", "n_images", "n_skipped", "best_threshold", "threshold_from",
         "precision", "coverage", "image_labels")


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if value != value else f"{value:.4f}"
    return str(value)


def whole_image(m: dict) -> dict:
    """A row's metrics as the tables show them: a mask that leaves pixels undecided (coverage
    < 1) is scored with those pixels as background (miou_full, per_class_iou_full), as a
    segmenter's output would be; its decided-pixel mIoU moves to miou_decided."""
    if m.get("coverage") is not None and m["coverage"] < 1:
        return {**m, "miou": m["miou_full"], "miou_decided": m["miou"], "per_class_iou": m["per_class_iou_full"]}
    return m


def rows_from_metrics(paths, image_labels=None) -> tuple[list[str], list[dict]]:
    """Rows of the metric files; `image_labels` (row -> bool, from the plan) says whether a row
    uses the ground-truth image labels at inference (column image_labels: yes / no)."""
    rows, classes = [], []
    for p in paths:
        m = whole_image(json.loads(Path(p).read_text()))
        row = {k: _fmt(m.get(k)) for k in FIXED}
        if image_labels is not None and m["stage"] in image_labels:
            row["image_labels"] = "yes" if image_labels[m["stage"]] else "no"
        for name, v in m["per_class_iou"].items():
            if name not in classes:
                classes.append(name)
            row[f"iou_{name}"] = _fmt(v)
        rows.append(row)
    return [*FIXED, *(f"iou_{c}" for c in classes)], rows


def write_summary(metric_paths, out_path, image_labels=None) -> str:
    columns, rows = rows_from_metrics(metric_paths, image_labels)
    buf = io.StringIO()
    w = csv.DictWriter(buf, columns, delimiter="\t", lineterminator="\n", restval="")
    w.writeheader()
    w.writerows(rows)
    write_text(out_path, buf.getvalue())
    return buf.getvalue()


def percent(value) -> str:
    return "" if value is None else f"{100 * value:.1f}"


def aligned(cells: list[list[str]]) -> str:
    """Rows of strings as left-aligned columns for the terminal."""
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return "\n".join("  ".join(v.ljust(wd) for v, wd in zip(row, widths)).rstrip() for row in cells)


def write_rows(rows: list[dict], columns, out_path) -> None:
    """An ablation's rows as TSV (values as in summary.tsv: 0..1, 4 decimals; None empty)."""
    write_text(out_path, "\t".join(columns) + "\n" + "".join("\t".join(_fmt(r.get(c)) for c in columns) + "\n"
                                                            for r in rows))


TABLE_COLUMNS = ("stage", "split", "miou", "miou_decided", "best_threshold", "coverage", "image_labels", "n_images",
                 "n_skipped")


def format_table(tsv_path, columns=TABLE_COLUMNS) -> str:
    """The main columns of a summary file, aligned for the terminal (mIoU and coverage in percent)."""
    with open(tsv_path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    cells = [list(columns)]
    for r in rows:
        cells.append([f"{100 * float(r[c]):.1f}" if c in ("miou", "miou_decided", "coverage")
                      and r.get(c) not in (None, "", "nan")
                      else r.get(c, "") for c in columns])
    table = aligned(cells)
    partial = [r["stage"] for r in rows if r.get("coverage") not in (None, "", "nan") and float(r["coverage"]) < 1]
    if partial:
        table += (f"\n({', '.join(partial)}: undecided pixels count as background in miou; miou_decided "
                  "= on the decided pixels only, coverage = their share)")
    chosen = {}
    for r in rows:
        if r.get("best_threshold") and r.get("threshold_from") not in (None, "", r["split"]):
            chosen.setdefault(r["threshold_from"], []).append(r["stage"])
    for split, stages in chosen.items():
        table += f"\n(best_threshold of {', '.join(stages)}: chosen on the {split} split, applied here)"
    if "image_labels" in columns and any(r.get("image_labels") for r in rows):
        table += f"\n(image_labels {IMAGE_LABELS_NOTE}: compare yes with yes, no with no)"
    if any(r["stage"] == UPPER_BOUND for r in rows):
        table += f"\n({UPPER_BOUND}: trained on the ground-truth masks, an upper bound, not weakly supervised)"
    return table
