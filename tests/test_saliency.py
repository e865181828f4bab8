"""Saliency: the built-in detectors, the folder source (resizing, missing maps), the measures."""
import json

import numpy as np
import pytest
from PIL import Image

from pipeline.artifacts import ArtifactReader, ArtifactWriter
from pipeline.imageio import ImageReadError, write_image, write_label_png
from pipeline.manifest import Record, write_tsv
from pipeline.problems import read_report
from pipeline.saliency import (SaliencyScores, evaluate_saliency, f_measure, folder_map, frequency_tuned,
                               manifold_ranking, ranking_matrix, run)
from pipeline.superpixels import region_graph


def scene(h=96, w=128, seed=0):
    """A textured grey-green background touching every border and a red box inside: the box is
    salient by the boundary prior and by colour contrast."""
    rng = np.random.default_rng(seed)
    img = np.empty((h, w, 3))
    img[:] = (110, 130, 100)
    img += 8 * rng.standard_normal((h, w, 3))
    fg = np.zeros((h, w), bool)
    fg[30:70, 40:90] = True
    img[fg] = (200, 40, 40)
    return np.clip(img, 0, 255).astype(np.uint8), fg


@pytest.mark.parametrize("detector", [manifold_ranking, frequency_tuned])
def test_built_in_detectors_find_the_object_without_any_training(detector):
    rgb, fg = scene()
    sal = detector(rgb)
    assert sal.shape == fg.shape and sal.dtype == np.float32 and 0 <= sal.min() and sal.max() <= 1
    assert sal[fg].mean() > 0.6 and sal[~fg].mean() < 0.25
    scores = SaliencyScores()
    scores.add(sal, fg, np.ones_like(fg))
    assert scores.result()["max_f"] > 0.9


def test_region_graph_and_ranking_matrix_on_a_hand_made_partition():
    # 0 | 1       regions 0-1, 0-2, 1-3, 2-3 touch; 0-3 and 1-2 only at a corner (not 4-connected)
    # 2 | 3
    seg = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]])
    adj = region_graph(seg)
    expected = np.zeros((4, 4), bool)
    for a, b in [(0, 1), (0, 2), (1, 3), (2, 3)]:
        expected[a, b] = expected[b, a] = True
    np.testing.assert_array_equal(adj, expected)
    colours = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]])
    a = ranking_matrix(colours, seg, alpha=0.99, sigma2=0.1)
    assert a.shape == (4, 4) and np.allclose(np.diag(a), 0) and np.allclose(a, a.T)
    # every region touches the border, so all are linked; the closest colours rank each other highest
    assert (a[0, 1:] > 0).all()


def test_scores_on_a_hand_computed_case():
    sal = np.array([[1.0, 1.0, 0.0, 0.0]])
    fg = np.array([[True, False, True, False]])
    s = SaliencyScores()
    s.add(sal, fg, np.ones_like(fg))
    r = s.result()
    # any threshold in (0, 1]: predicted {0, 1}, precision 1/2, recall 1/2 -> F = 0.5; threshold 0
    # predicts everything: precision 1/2, recall 1 -> F = 1.3 * 0.5 / 1.15, the maximum
    assert r["max_f"] == pytest.approx(0.65 / 1.15) and r["adaptive_f"] == pytest.approx(0.5) and r["mae"] == pytest.approx(0.5)
    perfect = SaliencyScores()
    perfect.add(fg.astype(float), fg, np.ones_like(fg))
    assert perfect.result()["max_f"] == pytest.approx(1.0) and perfect.result()["mae"] == 0
    # ignored pixels (valid False) do not count; an image without foreground counts in MAE only
    ign = SaliencyScores()
    ign.add(np.array([[1.0, 0.0, 1.0]]), np.array([[True, False, False]]), np.array([[True, True, False]]))
    ign.add(np.array([[0.25, 0.25]]), np.array([[False, False]]), np.array([[True, True]]))
    r = ign.result()
    assert r["max_f"] == pytest.approx(1.0) and r["n_with_foreground"] == 1 and r["mae"] == pytest.approx(0.125)
    assert f_measure(0.5, 1.0) == pytest.approx(1.3 * 0.5 / (0.3 * 0.5 + 1.0))


