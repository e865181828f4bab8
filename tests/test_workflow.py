"""End-to-end: the Snakemake workflow on tiny data (tens of seconds per run)."""
import csv
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import REPO, SNAKEMAKE, TINY, deep_update, planned_job_details, planned_jobs, snakemake, write_config
from pipeline.artifacts import ArtifactReader
from pipeline.backbones import build_backbone
from pipeline.config import load_layers, resolve
from pipeline.datasets import synthetic
from pipeline.imageio import write_label_png
from pipeline.nets import load_classifier
from pipeline.problems import read_report
from pipeline.seeds import share_finished_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("run")
    config = write_config(work / "tiny.yaml")
    proc = snakemake(work, config, timeout=1500)  # ~7 min on 2 idle cores; the limit only guards against hangs
    return work, config, proc.stdout


def test_outputs_of_a_run(tiny_run):
    work, _, out = tiny_run
    summary = (work / "results/metrics/summary.tsv").read_text().splitlines()
    header = summary[0].split("\t")
    assert header[:3] == ["stage", "split", "miou"] and "iou_train" in header
    row = dict(zip(header, summary[1].split("\t")))
    assert row["stage"] == "cam" and row["split"] == "val" and 0 < float(row["miou"]) < 1
    assert "Results (results/metrics/summary.tsv" in out  # printed at the end of the run

    metrics = json.loads((work / "results/metrics/cam.json").read_text())
    assert metrics["n_images"] == 16 and metrics["split"] == "val"
    assert set(metrics["per_class_iou"]) == {"background", *synthetic.CLASSES}
    assert len(metrics["threshold_sweep"]) == 96 and 0 <= metrics["best_threshold"] <= 0.95
    # the reported mIoU is the sweep's value at the threshold chosen on the training split (the
    # papers' protocol), the mean of the per-class IoUs, and the table's value; val's own best
    # is there for reference only
    assert metrics["threshold_from"] == "train"
    on_train = json.loads((work / "results/metrics/train_split/cam.json").read_text())
    assert on_train["split"] == "train" and metrics["best_threshold"] == on_train["best_threshold"]
    at = {p["threshold"]: p["miou"] for p in metrics["threshold_sweep"]}
    assert metrics["miou"] == at[metrics["best_threshold"]]
    assert metrics["split_best_miou"] == max(at.values()) >= metrics["miou"]
    ious = [v for v in metrics["per_class_iou"].values() if v is not None]
    assert metrics["miou"] == pytest.approx(sum(ious) / len(ious))
    assert float(row["miou"]) == pytest.approx(metrics["miou"], abs=1e-4)
    conf = np.array(metrics["confusion"])
    assert conf.shape == (9, 9) and conf.sum() > 0

    val_shards = sorted((work / "results/cam/val").glob("*.h5"))
    assert 1 <= len(val_shards) <= 2
    ids = []
    for path in val_shards:
        with ArtifactReader(path, stage="cam") as r:
            ids += r.image_ids()
            assert r.attrs["split"] == "val" and r.attrs["shard"] == path.stem
    assert sorted(ids) == [f"val_{i:05d}" for i in range(16)]
    assert not list((work / "results/checkpoints").glob("*"))  # removed after training
    for rule in ("synthetic_data/train", "synthetic_data/val", "train_classifier", "summary", "evaluate/cam",
                 "train_affinity", "evaluate/rw", "evaluate/rw_crf", "evaluate/affinity_labels",
                 "train_segmenter/deeplab_aspp", "train_segmenter/fully_supervised", "evaluate/deeplab_aspp_crf",
                 "train_eps/manifold_ranking/tau0.4", "evaluate/eps", "evaluate/saliency"):
        assert (work / f"results/logs/{rule}.log").is_file()


def test_random_walk_outputs_and_their_rows(tiny_run):
    work, _, _ = tiny_run
    rows = {r["stage"]: r for r in csv.DictReader((work / "results/metrics/summary.tsv").open(), delimiter="\t")}
    assert list(rows) == ["cam", "sccam_r1", "sccam_r2", "eps", "affinity_labels", "mcof_seeds", "mcof_regionnet_r1",
                          "mcof_saliency", "mcof_pixelnet_r1", "rw", "sccam_rw", "eps_rw", "rw_crf",
                          "segmenter_masks", "deeplab_aspp", "deeplab_aspp_crf", "fully_supervised", "mcof", "prm"]
    assert rows["segmenter_masks"]["split"] == "train"  # the random walk of the training images
    assert rows["affinity_labels"]["split"] == "train" and rows["rw"]["split"] == "val"
    labels = json.loads((work / "results/metrics/affinity_labels.json").read_text())
    assert 0 < labels["coverage"] < 1 and 0 < labels["precision"] <= 1 and labels["n_images"] == 24
    # the table scores whole images: undecided pixels as background, the decided-pixel mIoU beside
    assert float(rows["affinity_labels"]["miou"]) == pytest.approx(labels["miou_full"], abs=1e-4)
    assert float(rows["affinity_labels"]["miou_decided"]) == pytest.approx(labels["miou"], abs=1e-4)
    assert rows["rw"]["miou_decided"] == ""
    for stage in ("rw", "rw_crf"):
        m = json.loads((work / f"results/metrics/{stage}.json").read_text())
        assert m["coverage"] == 1 and m["n_images"] == 16 and 0 < m["miou"] < 1
    # the rw row is its masks at the configured background score; the sweep of its score maps
    # agrees with them at that score (up to float16 storage of the scores)
    rw = json.loads((work / "results/metrics/rw.json").read_text())
    at = {round(p["threshold"], 2): p["miou"] for p in rw["threshold_sweep"]}
    assert at[0.25] == pytest.approx(rw["miou"], abs=0.01)
    assert rw["sweep_best_miou"] == max(at.values())
    history = json.loads((work / "results/affinity/history.json").read_text())["epochs"]
    assert len(history) == 1 and {"bg", "fg", "neg"} <= set(history[0])
    pngs = sorted((work / "results/rw/val/png").glob("*/*.png"))
    assert len(pngs) == 16 and len(list((work / "results/rw_crf/val/png").glob("*/*.png"))) == 16
    shard = pngs[0].parent.name
    with ArtifactReader(work / f"results/rw/val/{shard}.h5", stage="rw") as r:
        d = r.read(pngs[0].stem, "mask", "scores", "keys")
        a = r.image_attrs(pngs[0].stem)
        assert d["mask"].shape == (a["height"], a["width"]) and d["keys"][0] == 0
        assert d["scores"].shape[0] == len(d["keys"]) and d["scores"].shape[1] < a["height"]  # feature grid
        assert r.params()["beta"] == 8 and r.params()["logt"] == 8
    np.testing.assert_array_equal(np.array(Image.open(pngs[0])), d["mask"])
    with ArtifactReader(next((work / "results/affinity_labels/train").glob("*.h5")), stage="affinity_labels") as r:
        mask = r.read(r.image_ids()[0], "mask")["mask"]
        assert mask.dtype == np.uint8 and set(np.unique(mask)) <= set(range(9)) | {255}


def test_random_walk_change_reruns_the_walk_and_what_follows_only(tiny_run):
    work, _, _ = tiny_run
    changed = write_config(work / "beta.yaml", {"random_walk": {"beta": 10}})
    jobs = planned_jobs(snakemake(work, changed, "--dry-run").stdout)
    n_val, n_train = (len(list((work / f"results/rw/{s}").glob("*.h5"))) for s in ("val", "train"))
    # the walk of both splits (the segmenter learns from the training split's; every walk's
    # threshold is chosen there), SC-CAM's and EPS's walks, the segmenter trained on it and what
    # follows; not the ground-truth trained one
    assert jobs == {"random_walk": 3 * n_val + 3 * n_train, "evaluate_masks_on_train": 3, "crf_masks": 2 * n_val,
                    "train_segmenter": 1, "segment": n_val, "evaluate_masks": 7, "summary": 1, "report_figures": 1,
                    "all": 1}


def test_a_new_seed_from_a_copy_of_a_run_reruns_what_the_seed_reaches_and_keeps_the_rest(tiny_run, tmp_path):
    work, _, _ = tiny_run
    reseeded = write_config(tmp_path / "seed1.yaml", {"seed": 1})
    (tmp_path / "fresh").mkdir()
    fresh = planned_jobs(snakemake(tmp_path / "fresh", reseeded, "--dry-run").stdout)
    assert share_finished_run(work, tmp_path / "seed1")
    shared = planned_jobs(snakemake(tmp_path / "seed1", reseeded, "--dry-run").stdout)
    # every network trains again under the new seed (the seed is in each training's params)
    trained = {rule: n for rule, n in fresh.items() if rule.startswith("train_")}
    assert len(trained) >= 6 and {rule: shared.get(rule) for rule in trained} == trained
    assert shared["make_cams"] == fresh["make_cams"] and shared["summary"] == 1
    # what no seed reaches is kept from the copy: the data, the superpixels, the saliency maps
    kept = {rule for rule in fresh if rule not in shared}
    assert {"synthetic_data", "manifest", "superpixels", "saliency"} <= kept
    assert kept <= {"synthetic_data", "manifest_shard", "manifest", "superpixels", "saliency", "saliency_detector",
                    "evaluate_saliency"}


