"""Stage report: the figures and tables that `snakemake --report report.html` shows.

- The results table as HTML: each stage's mIoU and IoU per class, the best value of every
  column highlighted; the saliency table (max F, adaptive F, MAE of every saliency source) and
  the sources' precision-recall curves.
- A montage per stage: the same images in every one (report.montage: listed ids, or a seeded
  sample in which every class of the split appears), one row each: image, ground truth and
  the stage's output side by side (a CAM stage: its heat map and its label map at the stage's
  best background threshold), in the VOC palette with a legend of class names. Per split, one
  more montage puts every stage's output side by side.
- Training curves: loss (and mIoU where a history has it) per epoch of each trained model.
- PRM's instances on the montage images, when PRM ran.
- The completed config and the library versions of the run.

Montages are composed with Pillow, curves drawn with matplotlib's Agg backend: nothing needs a
display.
"""
from __future__ import annotations

import html
import json
import logging
from pathlib import Path

import numpy as np

from . import manifest as mf
from .artifacts import ShardSet
from .atomic import write_text
from .evaluate import cam_labels
from .figures import pyplot, save_figure
from .imageio import ImageReadError, colorize, read_image, read_label_map, write_image
from .inspection import heat_overlay, instance_overlay
from .summary import IMAGE_LABELS_NOTE, whole_image

log = logging.getLogger(__name__)

PANEL_PIXELS = 160  # a montage panel's longer side


def montage_ids(records: list[mf.Record], n_images: int, seed: int) -> list[str]:
    """A fixed sample: in a seeded order, first the images that show a class not shown yet
    (until every class of the split is shown), then the next ones up to n_images."""
    order = np.random.default_rng(seed).permutation(len(records))
    present = {c for r in records for c in r.labels}
    chosen, shown = [], set()
    for i in order:
        if shown >= present:
            break
        if set(records[i].labels) - shown:
            chosen.append(i)
            shown |= set(records[i].labels)
    for i in order:
        if len(chosen) >= n_images:
            break
        if i not in chosen:
            chosen.append(i)
    return sorted(records[i].image_id for i in chosen)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # scalable where Pillow has FreeType
    except (TypeError, ValueError, OSError, ImportError):
        return ImageFont.load_default()


def _wrap(draw, text: str, font, width: int) -> list[str]:
    """`text` in lines no wider than `width` pixels (split at spaces and the given newlines)."""
    lines = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}".strip()
            if line and draw.textlength(candidate, font=font) > width:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    return lines


def legend_entries(seen, class_names) -> list[tuple[tuple[int, int, int], str]]:
    """(colour, name) of each label value in `seen`, in value order, in the VOC palette."""
    names = ["background", *class_names]
    palette = colorize(np.arange(256, dtype=np.uint8))
    return [(tuple(int(v) for v in palette[c]), names[c] if c < len(names) else "undecided / ignored")
            for c in sorted(seen)]


def pack_lines(widths: list[int], width: int) -> list[list[tuple[int, int]]]:
    """Items of the given widths, left to right, as many to a line as fit `width` (an item wider
    than the line gets a line of its own): lines of (item index, x offset)."""
    lines, x = [[]], 0
    for k, w in enumerate(widths):
        if lines[-1] and x + w > width:
            lines.append([])
            x = 0
        lines[-1].append((k, x))
        x += w
    return lines if widths else []


