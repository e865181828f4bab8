"""The report's pieces: the montage sample, the montage grid, the results table, the curves."""
from __future__ import annotations

import json

import numpy as np
from PIL import Image

from pipeline import report
from pipeline.artifacts import ArtifactWriter
from pipeline.imageio import colorize
from pipeline.manifest import Record


def records(labels_per_image):
    return [Record(f"img{i:03d}", f"img{i:03d}.png", tuple(labels)) for i, labels in enumerate(labels_per_image)]


def test_montage_sample_shows_every_class_and_is_fixed_by_its_seed():
    rng = np.random.default_rng(0)
    recs = records([sorted(set(rng.integers(1, 4, size=2).tolist())) for _ in range(60)])
    recs.append(Record("rare", "rare.png", (7,)))  # the only image of class 7
    ids = report.montage_ids(recs, n_images=4, seed=3)
    shown = {c for r in recs if r.image_id in ids for c in r.labels}
    assert shown == {1, 2, 3, 7} and "rare" in ids
    assert len(ids) >= 4 and ids == sorted(ids)
    assert report.montage_ids(recs, n_images=4, seed=3) == ids
    assert len(report.montage_ids(recs, n_images=10, seed=3)) == 10
    assert report.montage_ids(recs, n_images=4, seed=4) != ids  # another seed, another sample


def test_montage_draws_one_panel_per_image_and_column(tmp_path):
    rgb = np.full((20, 30, 3), 200, np.uint8)
    labels = np.zeros((20, 30), np.uint8)
    labels[5:10, 5:10] = 2
    labels[0, :] = 255
    rows = [(f"img{i}", [{"rgb": rgb}, report.label_picture(labels), report.label_picture(labels), None if i == 1 else
                         {"rgb": rgb}]) for i in range(3)]
    out = tmp_path / "m.png"
    drawn = report.draw_montage(rows, ["image", "truth", "stage", "heat"], ["cat", "dog"], "title", out)
    assert drawn == 3 * 4 - 1  # one missing panel
    width, height = Image.open(out).size
    assert width > height * 4 / 3 * 0.8  # four columns, three rows


def test_legend_names_each_seen_value_and_packs_entries_into_lines():
    entries = report.legend_entries({255, 0, 2}, ["cat", "dog"])
    assert [name for _, name in entries] == ["background", "dog", "undecided / ignored"]
    assert entries[1][0] == tuple(int(v) for v in colorize(np.array([2], np.uint8))[0])
    lines = report.pack_lines([40, 50, 30, 120, 10], width=100)
    assert lines == [[(0, 0), (1, 40)], [(2, 0)], [(3, 0)], [(4, 0)]]  # 120 alone: wider than a line
    assert report.pack_lines([], width=100) == []


def test_label_pictures_use_the_voc_palette():
    labels = np.array([[0, 1], [2, 255]], np.uint8)
    picture = report.label_picture(labels)
    np.testing.assert_array_equal(picture["rgb"], colorize(labels))
    assert picture["classes"] == {0, 1, 2, 255}
    np.testing.assert_array_equal(picture["rgb"][0, 1], [128, 0, 0])  # VOC class 1


def test_results_table_highlights_the_best_value_of_each_column(tmp_path):
    paths = []
    for stage, miou, cat, dog in (("cam", 0.4, 0.5, None), ("rw", 0.6, 0.3, 0.7)):
        p = tmp_path / f"{stage}.json"
        p.write_text(json.dumps({"stage": stage, "split": "val", "miou": miou,
                                 "per_class_iou": {"background": 0.8, "cat": cat, "dog": dog}}))
        paths.append(p)
    html = report.results_table_html(paths, ["cat", "dog"])
    rows = html.split("<tr>")[2:]
    cam, rw = rows
    assert '<td class="best">50.0</td>' in cam and "<td>40.0</td>" in cam and "<td></td>" in cam
    assert '<td class="best">60.0</td>' in rw and '<td class="best">70.0</td>' in rw and "<td>30.0</td>" in rw
    assert cam.count('class="best">80.0') == 1 and rw.count('class="best">80.0') == 1  # a tie: both


def test_results_table_compares_rows_with_image_labels_apart_from_segmenters(tmp_path):
    """With the plan's image_labels, the best of a column is highlighted among the rows that use
    the ground-truth image labels and, apart, among those that predict without them."""
    paths = []
    for stage, miou in (("cam", 0.4), ("rw", 0.6), ("deeplab_aspp", 0.5), ("fully_supervised", 0.7)):
        p = tmp_path / f"{stage}.json"
        p.write_text(json.dumps({"stage": stage, "split": "val", "miou": miou,
                                 "per_class_iou": {"background": miou, "cat": miou}}))
        paths.append(p)
    labels = {"cam": True, "rw": True, "deeplab_aspp": False, "fully_supervised": False}
    html = report.results_table_html(paths, ["cat"], labels)
    assert "<th>image labels</th>" in html and "predicts without them" in html
    cam, rw, deeplab, upper = html.split("<tr>")[2:]
    assert "<td>yes</td>" in rw and "<td>no</td>" in deeplab
    assert rw.count('class="best"') == 3 and upper.count('class="best"') == 3  # each group's best
    assert 'class="best"' not in cam and 'class="best"' not in deeplab
    # without the plan's groups: one best per column over all rows, no column
    plain = report.results_table_html(paths, ["cat"])
    assert "image labels" not in plain and plain.count('class="best"') == 3