def test_mask_source_change_retrains_only_the_segmenter_and_what_follows(tiny_run):
    work, _, _ = tiny_run
    changed = write_config(work / "source.yaml", {"segmenter": {"source": "rw_crf"}})
    jobs = planned_jobs(snakemake(work, changed, "--dry-run").stdout)
    n_val, n_train = (len(list((work / f"results/rw/{s}").glob("*.h5"))) for s in ("val", "train"))
    # the new source (the CRF on the training split's walk) is made, nothing upstream is redone
    assert jobs == {"crf_masks": n_train + n_val, "train_segmenter": 1, "segment": n_val, "evaluate_masks": 3,
                    "summary": 1, "report_figures": 1, "all": 1}


def test_crf_profile_change_reruns_only_the_stages_that_use_it(tiny_run):
    work, _, _ = tiny_run
    changed = write_config(work / "crf.yaml", {"random_walk": {"crf_profile": "irn"}})
    jobs = planned_jobs(snakemake(work, changed, "--dry-run").stdout)
    n = len(list((work / "results/rw/val").glob("*.h5")))
    assert jobs == {"crf_masks": n, "evaluate_masks": 1, "summary": 1, "report_figures": 1, "all": 1}
    deeplab = write_config(work / "crf2.yaml", {"crf": {"profiles": {"deeplab": {"iterations": 5}}}})
    assert planned_jobs(snakemake(work, deeplab, "--dry-run").stdout) == {
        "crf_masks": n, "evaluate_masks": 1, "summary": 1, "report_figures": 1, "all": 1}  # deeplab_aspp_crf only
    unused = write_config(work / "crf3.yaml", {"crf": {"profiles": {"irn": {"iterations": 5}}}})
    assert planned_jobs(snakemake(work, unused, "--dry-run").stdout) == {}


def test_sccam_rounds_rows_and_their_artifacts(tiny_run):
    work, _, _ = tiny_run
    for r in (1, 2):
        m = json.loads((work / f"results/metrics/sccam_r{r}.json").read_text())
        assert m["split"] == "val" and 0 < m["miou"] < 1 and len(m["threshold_sweep"]) == 96
        clusters = m["clusters"]  # the round's cluster report, with purity against the known sub-types
        assert clusters["round"] == r and clusters["k"] == 2 and clusters["images"] == 24
        assert 0 < clusters["purity"]["purity"] <= 1 and set(clusters["purity"]["per_class"]) <= set(synthetic.CLASSES)
        assert (work / f"results/sccam/k2/r{r}/embedding.png").stat().st_size > 1000
        history = json.loads((work / f"results/sccam/k2/r{r}/history.json").read_text())["epochs"]
        assert len(history) == 1 and {"parent", "sub"} <= set(history[0])
        _, saved = load_classifier(work / f"results/sccam/k2/r{r}/model.pt")
        assert saved["round"] == r
    shards = sorted((work / "results/sccam_rw/val").glob("*.h5"))
    with ArtifactReader(shards[0], stage="sccam_rw") as rd:
        assert rd.read(rd.image_ids()[0], "mask")["mask"].dtype == np.uint8
    with ArtifactReader(work / "results/sccam/k2/r2/clusters.h5", stage="sccam_clusters") as rd:
        assert len(rd.image_ids()) == 24 and set(rd.table_names()) == set(synthetic.CLASSES)


def test_sccam_round_r_starts_from_round_r_minus_1(tiny_run):
    work, _, _ = tiny_run
    changed = write_config(work / "rounds.yaml", {"sccam": {"rounds": 3}})
    out = snakemake(work, changed, "--dry-run").stdout
    n_train, n_val = (len(list((work / f"results/cam/{s}").glob("*.h5"))) for s in ("train", "val"))
    # one more round: its features from round 2's classifier, and the walk moves to round 3 (CAMs
    # and walk on both splits: the thresholds are chosen on the training split)
    assert planned_jobs(out) == {"sccam_features": n_train, "sccam_clusters": 1, "train_sccam": 1,
                                 "make_cams": n_val + n_train, "evaluate_cams_on_train": 1, "evaluate_cams": 1,
                                 "random_walk": n_val + n_train, "evaluate_masks_on_train": 1, "evaluate_masks": 1,
                                 "summary": 1, "report_figures": 1, "all": 1}
    features_job = re.search(r"rule sccam_features:\n\s+input: ([^\n]+)", out).group(1)
    assert "results/sccam/k2/r2/model.pt" in features_job
    assert re.search(r"rule random_walk:\n\s+input: [^\n]*results/sccam/k2/r3/cam/val/", out)


def test_sccam_k_change_redoes_only_the_rounds_and_what_follows(tiny_run):
    work, _, _ = tiny_run
    changed = write_config(work / "k.yaml", {"sccam": {"k": 3}})
    jobs = planned_jobs(snakemake(work, changed, "--dry-run").stdout)
    n_train, n_val = (len(list((work / f"results/cam/{s}").glob("*.h5"))) for s in ("train", "val"))
    # neither the classifier, its CAMs, AffinityNet nor the segmenters
    assert jobs == {"sccam_features": 2 * n_train, "sccam_clusters": 2, "train_sccam": 2,
                    "make_cams": 2 * n_val + 2 * n_train, "evaluate_cams_on_train": 2, "evaluate_cams": 2,
                    "random_walk": n_val + n_train, "evaluate_masks_on_train": 1, "evaluate_masks": 1, "summary": 1,
                    "report_figures": 1, "all": 1}
    off = write_config(work / "off.yaml", {"sccam": {"enabled": False}})
    assert planned_jobs(snakemake(work, off, "--dry-run").stdout) == {"summary": 1, "report_figures": 1, "all": 1}


def test_eps_and_saliency_rows_and_their_artifacts(tiny_run):
    work, _, _ = tiny_run
    saliency = json.loads((work / "results/metrics/saliency.json").read_text())
    assert saliency["split"] == "val" and saliency["source"] == "manifold_ranking" and saliency["n_images"] == 16
    assert 0 < saliency["max_f"] <= 1 and 0 < saliency["mae"] < 1 and len(saliency["pr_curve"]) == 32
    shard = next((work / "results/saliency/manifold_ranking/train").glob("*.h5"))
    with ArtifactReader(shard, stage="saliency") as rd:
        sal = rd.read(rd.image_ids()[0], "saliency")["saliency"]
        assert sal.dtype == np.float16 and sal.shape == (rd.image_attrs(rd.image_ids()[0])["height"],
                                                          rd.image_attrs(rd.image_ids()[0])["width"])
    m = json.loads((work / "results/metrics/eps.json").read_text())
    assert m["split"] == "val" and 0 < m["miou"] < 1 and len(m["threshold_sweep"]) == 96
    history = json.loads((work / "results/eps/manifold_ranking/tau0.4/history.json").read_text())["epochs"]
    assert len(history) == 1 and {"cls", "saliency", "fg_share"} <= set(history[0])
    model, saved = load_classifier(work / "results/eps/manifold_ranking/tau0.4/model.pt")
    assert model.arch["background_map"] and saved["tau"] == 0.4
    with ArtifactReader(next((work / "results/eps_rw/val").glob("*.h5")), stage="eps_rw") as rd:
        assert rd.read(rd.image_ids()[0], "mask")["mask"].dtype == np.uint8
    # EPS's walk goes over its own AffinityNet, trained on the affinity labels of EPS's CAMs
    eps_labels = next((work / "results/eps_affinity_labels/train").glob("*.h5"))
    with ArtifactReader(eps_labels, stage="affinity_labels") as own, \
            ArtifactReader(work / "results/affinity_labels/train" / eps_labels.name, stage="affinity_labels") as plain:
        assert own.image_ids() == plain.image_ids()
        masks = [(own.read(i, "mask")["mask"], plain.read(i, "mask")["mask"]) for i in own.image_ids()]
        assert all(a.shape == b.shape for a, b in masks) and any((a != b).any() for a, b in masks)  # other CAMs
    assert len(json.loads((work / "results/eps_affinity/history.json").read_text())["epochs"]) >= 1


def test_eps_tau_and_saliency_source_changes_redo_only_eps(tiny_run, tmp_path):
    work, _, _ = tiny_run
    n_train, n_val = (len(list((work / f"results/cam/{s}").glob("*.h5"))) for s in ("train", "val"))
    tau = write_config(work / "tau.yaml", {"eps": {"tau": 0.6}})
    assert planned_jobs(snakemake(work, tau, "--dry-run").stdout) == {
        "train_eps": 1, "make_cams": n_val + n_train, "evaluate_cams_on_train": 1, "evaluate_cams": 1,
        "affinity_labels": n_train, "train_affinity": 1,  # EPS's own AffinityNet, on its new CAMs
        "random_walk": n_val + n_train, "evaluate_masks_on_train": 1, "evaluate_masks": 1,
        "summary": 1, "report_figures": 1, "all": 1}
    source = write_config(work / "source_ft.yaml", {"saliency": {"source": "frequency_tuned"}})
    # EPS and MCOF's saliency step (its PixelNet and the rows that follow); frequency_tuned's
    # maps of the evaluation split exist (row saliency_frequency_tuned), manifold_ranking's
    # become row saliency_manifold_ranking
    assert planned_jobs(snakemake(work, source, "--dry-run").stdout) == {
        "saliency": n_train, "evaluate_saliency": 2, "train_eps": 1, "make_cams": n_val + n_train,
        "evaluate_cams_on_train": 1, "evaluate_cams": 1, "affinity_labels": n_train, "train_affinity": 1,
        "random_walk": n_val + n_train, "evaluate_masks_on_train": 1, "mcof_saliency": n_train, "train_segmenter": 1,
        "segment": n_train + n_val,
        "evaluate_masks": 4, "summary": 1, "report_figures": 1, "all": 1}
    folder = write_config(tmp_path / "folder.yaml", {"saliency": {"source": "folder"}})
    proc = snakemake(tmp_path, folder, check=False)
    assert proc.returncode != 0 and "saliency.folder.dir is not set" in proc.stdout
    assert not (tmp_path / "results").exists()