def draw_montage(rows: list[tuple[str, list]], columns: list[str], class_names, title: str, out_path) -> int:
    """One row per image (its id, one picture per column; None draws an empty panel),
    a legend of the classes seen in the label maps; returns the panels holding a picture.

    Composed as one picture with Pillow, not matplotlib: a run draws a montage per row, and a
    grid of panels needs no axes (matplotlib took ~0.7 s a montage, most of the report job)."""
    from PIL import Image, ImageDraw

    panel, gap, margin, label_width, swatch = PANEL_PIXELS, 4, 8, 96, 10
    title_font, text_font = _font(13), _font(10)
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    _, text_top, _, text_bottom = scratch.textbbox((0, 0), "Ag", font=text_font)
    line = text_bottom - text_top + 3  # pixels per line of text_font (ascender to descender, plus leading)
    heads = [_wrap(scratch, c, text_font, panel) for c in columns]
    labels = [_wrap(scratch, image_id, text_font, label_width - gap) for image_id, _ in rows]
    row_heights = [max(panel, line * len(lab)) for lab in labels]

    seen = set().union(*(p.get("classes", set()) for _, pictures in rows for p in pictures if p is not None))
    entries = legend_entries(seen, class_names)
    width = margin * 2 + label_width + len(columns) * (panel + gap)
    entry_widths = [swatch + 4 + int(scratch.textlength(name, font=text_font)) + 12 for _, name in entries]
    legend = pack_lines(entry_widths, width - 2 * margin)
    top = margin + 18 + line * max(map(len, heads), default=1) + gap
    height = top + sum(h + gap for h in row_heights) + (line + 4) * len(legend) + margin

    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((width // 2, margin), title, fill="black", font=title_font, anchor="mt")
    for c, head in enumerate(heads):
        x0 = margin + label_width + c * (panel + gap)
        for k, text in enumerate(head):
            draw.text((x0 + panel // 2, margin + 18 + k * line), text, fill="black", font=text_font, anchor="mt")
    drawn, y = 0, top
    for (_, pictures), label, row_height in zip(rows, labels, row_heights):
        for k, text in enumerate(label):
            draw.text((margin, y + row_height // 2 + (k - len(label) / 2) * line), text, fill="black", font=text_font)
        for c, picture in enumerate(pictures):
            x0 = margin + label_width + c * (panel + gap)
            if picture is None:
                draw.rectangle((x0, y, x0 + panel - 1, y + panel - 1), outline=(200, 200, 200))
                draw.text((x0 + panel // 2, y + panel // 2), "missing", fill="grey", font=text_font, anchor="mm")
                continue
            img = Image.fromarray(np.ascontiguousarray(picture["rgb"], dtype=np.uint8))
            scale = panel / max(img.size)
            size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
            # label maps keep their exact colours; photos and heat maps are smoothed
            img = img.resize(size, Image.NEAREST if "classes" in picture else Image.BILINEAR)
            canvas.paste(img, (x0 + (panel - size[0]) // 2, y + (panel - size[1]) // 2))
            drawn += 1
        y += row_height + gap
    for k, items in enumerate(legend):
        y0 = y + k * (line + 4)
        for index, x in items:
            colour, name = entries[index]
            x0 = margin + x
            draw.rectangle((x0, y0, x0 + swatch, y0 + swatch), fill=colour, outline=(120, 120, 120))
            draw.text((x0 + swatch + 4, y0), name, fill="black", font=text_font)
    write_image(out_path, np.asarray(canvas))
    return drawn


def label_picture(labels: np.ndarray) -> dict:
    """A label map in the VOC palette (undecided / ignored pixels cream white)."""
    return {"rgb": colorize(labels), "classes": {int(v) for v in np.unique(labels)}}


def stage_pictures(kind: str, shard_paths, stage: str, images: dict[str, np.ndarray], threshold: float | None):
    """image id -> the stage's pictures: [heat map, label map] for CAMs, [label map] for masks."""
    out = {}
    with ShardSet(shard_paths, stage=stage) as shards:
        for image_id, rgb in images.items():
            if image_id not in shards:
                out[image_id] = [None, None] if kind == "cam" else [None]
            elif kind == "cam":
                data = shards.read(image_id, "cams", "keys")
                cams = data["cams"].astype(np.float32)
                heat = heat_overlay(rgb, cams.max(0) if len(cams) else np.zeros(rgb.shape[:2], np.float32))
                out[image_id] = [{"rgb": heat}, label_picture(cam_labels(cams, data["keys"], threshold))]
            else:
                out[image_id] = [label_picture(shards.read(image_id, "mask")["mask"])]
    return out


def _images(records: list[mf.Record]) -> tuple[dict, dict]:
    images, truths = {}, {}
    for r in records:
        try:
            images[r.image_id] = read_image(r.image)
        except ImageReadError as e:
            log.warning("montage: %s", e)
            continue
        truths[r.image_id] = label_picture(read_label_map(r.mask)) if r.mask else None
    return images, truths


def results_table_html(metric_paths, class_names, image_labels: dict | None = None) -> str:
    """Every stage's mIoU and IoU per class (%), the best of each column in bold on green.
    `image_labels` (row -> whether it uses the ground-truth image labels at inference, from the
    plan) adds that column and highlights the best among the rows that use them and, apart,
    among those that do not, so that like is compared with like."""
    rows = [whole_image(json.loads(Path(p).read_text())) for p in metric_paths]
    columns = ["miou", "background", *class_names]
    values = [[r["miou"] if c == "miou" else r.get("per_class_iou", {}).get(c) for c in columns] for r in rows]
    groups = [(image_labels or {}).get(r["stage"]) for r in rows]
    best = {g: [max((v[i] for v, h in zip(values, groups) if h == g and v[i] is not None), default=None)
                for i in range(len(columns))] for g in set(groups)}
    head = "".join(f"<th>{html.escape(c if c != 'miou' else 'mIoU')}</th>"
                   for c in ["stage", "split", *(["image labels"] if image_labels else []), *columns])
    body = []
    for r, vals, group in zip(rows, values, groups):
        cells = [f"<td>{html.escape(r['stage'])}</td>", f"<td>{html.escape(r['split'])}</td>"]
        if image_labels:
            cells.append(f"<td>{'' if group is None else 'yes' if group else 'no'}</td>")
        for v, b in zip(vals, best[group]):
            text = "" if v is None else f"{100 * v:.1f}"
            style = ' class="best"' if v is not None and v == b else ""
            cells.append(f"<td{style}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    note = ("IoU in % on each stage's split; the best value of each column is highlighted (rows of the training "
            "split's pseudo masks included)")
    if image_labels:
        note += f" within each value of image labels ({IMAGE_LABELS_NOTE})"
    return _html_page("Results", note + ".", head, body)


def _html_page(title: str, note: str, head: str, body: list[str]) -> str:
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
            "body{font-family:sans-serif;font-size:13px}table{border-collapse:collapse}"
            "th,td{border:1px solid #ccc;padding:3px 6px;text-align:right}"
            "td:first-child,td:nth-child(2){text-align:left}"
            "th{background:#f0f0f0;writing-mode:vertical-rl;transform:rotate(180deg);white-space:nowrap}"
            f".best{{font-weight:bold;background:#c8f0c8}}</style></head><body><p>{html.escape(note)}</p>"
            f"<table><tr>{head}</tr>{''.join(body)}</table></body></html>\n")


# the saliency measures: (JSON key, column, whether higher is better)
SALIENCY_COLUMNS = (("max_f", "max F", True), ("adaptive_f", "adaptive F", True), ("mae", "MAE", False))


def saliency_table_html(metric_paths) -> str:
    """Every saliency row (one per source) side by side: max F, adaptive F, MAE; the best of each
    column in bold on green."""
    rows = [json.loads(Path(p).read_text()) for p in metric_paths]
    values = [[r.get(key) for key, _, _ in SALIENCY_COLUMNS] for r in rows]
    best = []
    for i, (_, _, higher) in enumerate(SALIENCY_COLUMNS):
        present = [v[i] for v in values if v[i] is not None]
        best.append((max if higher else min)(present) if present else None)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["row", "source", "split", "images",
                                                         *(name for _, name, _ in SALIENCY_COLUMNS)])
    body = []
    for r, vals in zip(rows, values):
        cells = [f"<td>{html.escape(str(r[k]))}</td>" for k in ("stage", "source", "split", "n_images")]
        for v, b in zip(vals, best):
            style = ' class="best"' if v is not None and v == b else ""
            cells.append(f"<td{style}>{'' if v is None else f'{v:.3f}'}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return _html_page("Saliency", f"Saliency maps against the ground truth's foreground: max F-measure over 256 "
                                  f"thresholds and F at the adaptive threshold (beta^2 = {rows[0].get('beta2', 0.3)}), "
                                  "mean absolute error (lower is better); the best of each column is highlighted.",
                      head, body)


def plot_saliency_curves(metric_paths, out_path) -> None:
    """The precision-recall curve of every saliency row, in one plot."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 3.4))
    for p in metric_paths:
        m = json.loads(Path(p).read_text())
        curve = m.get("pr_curve") or []
        label = f"{m['source']} (max F {m['max_f']:.3f})" if "max_f" in m else m["source"]
        ax.plot([c["recall"] for c in curve], [c["precision"] for c in curve], marker=".", label=label)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title("saliency: precision-recall against the foreground", fontsize=9)
    fig.tight_layout()
    save_figure(fig, out_path)


def plot_history(history_path, title: str, out_path) -> None:
    """Loss per epoch (and mIoU where the history holds it) of one trained model."""
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    epochs = json.loads(Path(history_path).read_text())["epochs"]
    x = [e["epoch"] for e in epochs]
    has_miou = any("miou" in e for e in epochs)
    fig, axes = plt.subplots(1, 2 if has_miou else 1, squeeze=False, figsize=(7 if has_miou else 4, 2.8))
    ax = axes[0, 0]
    ax.plot(x, [e["loss"] for e in epochs], marker="o")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    if has_miou:
        ax = axes[0, 1]
        ax.plot([e["epoch"] for e in epochs if "miou" in e], [100 * e["miou"] for e in epochs if "miou" in e],
                marker="o", color="tab:green")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("mIoU (%)")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{title}: {len(epochs)} epochs, {sum(e.get('seconds', 0) for e in epochs) / 60:.1f} min", fontsize=9)
    fig.tight_layout()
    save_figure(fig, out_path)


def draw_instances(shard_paths, records: list[mf.Record], images: dict, truths: dict, class_names, out_path) -> int:
    rows = []
    with ShardSet(shard_paths, stage="prm") as shards:
        instances = {r.image_id: shards.read(r.image_id, "instance_masks", "instance_classes")
                     for r in records if r.image_id in images and r.image_id in shards}
    for r in records:
        if r.image_id not in images:
            continue
        rgb, picture = images[r.image_id], None
        if r.image_id in instances:
            data = instances[r.image_id]
            picture = {"rgb": instance_overlay(rgb, data["instance_masks"].astype(bool))}
            found = ", ".join(class_names[int(c) - 1] for c in data["instance_classes"])
            label = f"{r.image_id}\n{found or 'no instance'}"
        else:
            label = r.image_id
        rows.append((label, [{"rgb": rgb}, truths[r.image_id], picture]))
    return draw_montage(rows, ["image", "ground truth", "PRM instances"], class_names,
                        "PRM: instance masks (one colour each)", out_path)


def versions_text() -> str:
    import platform

    from .provenance import library_versions

    lines = [f"python\t{platform.python_version()}"]
    lines += [f"{name}\t{version}" for name, version in sorted(library_versions().items())]
    return "\n".join(lines) + "\n"


def run(*, records: dict[str, list[mf.Record]], montage_ids_by_split: dict[str, list[str]], stages: dict,
        metric_paths: dict[str, str], saliency_metric_paths: list[str], histories: dict[str, str], prm: dict | None,
        class_names, config: dict, outputs: dict, image_labels: dict | None = None) -> dict:
    """`stages`: row -> {"kind": cam | mask, "split", "shards", "stage" (the artifacts' stage
    attribute)}; `saliency_metric_paths`: the saliency rows' metrics (may be empty); `prm`:
    {"split", "shards"} of PRM's instances or None; `outputs`: table, saliency_table and
    saliency_curves (when there are saliency rows), montages {row: png}, overviews {split:
    png}, curves {model: png}, instances (png, when prm), config, versions; `image_labels`: row
    -> whether it uses the image labels at inference (the table's groups). Returns row ->
    panels drawn in its montage."""
    import yaml

    write_text(outputs["table"], results_table_html([metric_paths[row] for row in stages], class_names, image_labels))
    if saliency_metric_paths:
        write_text(outputs["saliency_table"], saliency_table_html(saliency_metric_paths))
        plot_saliency_curves(saliency_metric_paths, outputs["saliency_curves"])
    counts = {}
    for split, ids in montage_ids_by_split.items():
        chosen = [r for r in records[split] if r.image_id in set(ids)]
        images, truths = _images(chosen)
        rows_of_split = {row: s for row, s in stages.items() if s["split"] == split}
        overview_columns, overview = ["image", "ground truth"], {i: [{"rgb": images[i]}, truths[i]] for i in images}
        for row, s in rows_of_split.items():
            threshold = None
            if s["kind"] == "cam":
                threshold = json.loads(Path(metric_paths[row]).read_text()).get("best_threshold")
            pictures = stage_pictures(s["kind"], s["shards"], s["stage"], images, threshold)
            columns = ["image", "ground truth"]
            columns += [f"{row} heat map", f"{row} labels (bg > {threshold:.2f})"] if s["kind"] == "cam" else [row]
            rows = [(i, [{"rgb": images[i]}, truths[i], *pictures[i]]) for i in sorted(images)]
            counts[row] = draw_montage(rows, columns, class_names, f"{row} on {split}", outputs["montages"][row])
            overview_columns.append(row)
            for i in images:
                overview[i].append(pictures[i][-1])
        if split in outputs["overviews"]:
            draw_montage([(i, overview[i]) for i in sorted(overview)], overview_columns, class_names,
                         f"every stage on {split}, side by side", outputs["overviews"][split])
    for model, path in histories.items():
        plot_history(path, model, outputs["curves"][model])
    if prm:
        chosen = [r for r in records[prm["split"]] if r.image_id in set(montage_ids_by_split[prm["split"]])]
        images, truths = _images(chosen)
        draw_instances(prm["shards"], chosen, images, truths, class_names, outputs["instances"])
    write_text(outputs["config"], yaml.safe_dump(config, sort_keys=False))
    write_text(outputs["versions"], versions_text())
    return counts
