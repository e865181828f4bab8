"""SC-CAM: per-class clustering, purity, the two-head network and loss, the cluster stage."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.backbones import Backbone
from pipeline.artifacts import ArtifactReader, ArtifactWriter
from pipeline.manifest import Record, write_tsv
from pipeline.nets import Classifier, SubCategoryClassifier, load_classifier, save_model
from pipeline.ablations import sccam_table
from pipeline.sccam import (cluster_purity, cluster_subcategories, known_subtypes, read_subcategories, run_clusters,
                            subcategory_target)
from pipeline.train_sccam import sccam_loss


def blobs(centres, n_each, rng, spread=0.05):
    return np.concatenate([c + spread * rng.standard_normal((n_each, len(c))) for c in centres]).astype(np.float32)


def test_kmeans_runs_per_parent_class_on_the_images_that_contain_it():
    rng = np.random.default_rng(0)
    # class 0: 12 images in two far-apart groups; class 1: the last 6 of them, in one group
    features = blobs([np.zeros(4), np.full(4, 5.0)], 6, rng)
    present = np.zeros((12, 3), bool)
    present[:, 0] = True
    present[6:, 1] = True
    subs = cluster_subcategories(features, present, k=2, seed=0, n_init=3, class_names=["a", "b", "c"])
    a = subs.assign[:, 0]
    assert len(set(a[:6])) == 1 and len(set(a[6:])) == 1 and a[0] != a[6]  # the two groups
    assert (subs.assign[:6, 1] == -1).all() and set(subs.assign[6:, 1]) <= {0, 1}  # absent class: -1
    assert (subs.assign[:, 2] == -1).all() and subs.centres[2].shape == (0, 4)
    assert subs.centres[0].shape == (2, 4) and sorted(subs.sizes(0)) == [6, 6] and subs.sizes(1).sum() == 6
    np.testing.assert_allclose(sorted(subs.centres[0][:, 0]), [0, 5], atol=0.1)
    assert subs.warnings == ["class c: no training image, no sub-categories"]


def test_a_class_with_fewer_images_than_k_gets_one_cluster_per_image_and_a_warning(caplog):
    rng = np.random.default_rng(1)
    features = rng.standard_normal((20, 8)).astype(np.float32)
    present = np.zeros((20, 2), bool)
    present[:, 0] = True
    present[[3, 7, 11], 1] = True  # 3 images, k = 10
    with caplog.at_level("WARNING"):
        subs = cluster_subcategories(features, present, k=10, seed=0, n_init=1, class_names=["big", "small"])
    assert sorted(subs.assign[[3, 7, 11], 1]) == [0, 1, 2] and subs.centres[1].shape == (3, 8)
    assert len(set(subs.assign[:, 0])) == 10
    assert "class small: 3 images, fewer than k = 10: 3 sub-categories" in caplog.text


def test_k_one_is_one_sub_category_per_class():
    features = np.random.default_rng(2).standard_normal((5, 3)).astype(np.float32)
    subs = cluster_subcategories(features, np.ones((5, 2), bool), k=1, seed=0, n_init=1)
    assert (subs.assign == 0).all() and not subs.warnings


def test_purity_on_a_case_with_known_answers():
    # class 0: clusters {0,0,1,1} vs sub-types {0,0,1,0}: majorities 2 + 1 of 4 = 0.75
    # class 1: a perfect clustering (labels permuted): purity 1, NMI 1; class 2 absent
    assign = np.array([[0, 1, -1], [0, 1, -1], [1, 0, -1], [1, -1, -1]])
    truth = np.array([[0, 0, -1], [0, 0, -1], [1, 1, -1], [0, -1, -1]])
    got = cluster_purity(assign, truth, ["a", "b", "c"])
    assert got["per_class"]["a"]["purity"] == pytest.approx(0.75)
    assert got["per_class"]["b"] == {"images": 3, "purity": 1.0, "nmi": pytest.approx(1.0), "clusters": 2,
                                     "subtypes": 2}
    assert "c" not in got["per_class"]
    assert got["purity"] == pytest.approx((3 + 3) / 7)  # pooled over the 7 (image, class) pairs
    # one cluster per class: purity is the majority sub-type's share, NMI 0
    one = cluster_purity(np.where(assign >= 0, 0, -1), truth)
    assert one["per_class"]["1"]["purity"] == pytest.approx(0.75) and one["nmi"] == pytest.approx(0.0)
    assert cluster_purity(assign, np.full_like(truth, -1)) is None  # nothing known


def test_known_subtypes_come_from_the_manifest_meta():
    records = [Record("i0", "x.png", (1, 3), meta={"subtypes": {"a": 2, "c": 0}}), Record("i1", "y.png", (2,))]
    truth = known_subtypes(records, ["a", "b", "c"])
    np.testing.assert_array_equal(truth, [[2, -1, 0], [-1, -1, -1]])
    assert known_subtypes(records[1:], ["a", "b", "c"]) is None
    stray = [Record("i2", "z.png", (1,), meta={"subtypes": {"zebra": 1}})]
    with pytest.raises(ValueError, match="image i2: its manifest meta names the sub-type of 'zebra'"):
        known_subtypes(stray, ["a", "b", "c"])


def test_subcategory_target_indexes_class_times_k_plus_cluster():
    t = subcategory_target(np.array([0, 2]), np.array([3, 1]), n_classes=3, k=4)
    assert t.shape == (12,) and np.flatnonzero(t).tolist() == [3, 9]


def test_two_head_loss_is_parent_plus_weighted_sub_category_loss():
    torch.manual_seed(0)
    parent, sub = torch.randn(2, 3, requires_grad=True), torch.randn(2, 6, requires_grad=True)
    target = torch.tensor([[1.0, 0, 1], [0, 1, 0]])
    sub_target = torch.zeros(2, 6)
    sub_target[0, [1, 4]] = 1
    sub_target[1, 2] = 1
    loss, parts = sccam_loss(parent, sub, target, sub_target, sub_weight=5.0)
    expected = F.multilabel_soft_margin_loss(parent, target) + 5 * F.multilabel_soft_margin_loss(sub, sub_target)
    assert loss.item() == pytest.approx(expected.item())
    assert parts["parent"] == pytest.approx(F.multilabel_soft_margin_loss(parent, target).item())
    loss.backward()
    assert parent.grad.abs().sum() > 0 and sub.grad.abs().sum() > 0
    zero, _ = sccam_loss(parent, sub, target, sub_target, sub_weight=0.0)
    assert zero.item() == pytest.approx(parts["parent"])


def test_two_head_classifier_cams_come_from_the_parent_head(tmp_path):
    torch.manual_seed(0)
    net = SubCategoryClassifier(3, 4, Backbone("resnet18", 16), dropout=0.5).eval()
    x = torch.randn(2, 3, 64, 64)
    parent, sub = net.both_heads(x)
    assert parent.shape == (2, 3) and sub.shape == (2, 12)
    plain = Classifier(3, Backbone("resnet18", 16)).eval()
    plain.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith("sub_head")})
    with torch.no_grad():
        np.testing.assert_allclose(net.cams(x, torch.tensor([0, 2])), plain.cams(x, torch.tensor([0, 2])), rtol=1e-5)
        np.testing.assert_allclose(net(x), plain(x), rtol=1e-4, atol=1e-5)  # dropout is off in eval
        assert net.pooled_features(x).shape == (2, 512)
    save_model(net, tmp_path / "m.pt", {"classes": ["a", "b", "c"], "round": 2})
    loaded, saved = load_classifier(tmp_path / "m.pt")
    assert isinstance(loaded, SubCategoryClassifier) and loaded.arch["k"] == 4 and saved["round"] == 2
    with torch.no_grad():
        np.testing.assert_allclose(loaded.both_heads(x)[1], sub.detach(), rtol=1e-5)


def test_cluster_stage_writes_sub_categories_report_and_picture(tmp_path):
    rng = np.random.default_rng(3)
    classes = ["a", "b"]
    # 10 images of class a in two groups that are their true sub-types; 2 images also of class b
    records = [Record(f"i{i}", f"i{i}.png", (1, 2) if i < 2 else (1,),
                      meta={"subtypes": {"a": int(i >= 5), **({"b": 0} if i < 2 else {})}}) for i in range(10)]
    write_tsv(records, tmp_path / "train.tsv")
    features = blobs([np.zeros(6), np.full(6, 3.0)], 5, rng)
    with ArtifactWriter(tmp_path / "f.h5", stage="sccam_features", split="train", shard="s0", classes=classes,
                        params={}, code_hash="x") as out:
        for r, f in zip(records, features):
            if r.image_id != "i9":  # one image skipped upstream
                out.add(r.image_id, feature=f, keys=np.asarray(r.labels, np.uint8))
    cfg = {"k": 3, "max_iter": 50, "n_init": 2, "embedding": "pca"}
    report = run_clusters(manifest_path=tmp_path / "train.tsv", feature_paths=[tmp_path / "f.h5"], classes=classes,
                          cfg=cfg, seed=0, round_=1, split="train", code_hash="x", out_path=tmp_path / "c.h5",
                          report_path=tmp_path / "c.json", picture_path=tmp_path / "e.png")
    assert report == json.loads((tmp_path / "c.json").read_text())
    assert report["images"] == 9 and sum(report["sizes"]["a"]) == 9 and sum(report["sizes"]["b"]) == 2
    assert report["warnings"] == ["class b: 2 images, fewer than k = 3: 2 sub-categories"]
    assert report["purity"]["per_class"]["a"]["purity"] == 1.0  # 3 clusters of two clean groups
    assert (tmp_path / "e.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    k, targets = read_subcategories(tmp_path / "c.h5", classes)
    assert k == 3 and sorted(targets) == [f"i{i}" for i in range(9)]
    assert targets["i0"].shape == (6,) and targets["i0"][:3].sum() == 1 and targets["i0"][3:].sum() == 1
    assert targets["i4"][3:].sum() == 0
    with ArtifactReader(tmp_path / "c.h5", stage="sccam_clusters") as rd:
        arrays, attrs = rd.read_table("b")
        assert arrays["centres"].shape == (2, 6) and arrays["sizes"].tolist() == [1, 1] and attrs["k"] == 2
        assert rd.params()["k"] == 3 and rd.params()["round"] == 1


def test_ablation_table(tmp_path):
    paths = []
    for k, r, miou in ((5, 2, 0.31), (1, 1, 0.25), (5, 1, 0.3), (0, 1, 0.28)):
        m = {"stage": f"sccam_k{k}_r{r}", "miou": miou, "best_threshold": 0.2,
             "clusters": {"purity": {"purity": 0.5 + k / 100, "nmi": 0.1}}}
        paths.append(tmp_path / f"{k}{r}.json")
        paths[-1].write_text(json.dumps(m))
    runs = {f"sccam_k{k}_r{r}": (k, r) for k in (0, 1, 5) for r in (1, 2)}
    shown = sccam_table(paths, runs, tmp_path / "a.tsv")
    lines = (tmp_path / "a.tsv").read_text().splitlines()
    assert lines[0].split("\t") == ["k", "round", "miou", "best_threshold", "purity", "nmi"]
    assert [ln.split("\t")[:3] for ln in lines[1:]] == [["0", "1", "0.2800"], ["1", "1", "0.2500"],
                                                        ["5", "1", "0.3000"], ["5", "2", "0.3100"]]
    assert "CAM mIoU" in shown and "31.0" in shown
    assert [ln.split()[:2] for ln in shown.splitlines()[1:3]] == [["0", "(control)"], ["1", "1"]]


def test_features_of_a_collapsed_classifier_give_a_warning_not_a_crash(tmp_path):
    # a diverged round's classifier maps every image to one saturated feature; t-SNE divided by
    # their zero spread and crashed the job (SIGSEGV) instead of saying what happened
    classes = ["a"]
    records = [Record(f"i{i}", f"i{i}.png", (1,)) for i in range(40)]
    write_tsv(records, tmp_path / "train.tsv")
    with ArtifactWriter(tmp_path / "f.h5", stage="sccam_features", split="train", shard="s0", classes=classes,
                        params={}, code_hash="x") as out:
        for r in records:
            out.add(r.image_id, feature=np.full(16, 6.0, np.float32), keys=np.asarray(r.labels, np.uint8))
    report = run_clusters(manifest_path=tmp_path / "train.tsv", feature_paths=[tmp_path / "f.h5"], classes=classes,
                          cfg={"k": 2, "max_iter": 50, "n_init": 2, "embedding": "tsne"}, seed=0, round_=2,
                          split="train", code_hash="x", out_path=tmp_path / "c.h5", report_path=tmp_path / "c.json",
                          picture_path=tmp_path / "e.png")
    assert any("round 2: the features of all 40 images are identical" in w for w in report["warnings"])
    assert (tmp_path / "e.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