def test_mcof_seeds_row_and_what_its_settings_rerun(tiny_run):
    work, _, _ = tiny_run
    m = json.loads((work / "results/metrics/mcof_seeds.json").read_text())
    assert m["split"] == "train" and m["n_images"] == 24 and 0 < m["coverage"] < 1 and 0 < m["precision"] <= 1
    with ArtifactReader(next((work / "results/superpixels/train").glob("*.h5")), stage="superpixels") as rd:
        seg = rd.read(rd.image_ids()[0], "superpixels")["superpixels"]
        assert seg.dtype == np.int32 and seg.max() + 1 == rd.image_attrs(rd.image_ids()[0])["n_regions"]
    n_train, n_val = (len(list((work / f"results/cam/{s}").glob("*.h5"))) for s in ("train", "val"))
    scale = write_config(work / "sp.yaml", {"superpixels": {"felzenszwalb": {"scale": 50}}})
    # MCOF's chain from the seeds to the row mcof: seeds, RegionNet (its features), saliency, PixelNet
    chain = {"train_regionnet": 1, "mcof_regionnet": n_train, "mcof_saliency": n_train, "train_segmenter": 1,
             "segment": n_train + n_val, "evaluate_masks": 5, "summary": 1, "report_figures": 1, "all": 1}
    # and PRM's proposals on the evaluation split
    assert planned_jobs(snakemake(work, scale, "--dry-run").stdout) == {
        "superpixels": n_train + n_val, "mcof_seeds": n_train, "mcof_features": n_train, **chain,
        "prm_instances": n_val, "evaluate_masks": 6, "evaluate_prm_instances": 1}
    seeds = write_config(work / "seeds.yaml", {"mcof": {"seeds": {"threshold": 0.6}}})
    assert planned_jobs(snakemake(work, seeds, "--dry-run").stdout) == {"mcof_seeds": n_train, **chain}
    # a RegionNet setting: from RegionNet on; saliency.threshold: from the refinement on
    hidden = write_config(work / "hidden.yaml", {"mcof": {"regionnet": {"hidden": 32}}})
    assert planned_jobs(snakemake(work, hidden, "--dry-run").stdout) == {**chain, "evaluate_masks": 4}  # not the seeds
    post = write_config(work / "post.yaml", {"mcof": {"saliency": {"threshold": 0.6}}})
    assert planned_jobs(snakemake(work, post, "--dry-run").stdout) == {
        "mcof_saliency": n_train, "train_segmenter": 1, "segment": n_train + n_val, "evaluate_masks": 3, "summary": 1,
        "report_figures": 1, "all": 1}
    off = write_config(work / "mcof_off.yaml", {"mcof": {"enabled": False}})
    assert planned_jobs(snakemake(work, off, "--dry-run").stdout) == {"summary": 1, "report_figures": 1, "all": 1}


def test_prm_rows_artifacts_drawings_and_what_its_settings_rerun(tiny_run):
    work, _, _ = tiny_run
    inst = json.loads((work / "results/metrics/prm_instances.json").read_text())
    assert inst["split"] == "val" and inst["n_images"] == 16 and inst["iou_threshold"] == 0.5
    assert 0 <= inst["map_r"] <= 1 and set(inst["ap_per_class"]) == set(synthetic.CLASSES)
    assert sum(inst["n_gt_instances"].values()) >= 16 and inst["same_class_pairs"]["images_classes"] >= 0
    m = json.loads((work / "results/metrics/prm.json").read_text())
    assert m["split"] == "val" and m["coverage"] == 1 and 0 < m["miou"] < 1
    model, saved = load_classifier(work / "results/prm/model.pt")
    assert saved["peak_stimulation"] == {"window": 3, "median_filter": True, "sub_pixel_factor": 8}
    peaks_shard = next((work / "results/prm/peaks/val").glob("*.h5"))
    with ArtifactReader(peaks_shard, stage="prm_peaks") as rd:
        # every labelled image has a peak per class: the highest is kept even when weak
        assert all(len(rd.read(i, "peaks")["peaks"]) >= len(rd.read(i, "keys")["keys"]) for i in rd.image_ids())
        image_id = rd.image_ids()[0]
        d = rd.read(image_id, "peaks", "peak_classes", "peak_scores", "prms", "keys")
        a = rd.image_attrs(image_id)
        assert d["prms"].shape == (len(d["peaks"]), a["height"], a["width"]) and d["prms"].dtype == np.float16
        assert set(d["peak_classes"]) <= set(d["keys"]) and np.allclose(d["prms"].reshape(len(d["prms"]), -1).max(1), 1)
    with ArtifactReader(work / f"results/prm/instances/val/{peaks_shard.name}", stage="prm") as rd:
        d = rd.read(image_id, "mask", "instance_masks", "instance_classes", "instance_scores", "instance_peaks")
        assert d["instance_masks"].shape[1:] == d["mask"].shape == (a["height"], a["width"])
        assert len(d["instance_classes"]) == len(d["instance_scores"]) == len(d["instance_masks"]) >= 1
        assert set(np.unique(d["mask"])) <= {0, *d["instance_classes"].tolist()}
    for shard, name in ((peaks_shard, "peaks.png"),
                        (work / f"results/prm/instances/val/{peaks_shard.name}", "inst.png")):
        proc = subprocess.run([sys.executable, "-m", "pipeline", "show", str(shard), image_id, "-o",
                               str(work / name)], capture_output=True, text=True, cwd=work)  # paths relative to it
        assert proc.returncode == 0 and (work / name).stat().st_size > 1000, proc.stderr
    n_val = len(list((work / "results/prm/peaks/val").glob("*.h5")))
    threshold = write_config(work / "prm_peak.yaml", {"prm": {"peak_threshold": 0.8}})
    assert planned_jobs(snakemake(work, threshold, "--dry-run").stdout) == {
        "prm_peaks": n_val, "prm_instances": n_val, "evaluate_masks": 1, "evaluate_prm_instances": 1, "summary": 1,
        "report_figures": 1, "all": 1}
    nms = write_config(work / "prm_nms.yaml", {"prm": {"instances": {"nms": 0.5}}})
    assert planned_jobs(snakemake(work, nms, "--dry-run").stdout) == {
        "prm_instances": n_val, "evaluate_masks": 1, "evaluate_prm_instances": 1, "summary": 1, "report_figures": 1,
        "all": 1}
    window = write_config(work / "prm_window.yaml", {"prm": {"window": 5}})
    assert planned_jobs(snakemake(work, window, "--dry-run").stdout) == {
        "train_prm": 1, "prm_peaks": n_val, "prm_instances": n_val, "evaluate_masks": 1, "evaluate_prm_instances": 1,
        "summary": 1, "report_figures": 1, "all": 1}
    off = write_config(work / "prm_off.yaml", {"prm": {"enabled": False}})
    assert planned_jobs(snakemake(work, off, "--dry-run").stdout) == {"summary": 1, "report_figures": 1, "all": 1}


def test_report_holds_every_declared_item(tiny_run):
    work, config, _ = tiny_run
    snakemake(work, config, "--report", str(work / "report.zip"))
    with zipfile.ZipFile(work / "report.zip") as z:
        items = [n for n in z.namelist() if "/data/raw/" in n]
    in_report = sorted(Path(n).name for n in items)
    made = work / "results/report"
    rows = [line.split("\t")[0] for line in (work / "results/metrics/summary.tsv").read_text().splitlines()[1:]]
    # a montage per results row, one per split with every stage, a curve per trained model
    assert sorted(p.stem for p in (made / "montages").glob("*.png")) == sorted([*rows, "all_stages_train",
                                                                                "all_stages_val"])
    assert {p.stem for p in (made / "curves").glob("*.png")} == {
        "classifier", "sccam_r1", "sccam_r2", "eps", "affinity", "eps_affinity", "deeplab_aspp",
        "fully_supervised", "mcof_pixelnet_r1", "mcof_regionnet_r1", "prm"}
    files = sorted(p.name for p in made.rglob("*") if p.is_file())
    assert {"results.html", "saliency.html", "saliency_pr.png", "prm_instances.png", "config.yaml",
            "versions.tsv"} <= set(files)
    # every one of them is in the report, plus SC-CAM's embedding picture of each round
    assert in_report == sorted(files + ["embedding.png", "embedding.png"])
    assert "<table>" in (made / "results.html").read_text() and "torch\t" in (made / "versions.tsv").read_text()
    # the saliency table: the configured source and the ablation's other source, side by side
    saliency = (made / "saliency.html").read_text()
    assert "<td>saliency</td><td>manifold_ranking</td><td>val</td><td>16</td>" in saliency
    assert "<td>saliency_frequency_tuned</td><td>frequency_tuned</td>" in saliency