def test_saliency_table_puts_the_sources_side_by_side_best_f_highest_and_mae_lowest(tmp_path):
    paths = []
    for stage, source, max_f, adaptive_f, mae in (("saliency", "u2netp", 0.78, 0.71, 0.125),
                                                  ("saliency_manifold_ranking", "manifold_ranking", 0.52, 0.38, 0.345)):
        p = tmp_path / f"{stage}.json"
        curve = [{"threshold": t / 4, "precision": 0.4 + 0.1 * t, "recall": 1 - 0.2 * t} for t in range(4)]
        p.write_text(json.dumps({"stage": stage, "split": "train", "source": source, "n_images": 330, "beta2": 0.3,
                                 "max_f": max_f, "adaptive_f": adaptive_f, "mae": mae, "pr_curve": curve}))
        paths.append(p)
    html = report.saliency_table_html(paths)
    u2, mr = html.split("<tr>")[2:]
    assert "<td>u2netp</td>" in u2 and "<td>330</td>" in u2
    assert u2.count('class="best"') == 3 and '<td class="best">0.125</td>' in u2  # MAE: lower is better
    assert 'class="best"' not in mr and "<td>0.520</td>" in mr and "<td>0.345</td>" in mr
    out = tmp_path / "pr.png"
    report.plot_saliency_curves(paths, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_training_curve_has_a_miou_panel_only_when_evaluated(tmp_path):
    history = tmp_path / "h.json"
    history.write_text(json.dumps({"epochs": [{"epoch": e, "loss": 1 / e, "seconds": 30} for e in (1, 2, 3)]}))
    report.plot_history(history, "classifier", tmp_path / "a.png")
    history.write_text(json.dumps({"epochs": [{"epoch": e, "loss": 1 / e, "miou": 0.1 * e} for e in (1, 2)]}))
    report.plot_history(history, "segmenter", tmp_path / "b.png")
    one, two = (Image.open(tmp_path / n).size for n in ("a.png", "b.png"))
    assert two[0] > 1.5 * one[0]  # loss and mIoU side by side


def test_stage_pictures_draw_the_cam_label_map_at_the_stages_threshold(tmp_path):
    cams = np.zeros((2, 4, 4), np.float16)
    cams[0, :, :2] = 0.9  # class 3 on the left
    cams[1, :2, 2:] = 0.2  # class 5 weakly, top right
    path = tmp_path / "cam.h5"
    with ArtifactWriter(path, stage="cam", split="val", shard="shard00", classes=[f"c{i}" for i in range(1, 6)],
                        params={}, code_hash="x") as w:
        w.add("a", cams=cams, keys=np.array([3, 5], np.uint8))
    rgb = np.zeros((4, 4, 3), np.uint8)
    heat, labels = report.stage_pictures("cam", [path], "cam", {"a": rgb, "b": rgb}, threshold=0.1)["a"]
    expected = np.zeros((4, 4), np.uint8)
    expected[:, :2] = 3
    expected[:2, 2:] = 5
    np.testing.assert_array_equal(labels["rgb"], colorize(expected))
    _, labels = report.stage_pictures("cam", [path], "cam", {"a": rgb}, threshold=0.5)["a"]
    expected[:2, 2:] = 0  # 0.2 < 0.5: background
    np.testing.assert_array_equal(labels["rgb"], colorize(expected))
    assert report.stage_pictures("cam", [path], "cam", {"b": rgb}, threshold=0.1)["b"] == [None, None]
    assert heat["rgb"].shape == (4, 4, 3)


def test_instance_pictures_name_each_images_instances_and_leave_missing_images_bare(tmp_path, monkeypatch):
    masks = np.zeros((2, 4, 4), np.uint8)
    masks[0, :2] = 1
    masks[1, 2:] = 1
    path = tmp_path / "prm.h5"
    with ArtifactWriter(path, stage="prm", split="val", shard="shard00", classes=["cat", "dog"], params={},
                        code_hash="x") as w:
        w.add("a", instance_masks=masks, instance_classes=np.array([2, 1], np.uint8),
              instance_scores=np.array([0.9, 0.5], np.float32))
    drawn = {}
    monkeypatch.setattr(report, "draw_montage", lambda rows, *args: drawn.update(rows=rows) or len(rows))
    rgb = np.zeros((4, 4, 3), np.uint8)
    truth = report.label_picture(np.zeros((4, 4), np.uint8))
    recs = records([[1, 2], [1], [2]])  # img000 .. img002; only img000 and img001 are drawn
    recs[0] = Record("a", "a.png", (1, 2))
    n = report.draw_instances([path], recs, {"a": rgb, "img001": rgb}, {"a": truth, "img001": truth},
                              ["cat", "dog"], tmp_path / "i.png")
    (label_a, panels_a), (label_b, panels_b) = drawn["rows"]
    assert n == 2 and label_a == "a\ndog, cat" and label_b == "img001"
    assert panels_a[2]["rgb"].shape == (4, 4, 3) and panels_b[2] is None