def test_folder_maps_of_any_size_are_resized_to_the_image(tmp_path):
    grad = np.tile(np.linspace(0, 255, 20).astype(np.uint8), (10, 1))  # 10 x 20, dark left, bright right
    Image.fromarray(grad, "L").save(tmp_path / "a.png")
    sal = folder_map(tmp_path / "a.png", (30, 60))
    assert sal.shape == (30, 60) and sal.dtype == np.float32
    assert sal[:, :5].mean() < 0.1 and sal[:, -5:].mean() > 0.9 and 0 <= sal.min() and sal.max() <= 1
    Image.fromarray(grad.astype(np.uint16) * 257).save(tmp_path / "b.png")  # 16-bit maps too
    np.testing.assert_allclose(folder_map(tmp_path / "b.png", (10, 20)), grad / 255.0, atol=1e-3)
    with pytest.raises(ImageReadError, match="missing.png: file not found"):
        folder_map(tmp_path / "missing.png", (10, 20))


def test_folder_source_records_a_missing_map_and_keeps_the_others(tmp_path):
    records = []
    for i in range(3):
        rgb, fg = scene(seed=i)
        write_image(tmp_path / f"im{i}.png", rgb)
        records.append(Record(f"im{i}", str(tmp_path / f"im{i}.png"), (1,)))
    maps = tmp_path / "maps"
    maps.mkdir()
    for i in (0, 2):  # im1 has no map
        Image.fromarray((fg[::2, ::2] * 255).astype(np.uint8), "L").save(maps / f"im{i}_sal.png")
    write_tsv(records, tmp_path / "m.tsv")
    cfg = {"source": "folder", "folder": {"dir": str(maps), "suffix": "_sal.png"}}
    run(manifest_path=tmp_path / "m.tsv", cfg=cfg, classes=["a"], code_hash="x", split="train", shard="shard00",
        out_path=tmp_path / "s.h5", problems_path=tmp_path / "s.problems.tsv")
    with ArtifactReader(tmp_path / "s.h5", stage="saliency") as rd:
        assert rd.image_ids() == ["im0", "im2"]
        sal = rd.read("im0", "saliency")["saliency"]
        assert sal.dtype == np.float16 and sal.shape == fg.shape  # upsampled 2x to the image
        assert sal[fg].mean() > 0.9 and sal[~fg].mean() < 0.1
    (row,) = read_report(tmp_path / "s.problems.tsv")
    assert row[0] == "im1" and row[1].endswith("im1_sal.png") and "file not found" in row[2]


def test_evaluate_saliency_against_the_foreground_of_the_masks(tmp_path):
    records = []
    with ArtifactWriter(tmp_path / "s.h5", stage="saliency", split="val", shard="s0", classes=["a", "b"],
                        params={"source": "manifold_ranking"}, code_hash="x") as out:
        for i in range(2):
            mask = np.zeros((8, 8), np.uint8)
            mask[2:6, 2:6] = 1 + i  # any object class is foreground
            mask[0, :] = 255  # ignored
            write_label_png(tmp_path / f"m{i}.png", mask)
            sal = (mask > 0).astype(np.float16)
            sal[0, :] = 0.0  # wrong, but on ignored pixels
            if i == 1:
                sal[6:, :] = 0.5  # half-salient background: MAE 16 * 0.5 / 56
            out.add(f"i{i}", saliency=sal)
            records.append(Record(f"i{i}", f"i{i}.png", (1 + i,), mask=str(tmp_path / f"m{i}.png")))
    records.append(Record("i2", "i2.png", (1,), mask=str(tmp_path / "m0.png")))  # no saliency: skipped
    write_tsv(records, tmp_path / "val.tsv")
    m = evaluate_saliency(manifest_paths=[tmp_path / "val.tsv"], saliency_paths=[tmp_path / "s.h5"],
                          classes=["a", "b"], split="val", stage="saliency", out_path=tmp_path / "saliency.json",
                          problems_path=tmp_path / "p.tsv")
    assert m["n_images"] == 2 and m["n_skipped"] == 1 and m["source"] == "manifold_ranking"
    assert m["max_f"] == pytest.approx(1.0) and m["mae"] == pytest.approx(16 * 0.5 / 56 / 2)
    assert json.loads((tmp_path / "saliency.json").read_text())["max_f"] == pytest.approx(1.0)
    assert read_report(tmp_path / "p.tsv")[0][0] == "i2"