def test_exported_masks_score_as_the_row_they_come_from(tiny_run, tmp_path):
    """export-masks -> evaluate-masks: a mask row (rw) and a CAM row at its chosen threshold (cam)."""
    from pipeline.__main__ import main

    work, config, _ = tiny_run
    for stage in ("rw", "cam"):
        out = tmp_path / stage
        common = ["--results", str(work / "results"), "--configfile", str(config)]
        assert main(["export-masks", stage, "val", str(out), *common]) == 0
        assert len(list(out.glob("*.png"))) == 16 and len((out / "val.txt").read_text().split()) == 16
        assert main(["evaluate-masks", str(out), "--split", "val", *common]) == 0
        exported = json.loads((out / "val.metrics.json").read_text())
        row = json.loads((work / f"results/metrics/{stage}.json").read_text())
        assert exported["n_images"] == row["n_images"] == 16
        assert exported["miou"] == pytest.approx(row["miou"], abs=1e-9)
        np.testing.assert_array_equal(exported["confusion"], row["confusion"])


def test_affinity_check_scores_the_run_affinity_net_on_its_training_masks(tiny_run, capsys, tmp_path):
    from pipeline.__main__ import main

    work, _, _ = tiny_run
    assert main(["affinity-check", "--results", str(work / "results"), "--max-images", "6"]) == 0
    out = capsys.readouterr().out
    assert "on 6 images of split train (0 without a usable mask)" in out
    same, different = map(int, re.search(r"\((\d+) pairs\), different \S+ \((\d+) pairs\)", out).groups())
    assert same > 0 and different > 0  # the synthetic objects give pairs inside and across them
    assert re.search(r"AUC \d\.\d{3}", out)
    assert main(["affinity-check", "--results", str(work / "results"), "--model", str(tmp_path / "none.pt")]) == 1
    assert "none.pt: no AffinityNet there" in capsys.readouterr().err

    # --walk: the run's CAMs walked over the trained affinities and over them put right
    assert main(["affinity-check", "--results", str(work / "results"), "--max-images", "6", "--walk"]) == 0
    out = capsys.readouterr().out
    assert "of the CAMs of 6 images, best mIoU over the background score" in out
    walks = re.findall(r"^ {4}(as trained|no leaks|full links|perfect) +(\d+\.\d) % at (\d\.\d\d), +\d+\.\d % "
                       r"at the run's \d\.\d\d", out, re.M)
    assert [w[0] for w in walks] == ["as trained", "no leaks", "full links", "perfect"]
    assert all(0 < float(miou) <= 100 for _, miou, _ in walks)
    # --logt: several walk lengths in one pass, each with its four walks
    assert main(["affinity-check", "--results", str(work / "results"), "--max-images", "3", "--walk",
                 "--logt", "1", "3"]) == 0
    out = capsys.readouterr().out
    assert re.findall(r"beta \S+, (\d+) steps; the run's: \d+ steps\)", out) == ["2", "8"]
    assert len(re.findall(r"^ {4}as trained +\d+\.\d %", out, re.M)) == 2
    assert main(["affinity-check", "--results", str(work / "results"), "--logt", "3"]) == 1
    assert "--logt sets the walk's lengths: it needs --walk" in capsys.readouterr().err
    # --beta: several powers of the affinities, each with every length
    assert main(["affinity-check", "--results", str(work / "results"), "--max-images", "3", "--walk",
                 "--logt", "1", "3", "--beta", "2.5", "4"]) == 0
    out = capsys.readouterr().out
    assert re.findall(r"beta (\S+), (\d+) steps; the run's: beta \S+, \d+ steps\)", out) == [
        ("2.5", "2"), ("2.5", "8"), ("4", "2"), ("4", "8")]
    assert main(["affinity-check", "--results", str(work / "results"), "--beta", "4"]) == 1
    assert "--beta sets the walk's powers of the affinities: it needs --walk" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["affinity-check", "--results", str(work / "results"), "--walk", "--beta", "0"])
    assert "'0' is not a positive number" in capsys.readouterr().err
    bare = tmp_path / "bare"  # an AffinityNet without the run's CAMs: the error names the folder
    (bare / "affinity").mkdir(parents=True)
    (bare / "affinity_labels" / "train").mkdir(parents=True)
    (bare / "affinity" / "model.pt").symlink_to(work / "results/affinity/model.pt")
    assert main(["affinity-check", "--results", str(bare), "--walk"]) == 1
    assert f"{bare / 'cam' / 'train'}: no CAMs to walk" in capsys.readouterr().err


def test_affinity_curve_trains_on_half_a_and_checks_on_half_b(tiny_run, capsys, tmp_path):
    from pipeline.__main__ import main

    work, config, _ = tiny_run
    argv = ["affinity-curve", "--results", str(work / "results"), "--configfile", str(config), "--sizes", "3", "6",
            "--seeds", "0", "--logt", "1", "2", "--out", str(tmp_path / "curve"), "--device", "cpu"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "checked on the 12 of B" in out
    sizes = re.findall(r"^(\d+) +1 +(\d+) +\d\.\d{3} +(\d+\.\d) \(([-+]\d+\.\d)\) +(\d+\.\d)", out, re.M)
    assert [(s[0], s[1]) for s in sizes] == [("3", "8"), ("6", "4")]  # 1 epoch of 24 images: 24 / n epochs
    rows = list(csv.DictReader((tmp_path / "curve" / "curve.tsv").open(), delimiter="\t"))
    assert [(r["size"], r["seed"]) for r in rows] == [("3", "0"), ("6", "0")]
    assert all(0 < float(r["walk_2"]) <= 1 and 0 < float(r["walk_4"]) <= 1 and 0 <= float(r["auc"]) <= 1
               for r in rows)
    # each network trained on its subset of half A alone
    manifest = (tmp_path / "curve" / "n3_s0" / "manifest.tsv").read_text().splitlines()
    assert len(manifest) == 1 + 3
    model = tmp_path / "curve" / "n6_s0" / "model.pt"
    stamp = model.stat().st_mtime_ns
    assert main(argv[:5] + ["--sizes", "6"] + argv[8:]) == 0  # a rerun checks the trained network again
    assert model.stat().st_mtime_ns == stamp
    assert main(argv[:5] + ["--sizes", "6", "--held-out", "6"] + argv[8:]) == 0  # a smaller B: A's first 6 the same
    assert "checked on the 6 of B" in capsys.readouterr().out and model.stat().st_mtime_ns == stamp
    assert main(argv[:5] + ["--sizes", "13"] + argv[8:]) == 1
    assert "size 13: a curve trains on 1 to 12 images of A, or on all 24" in capsys.readouterr().err
    # a network kept under --out is reused only for the recipe it was trained with
    other = write_config(tmp_path / "other_lr.yaml", {"affinity": {"lr": 0.0123}},
                         base=yaml.safe_load(config.read_text()))
    assert main(argv[:4] + [str(other), "--sizes", "6"] + argv[8:]) == 1
    err = capsys.readouterr().err
    assert "n6_s0: its network was trained with another recipe (affinity.lr differ)" in err
    assert model.stat().st_mtime_ns == stamp


def test_status_says_what_is_complete_stale_or_missing_and_cleans_leftovers(tiny_run, capsys):
    from pipeline.__main__ import main

    work, config, _ = tiny_run
    dead = work / "results/cam/val/.shard00.h5.tmp4194303"  # above Linux's pid_max: no live process
    live = work / f"results/cam/val/.shard00.h5.tmp{os.getpid()}"
    dead.write_bytes(b"half")
    live.write_bytes(b"busy")
    assert main(["status", "--directory", str(work), "--configfile", str(config), "--clean"]) == 0
    out = capsys.readouterr().out
    assert "Results (" in out and "deeplab_aspp_crf" in out  # the results table
    assert ", 0 stale, 0 missing" in out and "make_cams" in out and "results/cam/val" in out
    assert "Removed 1 temporary file(s)" in out and not dead.exists() and live.exists()
    live.unlink()
    scales = write_config(work / "status_scales.yaml", {"cams": {"scales": [1.0]}})
    assert main(["status", "--directory", str(work), "--configfile", str(scales)]) == 0
    lines = {tuple(line.split()[:2]) for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert {("make_cams", "stale"), ("evaluate_cams", "stale"), ("train_classifier", "complete")} <= lines


def test_segmenter_learns_from_a_folder_of_exported_masks_as_from_the_stage(tiny_run, tmp_path):
    """segmenter.source: {folder: DIR} with the random walk's masks exported there trains the
    same segmenter as source rw; switching to it redoes the segmenter, not what made the masks."""
    import torch

    from pipeline.__main__ import main

    work, config, _ = tiny_run
    exported = tmp_path / "exported"
    assert main(["export-masks", "rw", "train", str(exported), "--results", str(work / "results"),
                 "--configfile", str(config)]) == 0
    source = {"segmenter": {"source": {"folder": str(exported)}}}
    jobs = planned_jobs(snakemake(work, write_config(work / "folder_source.yaml", source), "--dry-run").stdout)
    assert jobs["train_segmenter"] == 1 and jobs["evaluate_mask_folder"] == 1  # deeplab_aspp; row segmenter_masks
    assert not {"random_walk", "train_affinity", "train_classifier", "make_cams"} & set(jobs)
    # train it in a copy of what it needs (the run's own files stay as they are for the other tests)
    copy = tmp_path / "copy"
    for part in ("manifest", "data", "classifier"):
        shutil.copytree(work / "results" / part, copy / "results" / part)
    proc = snakemake(copy, write_config(copy / "c.yaml", source), "results/segmenter/deeplab_aspp/model.pt",
                     "results/metrics/segmenter_masks.json")
    assert planned_jobs(proc.stdout) == {"train_segmenter": 1, "evaluate_mask_folder": 1}  # nothing upstream redone
    ours = torch.load(copy / "results/segmenter/deeplab_aspp/model.pt", map_location="cpu", weights_only=False)
    theirs = torch.load(work / "results/segmenter/deeplab_aspp/model.pt", map_location="cpu", weights_only=False)
    for key, value in theirs["state_dict"].items():
        torch.testing.assert_close(ours["state_dict"][key], value, rtol=0, atol=0, msg=key)
    scored = json.loads((copy / "results/metrics/segmenter_masks.json").read_text())
    assert scored["miou"] == pytest.approx(
        json.loads((work / "results/metrics/segmenter_masks.json").read_text())["miou"])


def test_predict_runs_the_segmenter_and_its_crf_on_a_folder_of_images(tiny_run, tmp_path):
    work, _, _ = tiny_run
    new = tmp_path / "new"
    new.mkdir()
    sources = sorted((work / "results/data/synthetic/val/images").glob("*.png"))[:3]
    for i, src in enumerate(sources):
        shutil.copy(src, new / f"photo{i}.png")
    cfg = write_config(work / "predict.yaml", {"predict": {"images": str(new)}})
    proc = snakemake(work, cfg, "predict")
    jobs = planned_jobs(proc.stdout)
    n = len(list((work / "results/manifest/predict").glob("*.tsv")))
    # the segmenter exists: only the new images' manifest, predictions and CRF
    assert jobs == {"manifest_shard": n, "segment": n, "crf_masks": n, "predict": 1}
    assert "Predictions of deeplab_aspp_crf on 3 images (split predict)" in proc.stdout
    pngs = sorted((work / "results/deeplab_aspp_crf/predict/png").glob("*/*.png"))
    assert [p.stem for p in pngs] == ["photo0", "photo1", "photo2"]
    for png, src in zip(pngs, sources):
        assert Image.open(png).size == Image.open(src).size
    bad = write_config(work / "predict_bad.yaml", {"predict": {"images": str(new), "segmenter": "deeplab_nope"}})
    proc = snakemake(work, bad, "predict", "--dry-run", check=False)
    assert proc.returncode != 0 and "predict.segmenter: deeplab_nope is not a segmenter" in proc.stdout


def test_montage_images_come_from_config(tiny_run):
    work, config, _ = tiny_run
    chosen = write_config(work / "montage.yaml", {"report": {"montage": {"ids": {"val": ["val_00003", "val_00001"]}}}})
    assert planned_jobs(snakemake(work, chosen, "--dry-run").stdout) == {"report_figures": 1, "all": 1}
    unknown = write_config(work / "unknown.yaml", {"report": {"montage": {"ids": {"val": ["val_99999"]}}}})
    proc = snakemake(work, unknown, "--dry-run", check=False)
    assert proc.returncode != 0 and "report.montage.ids: val_99999 not in the manifest of split 'val'" in proc.stdout


def test_unchanged_rerun_does_nothing(tiny_run):
    work, config, _ = tiny_run
    out = snakemake(work, config, "--dry-run").stdout
    assert "Nothing to be done" in out and planned_jobs(out) == {}


def test_building_the_dag_imports_no_torch(tmp_path):
    """A dry run or a no-op rerun plans without the deep-learning stack (it costs seconds to import)."""
    config = write_config(tmp_path / "c.yaml")
    cmd = [sys.executable, "-X", "importtime", "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(tmp_path), "--configfile", str(config), "--dry-run", "--cores", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "snakemake" in imported and "pipeline.config" in imported  # the import log is complete
    assert not {"torch", "torchvision", "matplotlib", "sklearn", "skimage"} & imported


def test_cam_parameter_change_reruns_cams_and_what_follows_only(tiny_run):
    work, _, _ = tiny_run
    changed = write_config(work / "scales.yaml", {"cams": {"scales": [1.0]}})
    jobs = planned_jobs(snakemake(work, changed, "--dry-run").stdout)
    n_val, n_train = (len(list((work / f"results/cam/{s}").glob("*.h5"))) for s in ("val", "train"))
    # the plain CAMs and what follows, and each SC-CAM round's and EPS's CAMs (their classifiers
    # do not depend on CAMs) with their rows and walks, on both splits (thresholds chosen on train)
    assert jobs == {"make_cams": 4 * n_val + 4 * n_train, "evaluate_cams_on_train": 4, "evaluate_cams": 4,
                    "affinity_labels": 2 * n_train, "mcof_seeds": n_train, "train_regionnet": 1,
                    "mcof_regionnet": n_train, "mcof_saliency": n_train, "train_affinity": 2,  # and EPS's own
                    "random_walk": 3 * n_val + 3 * n_train,
                    "evaluate_masks_on_train": 3, "crf_masks": 2 * n_val,
                    "train_segmenter": 2, "segment": 2 * n_val + n_train, "evaluate_masks": 13, "summary": 1,
                    "report_figures": 1, "all": 1}


def test_classifier_change_reruns_training_not_the_data(tiny_run):
    work, _, _ = tiny_run
    changed = write_config(work / "epochs.yaml", {"classifier": {"epochs": 2}})
    jobs = planned_jobs(snakemake(work, changed, "--dry-run").stdout)
    assert jobs.get("train_classifier") == 1 and "make_cams" in jobs
    assert "synthetic_data" not in jobs and "manifest_shard" not in jobs and "manifest" not in jobs


def test_same_values_in_another_order_or_spelled_out_rerun_nothing(tiny_run):
    work, _, _ = tiny_run
    text = (work / "tiny.yaml").read_text()
    spelled = work / "spelled.yaml"
    # the schema default of momentum written out, keys reordered, and how-to-run settings changed
    spelled.write_text("compute: {num_workers: 1, checkpoint_minutes: 3, device: cpu}\n"
                       + text.replace("classifier:\n", "classifier:\n  momentum: 0.9\n"))
    out = snakemake(work, spelled, "--dry-run").stdout
    assert planned_jobs(out) == {}, out[-3000:]


def test_more_shards_do_not_retrain_the_classifier(tiny_run):
    work, _, _ = tiny_run
    changed = write_config(work / "shards.yaml", {"dataset": {"n_shards": 3}})
    jobs = planned_jobs(snakemake(work, changed, "--dry-run").stdout)
    assert "train_classifier" not in jobs and "synthetic_data" not in jobs and "manifest" not in jobs
    # the shards, redone under new names: 3 train + 3 val, CAMs of both splits, of the two SC-CAM
    # rounds and of EPS on both splits too (whose trainings see new lists of shards, as AffinityNet
    # its labels)
    assert jobs["manifest_shard"] == 6 and jobs["make_cams"] == 6 + 3 * 6


def test_more_validation_images_do_not_retrain(tiny_run):
    work, _, _ = tiny_run
    changed = write_config(work / "val.yaml", {"dataset": {"synthetic": {"n_images": {"val": 17}}}})
    jobs = planned_jobs(snakemake(work, changed, "--dry-run").stdout)
    assert jobs["synthetic_data"] == 1 and "train_classifier" not in jobs and "make_cams" in jobs


def test_missing_or_bad_weight_files_stop_before_any_job(tiny_run, tmp_path):
    changed = write_config(tmp_path / "p.yaml",
                           {"classifier": {"backbone": {"weights": str(tmp_path / "resnet18.pth")}}})
    proc = snakemake(tmp_path, changed, check=False)
    assert proc.returncode != 0 and "resnet18.pth: backbone weights of resnet18 not found" in proc.stdout
    (tmp_path / "notes.txt").write_text("not weights")
    changed = write_config(tmp_path / "p.yaml", {"affinity": {"init_from_classifier": False,
                                                              "backbone": {"weights": str(tmp_path / "notes.txt")}}})
    proc = snakemake(tmp_path, changed, check=False)
    assert proc.returncode != 0 and "notes.txt: not a file torch.save wrote" in proc.stdout
    assert not (tmp_path / "results").exists()


def test_evaluation_change_reruns_evaluation_only(tiny_run):
    work, _, _ = tiny_run
    changed = write_config(work / "eval.yaml", {"evaluation": {"bg_threshold": {"step": 0.05}}})
    jobs = planned_jobs(snakemake(work, changed, "--dry-run").stdout)
    # the CAM rows (cam, sccam_r1, sccam_r2, eps) and the walks' sweeps (rw, sccam_rw, eps_rw), on
    # the training split where their thresholds are chosen and on the evaluation split
    assert jobs == {"evaluate_cams_on_train": 4, "evaluate_cams": 4, "evaluate_masks_on_train": 3,
                    "evaluate_masks": 3, "summary": 1, "report_figures": 1, "all": 1}


def test_invalid_config_stops_before_any_job(tmp_path):
    bad = write_config(tmp_path / "bad.yaml", {"classifier": {"epoch": 3}})
    proc = snakemake(tmp_path, bad, check=False)
    assert proc.returncode != 0
    assert "classifier: unknown key(s) 'epoch'" in proc.stdout and "bad.yaml" in proc.stdout
    assert not (tmp_path / "results").exists()


def test_interrupted_training_resumes_under_snakemake(tmp_path):
    config = write_config(tmp_path / "c.yaml", {"classifier": {"epochs": 4}, "compute": {"checkpoint_minutes": 0.0001}})
    cmd = [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "--configfile", str(config),
           "--cores", "2", "results/classifier/model.pt"]
    # a suite started in the background of a shell without job control inherits SIGINT ignored,
    # and Ctrl-C would then never reach Snakemake or its job: give them the terminal's default
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    ckpt = tmp_path / "results/checkpoints/classifier.pt"
    deadline = time.time() + 300
    while not ckpt.exists():
        assert proc.poll() is None and time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal reaches the whole process group
    proc.wait(timeout=120)
    assert not (tmp_path / "results/classifier/model.pt").exists()
    assert ckpt.exists()  # outside the declared outputs, so Snakemake did not delete it
    snakemake(tmp_path, config, "results/classifier/model.pt")
    assert ("resumed from results/checkpoints/classifier.pt"
            in (tmp_path / "results/logs/train_classifier.log").read_text())


# ---------------------------------------------------------------- bad inputs in a folder dataset

def make_folder_dataset(root, n_train=16, n_val=8):
    """A folder dataset from synthetic renders; returns (config dict, rows by image id)."""
    cfg = {"seed": 1, "n_images": {"train": n_train, "val": n_val}, "min_size": 56, "max_size": 64, "context_prob": 0.9}
    (root / "imgs").mkdir()
    (root / "masks").mkdir()
    rows = {}
    for split in ("train", "val"):
        for r in synthetic.manifest(cfg, split, root):
            out = synthetic.render(cfg, split, int(r.image_id.split("_")[1]))
            Image.fromarray(out["image"]).save(root / "imgs" / f"{r.image_id}.png")
            write_label_png(root / "masks" / f"{r.image_id}.png", out["mask"])
            rows[r.image_id] = {"image_id": r.image_id, "class_names": " ".join(r.label_names), "split": split}
    return rows


def write_labels(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, ["image_id", "class_names", "split"])
        w.writeheader()
        w.writerows(rows.values())


def test_own_photos_without_masks_end_with_pseudo_masks_and_predictions(tmp_path):
    """A folder dataset without masks: nothing is evaluated; the run's targets are the training
    images' pseudo masks and the segmenter's CRF-refined predictions (README, Your own data)."""
    rows = make_folder_dataset(tmp_path, n_train=6, n_val=3)
    write_labels(tmp_path / "labels.csv", rows)
    cfg = folder_config(tmp_path, {"dataset": {"folder": {"masks": None}}})
    proc = snakemake(tmp_path, cfg, "--dry-run")
    final = next(j for j in planned_job_details(proc.stdout) if j["rule"] == "all")["input"]
    assert [f for f in final if f.startswith("results/manifest/")] == ["results/manifest/train.tsv",
                                                                      "results/manifest/val.tsv"]
    pseudo = [f for f in final if f.startswith("results/rw/train/")]
    predicted = [f for f in final if f.startswith("results/deeplab_aspp_crf/val/")]
    assert pseudo and predicted and len(final) == 2 + len(pseudo) + len(predicted)
    assert not {"evaluate_cams", "evaluate_masks", "summary", "report_figures"} & set(planned_jobs(proc.stdout))
    # the shipped example says the same
    shipped = (REPO / "config/folder.yaml").read_text()
    assert "results/rw/<train split>/" in shipped and "results/deeplab_aspp_crf/<eval split>/" in shipped


@pytest.mark.slow
def test_the_readme_your_own_data_section_runs_as_written(tmp_path):
    """README "Your own data": its config (with this test's tiny sizes on top) and its commands,
    in order, on tiny photos as JPEGs with a labels CSV and no masks."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Your own data"):]
    section = section[:section.index("\n## ", 1)]
    config = yaml.safe_load(re.search(r"```yaml\n(.*?)```", section, re.S).group(1))
    commands = [c for c in re.search(r"```sh\n(.*?)```", section, re.S).group(1).splitlines() if c.strip()]
    rows = make_folder_dataset(tmp_path, n_train=6, n_val=3)
    photos = tmp_path / config["dataset"]["folder"]["images"]
    photos.mkdir()
    for png in sorted((tmp_path / "imgs").glob("*.png")):
        Image.open(png).convert("RGB").save(photos / f"{png.stem}.jpg", quality=95)
    write_labels(tmp_path / config["dataset"]["folder"]["labels_csv"], rows)
    (tmp_path / "new_photos").mkdir()
    shutil.copy(next(photos.glob("*.jpg")), tmp_path / "new_photos" / "holiday.jpg")
    config["dataset"]["folder"]["classes"] = list(synthetic.CLASSES)
    tiny = {k: v for k, v in TINY.items() if k != "dataset"}
    write_config(tmp_path / "my.yaml", {**tiny, "dataset": {**config["dataset"], "n_shards": 2}}, base={})
    for command in commands:
        argv = shlex.split(command)
        if argv[0] == "snakemake":
            argv = [str(SNAKEMAKE), "--snakefile", str(REPO / "Snakefile"),
                    *["2" if a == "all" else a for a in argv[1:]]]
        else:
            assert argv[:3] == ["python", "-m", "pipeline"], command
            argv = [sys.executable, *argv[1:]]
        proc = subprocess.run(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=1500)
        assert proc.returncode == 0, f"{command}:\n{proc.stdout[-4000:]}"
        if "status" in argv:
            assert re.search(r"Files of the workflow: [1-9]\d* complete, 0 stale, 0 missing", proc.stdout), proc.stdout
    train_ids = sorted(i for i, r in rows.items() if r["split"] == "train")
    assert sorted(p.stem for p in (tmp_path / "exported").glob("*.png")) == train_ids
    assert (tmp_path / "exported/train.txt").read_text().split() == train_ids
    assert len(list((tmp_path / "results/deeplab_aspp_crf/val/png").glob("*/*.png"))) == 3
    assert [p.name for p in (tmp_path / "results/deeplab_aspp_crf/predict/png").glob("*/*.png")] == ["holiday.png"]


def folder_config(root, extra=None):
    # two shards: new images must rerun only the shard they fall in
    base = deep_update(TINY, {"dataset": {"name": "folder", "n_shards": 2, "folder": {
        "images": str(root / "imgs"), "labels_csv": str(root / "labels.csv"), "masks": str(root / "masks"),
        "classes": list(synthetic.CLASSES)}}})
    return write_config(root / "folder.yaml", extra, base=base)


@pytest.fixture(scope="module")
def bad_input_run(tmp_path_factory):
    """A folder dataset with every kind of bad input, run through the whole workflow."""
    tmp_path = tmp_path_factory.mktemp("bad")
    rows = make_folder_dataset(tmp_path)
    imgs = tmp_path / "imgs"

    def convert(iid, mode, name=None, **save):
        src = imgs / f"{iid}.png"
        img = Image.open(src).convert("RGB")
        if mode == "I;16":
            img = Image.fromarray((np.asarray(img.convert("L")).astype(np.uint16) * 257))
        else:
            img = img.convert(mode)
        src.unlink()
        img.save(imgs / (name or f"{iid}.png"), **save)

    convert("train_00001", "L")                       # grayscale
    convert("train_00002", "CMYK", "train_00002.jpg")  # CMYK JPEG
    convert("train_00003", "RGBA")                    # with alpha
    convert("val_00001", "I;16")                      # 16-bit
    (imgs / "val_00002.png").write_bytes(b"corrupt, not a PNG")
    data = (imgs / "train_00004.png").read_bytes()
    (imgs / "train_00004.png").write_bytes(data[: len(data) // 3])  # truncated
    (tmp_path / "masks" / "val_00003.png").unlink()   # a missing mask
    rows["train_00005"]["class_names"] = ""           # an image with no labels
    write_labels(tmp_path / "labels.csv", rows)

    # one SC-CAM round shows the skipping; the limit (113 jobs) only guards against hangs
    snakemake(tmp_path, folder_config(tmp_path, {"sccam": {"rounds": 1}}), timeout=1500)
    return tmp_path, rows


def test_bad_images_are_recorded_and_skipped_the_rest_is_processed(bad_input_run):
    tmp_path, _ = bad_input_run
    res = tmp_path / "results"
    assert [r[0] for r in read_report(res / "manifest/train.problems.tsv")] == ["train_00005"]
    assert [r[0] for r in read_report(res / "classifier/problems.tsv")] == ["train_00004"]
    cam_problems = {r[0]: r[2] for p in (res / "cam/val").glob("*.problems.tsv") for r in read_report(p)}
    assert set(cam_problems) == {"val_00002"} and "cannot decode" in cam_problems["val_00002"]
    eval_problems = {r[0]: r[2] for r in read_report(res / "metrics/cam.problems.tsv")}
    assert set(eval_problems) == {"val_00002", "val_00003"}
    assert "no ground-truth mask" in eval_problems["val_00003"]
    metrics = json.loads((res / "metrics/cam.json").read_text())
    assert metrics["n_images"] == 6 and metrics["n_skipped"] == 2  # 8 val images, 2 skipped
    with ArtifactReader(next((res / "cam/val").glob("*.h5"))) as r:
        assert r.attrs["stage"] == "cam"
    ids = {i for p in (res / "cam/val").glob("*.h5") for i in ArtifactReader(p).image_ids()}
    assert "val_00001" in ids  # the 16-bit image was processed
    # later stages skip what an earlier one skipped, and say why
    rw_problems = {r[0]: r[2] for p in (res / "rw/val").glob("*.problems.tsv") for r in read_report(p)}
    assert set(rw_problems) == {"val_00002"} and "skipped upstream" in rw_problems["val_00002"]
    label_problems = {r[0] for p in (res / "affinity_labels/train").glob("*.problems.tsv") for r in read_report(p)}
    assert label_problems == {"train_00004"}
    assert json.loads((res / "metrics/rw_crf.json").read_text())["n_images"] == 6
    # segmenters: the unreadable training image is skipped (as pseudo masks lack it, or unreadable)
    seg_problems = {r[0]: r[2] for r in read_report(res / "segmenter/deeplab_aspp/problems.tsv")}
    assert set(seg_problems) == {"train_00004"} and "no rw mask" in seg_problems["train_00004"]
    assert [r[0] for r in read_report(res / "segmenter/fully_supervised/problems.tsv")] == ["train_00004"]
    segment_problems = {r[0]: r[2] for p in (res / "deeplab_aspp/val").glob("*.problems.tsv") for r in read_report(p)}
    assert set(segment_problems) == {"val_00002"} and "cannot decode" in segment_problems["val_00002"]
    for stage in ("deeplab_aspp", "deeplab_aspp_crf", "fully_supervised"):
        assert json.loads((res / f"metrics/{stage}.json").read_text())["n_images"] == 6
    # SC-CAM: the unreadable training image has no feature, hence no sub-category label
    feature_problems = {r[0] for p in (res / "sccam/k2/r1/features").glob("*.problems.tsv") for r in read_report(p)}
    assert feature_problems == {"train_00004"}
    sccam_problems = {r[0]: r[2] for r in read_report(res / "sccam/k2/r1/problems.tsv")}
    assert set(sccam_problems) == {"train_00004"} and "no sub-category label" in sccam_problems["train_00004"]
    assert json.loads((res / "metrics/sccam_r1.json").read_text())["clusters"]["images"] == 14  # 16 - 2
    # EPS: the unreadable images have no saliency map; EPS trains and evaluates without them
    # (a folder of photos: the trained detector u2netp is the default saliency source)
    saliency_problems = {r[0]: r[2] for split in ("train", "val")
                         for p in (res / f"saliency/u2netp/{split}").glob("*.problems.tsv") for r in read_report(p)}
    assert set(saliency_problems) == {"train_00004", "val_00002"}
    eps_problems = {r[0]: r[2] for r in read_report(res / "eps/u2netp/tau0.4/problems.tsv")}
    assert set(eps_problems) == {"train_00004"} and "no saliency map" in eps_problems["train_00004"]
    assert json.loads((res / "metrics/eps.json").read_text())["n_images"] == 6
    assert json.loads((res / "metrics/saliency.json").read_text())["n_skipped"] == 2
    # MCOF's seeds: the unreadable training image has no superpixels and no CAM
    seed_problems = {r[0]: r[2] for p in (res / "mcof_seeds/train").glob("*.problems.tsv") for r in read_report(p)}
    assert set(seed_problems) == {"train_00004"} and "skipped upstream" in seed_problems["train_00004"]
    feature_problems = {r[0] for p in (res / "mcof/features/train").glob("*.problems.tsv") for r in read_report(p)}
    assert feature_problems == {"train_00004"}
    pixelnet_problems = {r[0]: r[2] for r in read_report(res / "segmenter/mcof_pixelnet_r1/problems.tsv")}
    assert set(pixelnet_problems) == {"train_00004"} and "no mcof_saliency mask" in pixelnet_problems["train_00004"]
    # RegionNet and the saliency step hold every training image but the unreadable one (and the
    # label-free one the manifest left out): 16 - 2
    for stage, pattern in (("mcof_regionnet_r1", "mcof/r1/regionnet/train"),
                           ("mcof_saliency", "mcof/r1/saliency/train")):
        ids = {i for p in (res / pattern).glob("*.h5") for i in ArtifactReader(p, stage=stage).image_ids()}
        assert len(ids) == 14 and "train_00004" not in ids
    assert json.loads((res / "metrics/mcof.json").read_text())["n_images"] == 6


def test_new_images_rerun_only_the_shards_they_fall_in(bad_input_run):
    tmp_path, rows = bad_input_run
    shutil.copy(tmp_path / "imgs" / "val_00004.png", tmp_path / "imgs" / "val_new.png")
    shutil.copy(tmp_path / "masks" / "val_00004.png", tmp_path / "masks" / "val_new.png")
    more = dict(rows, val_new={**rows["val_00004"], "image_id": "val_new"})
    write_labels(tmp_path / "more.csv", more)
    cfg = folder_config(tmp_path, {"sccam": {"rounds": 1},
                                   "dataset": {"folder": {"labels_csv": str(tmp_path / "more.csv")}}})
    jobs = planned_jobs(snakemake(tmp_path, cfg, "--dry-run").stdout)
    # one val shard gets the new image: its manifest, saliency and CAMs are redone, the other
    # shard's are not (CAMs of the plain classifier, the SC-CAM round and EPS; their walks; the
    # maps of the report's other saliency sources)
    assert jobs == {"manifest_shard": 1, "manifest": 1, "saliency_detector": 1, "saliency": 2, "evaluate_saliency": 3,
                    "make_cams": 3,
                    "evaluate_cams": 3, "random_walk": 3, "segment": 3, "crf_masks": 2, "superpixels": 1,
                    "prm_peaks": 1, "prm_instances": 1, "evaluate_masks": 9, "summary": 1, "report_figures": 1,
                    "all": 1}


@pytest.mark.parametrize("problem, message", [
    ("unknown_class", r"labels.csv, line \d+: unknown class name 'unicorn'"),
    ("empty_split", r"split 'val' has no images"),
    ("missing_image", r"1 image\(s\) not found in"),
])
def test_listing_errors_stop_the_run_before_work_starts(tmp_path, problem, message):
    rows = make_folder_dataset(tmp_path, n_train=4, n_val=2)
    if problem == "unknown_class":
        rows["train_00000"]["class_names"] = "unicorn"
    elif problem == "empty_split":
        rows = {k: v for k, v in rows.items() if v["split"] == "train"}
    else:
        (tmp_path / "imgs" / "train_00001.png").unlink()
    write_labels(tmp_path / "labels.csv", rows)
    proc = snakemake(tmp_path, folder_config(tmp_path), check=False)
    assert proc.returncode != 0
    assert re.search(message, proc.stdout), proc.stdout[-2000:]
    assert not (tmp_path / "results").exists()


def test_folder_without_masks_makes_pseudo_masks_of_the_training_images(tmp_path):
    rows = make_folder_dataset(tmp_path, n_train=8, n_val=2)
    shutil.rmtree(tmp_path / "masks")
    write_labels(tmp_path / "labels.csv", rows)
    cfg = folder_config(tmp_path)
    text = cfg.read_text().replace(f"masks: {tmp_path / 'masks'}", "masks: null")
    cfg.write_text(text)
    jobs = planned_jobs(snakemake(tmp_path, cfg, "--dry-run").stdout)
    assert "evaluate_cams" not in jobs and "evaluate_masks" not in jobs and "summary" not in jobs
    assert jobs["random_walk"] == jobs["affinity_labels"] >= 1 and jobs["train_segmenter"] == 1  # no ground truth
    assert jobs["segment"] == jobs["crf_masks"] >= 1  # to segment the other split with


def test_voc_sample_config_end_to_end(tmp_path, voc_root):
    """config/voc_sample.yaml itself (ImageNet MobileNetV2, fixed under the segmenters,
    EfficientNet-Lite2 for AffinityNet, every network in bfloat16, the real VOCdevkit layout:
    labels from the masks, palette masks with 255 borders) through every stage of the default run,
    on a slice of the sample with shorter schedules to stay quick; the rows, not only that it ends.
    PRM stays out: its training and peaks (~1.4 s per photo on two cores) would add a minute or two
    to the suite; its stages are tested on the synthetic data, on photos in docs/results.md."""
    import torch

    ids = (voc_root / "ImageSets/Segmentation/train.txt").read_text().split()
    (tmp_path / "mini_train.txt").write_text("\n".join(ids[:16]) + "\n")
    config = tmp_path / "voc_sample_slice.yaml"
    config.write_text(yaml.safe_dump({
        "extends": str(REPO / "config/voc_sample.yaml"),
        "dataset": {"train_split": "mini_train", "eval_split": "mini_train", "n_shards": 1,
                    "voc": {"root": str(voc_root), "split_files": {"mini_train": str(tmp_path / "mini_train.txt")}}},
        "classifier": {"epochs": 1, "batch_size": 8, "crop_size": 160},
        "cams": {"scales": [0.5]},
        "affinity": {"epochs": 1, "crop_size": 160},
        "mcof": {"regionnet": {"epochs": 1}},
        "segmenter": {"iterations": 3, "batch_size": 4, "crop_size": 160},
        "prm": {"enabled": False}}))
    proc = snakemake(tmp_path, config, timeout=1800)  # the limit only guards against hangs
    assert "trains from scratch" not in proc.stdout  # ImageNet weights: no warning
    rows = {r["stage"]: r for r in csv.DictReader((tmp_path / "results/metrics/summary.tsv").open(), delimiter="\t")}
    assert list(rows) == ["cam", "eps", "affinity_labels", "mcof_seeds", "mcof_regionnet_r1", "mcof_saliency",
                          "mcof_pixelnet_r1", "rw", "eps_rw", "rw_crf", "segmenter_masks", "deeplab_aspp",
                          "deeplab_aspp_crf", "fully_supervised", "mcof"]
    for row in rows.values():
        assert row["split"] == "mini_train" and row["n_images"] == "16" and row["n_skipped"] == "0", row
        assert 0 < float(row["miou"]) <= 1, row
    # the training split is the one scored: the segmenters' fit to their pseudo masks, without ground truth
    for segmenter, source in (("deeplab_aspp", "rw"), ("mcof_pixelnet_r1", "mcof_saliency")):
        agreement = json.loads((tmp_path / f"results/metrics/agreement/{segmenter}.json").read_text())
        assert agreement["reference"] == source and agreement["n_images"] == 16 and 0 < agreement["miou"] <= 1
    metrics = json.loads((tmp_path / "results/metrics/cam.json").read_text())
    assert len(metrics["per_class_iou"]) == 21 and metrics["per_class_iou"]["background"] > 0
    classifier = torch_load_arch(tmp_path / "results/classifier/model.pt")
    # the config's CAM classifier is the lbfgs fit on the fixed backbone's last block; EPS trains by SGD
    assert classifier["name"] == "mobilenet_v2" and classifier["features"] == "last_block"
    assert "lbfgs_iterations" in json.loads((tmp_path / "results/classifier/history.json").read_text())["epochs"][0]
    assert "features" not in torch_load_arch(next((tmp_path / "results/eps").glob("**/model.pt")))
    with ArtifactReader(next((tmp_path / "results/cam/mini_train").glob("*.h5")), stage="cam") as r:
        iid = r.image_ids()[0]
        cams = r.read(iid, "cams")["cams"]
        assert cams.shape[1:] == (r.image_attrs(iid)["height"], r.image_attrs(iid)["width"])
        assert max(cams.shape[1:]) == 500  # CAMs at the full VOC resolution
    saliency = json.loads((tmp_path / "results/metrics/saliency.json").read_text())  # real photographs
    assert saliency["source"] == "u2netp" and saliency["n_images"] == 16 and 0 < saliency["max_f"] <= 1
    assert (tmp_path / "results/eps_affinity/model.pt").is_file()  # EPS walks over its own AffinityNet
    for affinity in ("affinity", "eps_affinity"):  # both on the config's EfficientNet-Lite2
        assert torch_load_arch(tmp_path / f"results/{affinity}/model.pt")["name"] == "efficientnet_lite2"
    # every network in the config's bfloat16, saved with it (the later stages run it so)
    for model in ("classifier", "affinity", "eps_affinity", "segmenter/deeplab_aspp", "segmenter/fully_supervised"):
        assert torch_load_arch(tmp_path / f"results/{model}/model.pt")["precision"] == "bfloat16", model
    # the config's segmenters learn on its fixed backbone (ImageNet MobileNetV2): they end as it was loaded
    segmenter_cfg = resolve(load_layers(config)[0])["segmenter"]
    assert segmenter_cfg["backbone"]["name"] == "mobilenet_v2" and segmenter_cfg["backbone"]["frozen_stages"] == 4
    imagenet = build_backbone(segmenter_cfg["backbone"], segmenter_cfg["output_stride"]).state_dict()
    for segmenter in ("deeplab_aspp", "fully_supervised", "mcof_pixelnet_r1"):
        state = torch_checkpoint(tmp_path / f"results/segmenter/{segmenter}/model.pt")["state_dict"]
        backbone = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
        assert backbone.keys() == imagenet.keys() and all(torch.equal(backbone[k], imagenet[k]) for k in imagenet)


def torch_checkpoint(path) -> dict:
    """A trained model's saved file: its weights and the description of its network."""
    import torch
    return torch.load(path, map_location="cpu", weights_only=False)


def torch_load_arch(path) -> dict:
    """The backbone description a trained model was saved with."""
    return torch_checkpoint(path)["arch"]["backbone"]


def test_photos_trained_from_scratch_get_a_warning(tmp_path, voc_root):
    ids = (voc_root / "ImageSets/Segmentation/train.txt").read_text().split()
    (tmp_path / "mini.txt").write_text("\n".join(ids[:8]) + "\n")
    config = write_config(tmp_path / "voc.yaml", {
        "dataset": {"name": "voc", "train_split": "mini", "eval_split": "mini",
                    "voc": {"root": str(voc_root), "split_files": {"mini": str(tmp_path / "mini.txt")}}}})
    proc = snakemake(tmp_path, config, "--dry-run")
    assert "classifier.backbone: resnet18 trains from scratch on the voc photos" in proc.stdout


def test_mcof_rounds_are_wired_seed_to_regionnet_to_pixelnet_to_next_round(tmp_path):
    """A dry run of three rounds and the self-training control: which masks each job learns from."""
    config = write_config(tmp_path / "rounds.yaml", {"mcof": {"rounds": 3}})
    jobs = planned_job_details(snakemake(tmp_path, config, "--dry-run", "all", "mcof_ablation").stdout)

    def one(rule, **wildcards):
        found = [j for j in jobs if j["rule"] == rule and all(j["wildcards"].get(k) == v for k, v in wildcards.items())]
        assert len(found) == 1, (rule, wildcards, len(found))
        return found[0]

    def learns_from(job):
        # the training-split mask shards among a job's inputs, by directory
        dirs = {i.rsplit("/", 1)[0] for i in job["input"] if i.endswith(".h5") and "/train" in i
                and not i.startswith(("results/mcof/features", "results/superpixels"))}
        assert len(dirs) == 1, dirs
        return dirs.pop()

    assert learns_from(one("train_regionnet", round="1")) == "results/mcof_seeds/train"
    assert learns_from(one("train_regionnet", round="2")) == "results/mcof_pixelnet_r1/train"
    assert learns_from(one("train_regionnet", round="3")) == "results/mcof_pixelnet_r2/train"
    # saliency refines round 1 only; PixelNet 1 learns from it, later PixelNets from RegionNet
    assert {j["wildcards"]["split"] for j in jobs if j["rule"] == "mcof_saliency"} == {"train"}
    assert all(o.startswith("results/mcof/r1/saliency/") for j in jobs if j["rule"] == "mcof_saliency"
               for o in j["output"])
    assert learns_from(one("train_segmenter", segmenter="mcof_pixelnet_r1")) == "results/mcof/r1/saliency/train"
    assert learns_from(one("train_segmenter", segmenter="mcof_pixelnet_r2")) == "results/mcof/r2/regionnet/train"
    assert learns_from(one("train_segmenter", segmenter="mcof_pixelnet_r3")) == "results/mcof/r3/regionnet/train"
    # the paper's control: from round 1's segmentation result (PixelNet 1), the same segmenter on
    # its own predictions
    assert not [j for j in jobs if j["wildcards"].get("segmenter") == "selftrain_r1"]
    assert learns_from(one("train_segmenter", segmenter="selftrain_r2")) == "results/mcof_pixelnet_r1/train"
    assert learns_from(one("train_segmenter", segmenter="selftrain_r3")) == "results/selftrain_r2/train"
    # every round predicts the training split; only the last PixelNet the evaluation split (row mcof)
    segments = {(j["wildcards"]["segmenter"], j["wildcards"]["split"]) for j in jobs if j["rule"] == "segment"}
    for r in (1, 2, 3):
        assert (f"mcof_pixelnet_r{r}", "train") in segments
    assert ("selftrain_r2", "train") in segments and ("selftrain_r3", "train") in segments
    assert {s for s, split in segments
            if split == "val" and s.startswith(("mcof", "selftrain"))} == {"mcof_pixelnet_r3"}
    rows = {o.split("/")[-1].removesuffix(".json") for j in jobs if j["rule"] == "evaluate_masks" for o in j["output"]
            if o.endswith(".json")}
    assert {"mcof_seeds", "mcof_saliency", "mcof", *(f"mcof_{s}_r{r}" for s in ("regionnet", "pixelnet")
                                                     for r in (1, 2, 3)), "selftrain_r2", "selftrain_r3"} <= rows

    # without the saliency step PixelNet 1 learns RegionNet's regions; MCOF off: none of it
    plain = write_config(tmp_path / "nosal.yaml", {"mcof": {"rounds": 1, "saliency": {"enabled": False}}})
    jobs = planned_job_details(snakemake(tmp_path, plain, "--dry-run").stdout)
    assert not [j for j in jobs if j["rule"] == "mcof_saliency"]
    assert learns_from(one("train_segmenter", segmenter="mcof_pixelnet_r1")) == "results/mcof/r1/regionnet/train"
    off = write_config(tmp_path / "off.yaml", {"mcof": {"enabled": False}})
    rules = {j["rule"] for j in planned_job_details(snakemake(tmp_path, off, "--dry-run").stdout)}
    assert not rules & {"mcof_seeds", "mcof_features", "train_regionnet", "mcof_regionnet", "mcof_saliency"}
