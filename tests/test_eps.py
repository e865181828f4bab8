"""EPS: the overlap rule, the estimated saliency and loss on hand-made maps, the C + 1
classifier and its CAMs, the saliency crops, the ablation table."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.backbones import Backbone
from pipeline.artifacts import ArtifactWriter
from pipeline.data import ArtifactArrays
from pipeline.ablations import eps_table
from pipeline.eps import PAD, SalientImages, estimated_saliency, eps_loss, foreground_classes, to_grid
from pipeline.imageio import write_image
from pipeline.manifest import Record
from pipeline.nets import SaliencyClassifier, load_classifier, save_model


def half_maps():
    """3 classes + background on a 4 x 4 grid. Saliency: the left half. Class 0 sits on the
    left half (a foreground object), class 1 on the right half (context, off the saliency),
    class 2 is absent from the image; the background map is flat."""
    probs = torch.full((1, 4, 4, 4), 0.1)
    probs[0, 0, :, :2] = 0.8
    probs[0, 1, :, 2:] = 0.8
    sal = torch.zeros(1, 1, 4, 4)
    sal[..., :2] = 1.0
    return probs, torch.tensor([[1.0, 1.0, 0.0]]), sal


def test_overlap_rule_assigns_present_maps_on_the_saliency_to_the_foreground():
    probs, target, sal = half_maps()
    assert foreground_classes(probs, target, sal, tau=0.4).tolist() == [[True, False, False]]
    # the absent class stays out even when its map lies on the saliency
    probs[0, 2, :, :2] = 0.9
    assert foreground_classes(probs, target, sal, tau=0.4).tolist() == [[True, False, False]]
    # overlap is a share of the class map: class 1 covering the whole image overlaps by 0.5
    probs[0, 1] = 0.8
    assert (foreground_classes(probs, target, sal, tau=0.4)[0, 1]
            and not foreground_classes(probs, target, sal, 0.6)[0, 1])


def test_overlap_leaves_the_padding_out():
    probs = torch.full((1, 2, 4, 4), 0.1)
    probs[0, 0] = 0.9  # class 0 fires everywhere, the padding (right half) included
    sal = torch.zeros(1, 1, 4, 4)
    sal[..., :2] = 1.0
    inside = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    inside[..., :2] = True
    target = torch.tensor([[1.0]])
    assert not foreground_classes(probs, target, sal, tau=0.6)[0, 0]  # overlap 0.5 with the padding
    assert foreground_classes(probs, target, sal, tau=0.6, inside=inside)[0, 0]  # 1.0 without it


def test_estimated_saliency_mixes_foreground_and_background_maps():
    probs, target, sal = half_maps()
    fg = torch.tensor([[True, False, False]])
    est = estimated_saliency(probs, target, fg, lam=0.5)
    # left: M_fg = 0.8, M_bg = bg 0.1 + class 1's 0.1 -> 0.5 * 0.8 + 0.5 * 0.8 = 0.8
    # right: M_fg = 0.1, M_bg = 0.1 + 0.8 -> 0.5 * 0.1 + 0.5 * 0.1 = 0.1
    np.testing.assert_allclose(est[0, 0, :, :2], 0.8, atol=1e-6)
    np.testing.assert_allclose(est[0, 0, :, 2:], 0.1, atol=1e-6)
    np.testing.assert_allclose(estimated_saliency(probs, target, fg, lam=1.0)[0, 0, 0], [0.8, 0.8, 0.1, 0.1], atol=1e-6)


def test_saliency_is_averaged_to_the_grid_over_valid_pixels_only():
    sal = torch.zeros(1, 1, 4, 4)
    sal[..., :2, :2] = 1.0
    valid = torch.ones(1, 1, 4, 4, dtype=torch.bool)
    valid[..., 0, 0] = False
    sal[..., 0, 0] = 0.0  # padding carries no value
    mean, share = to_grid(sal, valid, (2, 2))
    np.testing.assert_allclose(mean[0, 0], [[1, 0], [0, 0]], atol=1e-6)
    np.testing.assert_allclose(share[0, 0], [[0.75, 1], [1, 1]])


def test_eps_loss_on_hand_made_maps():
    probs, target, sal = half_maps()
    # logits whose softmax reproduces the estimated saliency exactly: perfect maps for lam 0.5
    logits = torch.zeros(1, 4, 4, 4)
    logits[0, 0, :, :2] = 6.0
    logits[0, 3, :, 2:] = 6.0
    logits.requires_grad_(True)
    valid = torch.ones_like(sal, dtype=torch.bool)
    loss, parts = eps_loss(logits, target, sal, valid, tau=0.4, lam=0.5)
    p = logits.softmax(1)
    est = 0.5 * p[:, 0] + 0.5 * (1 - p[:, 3] - p[:, 1])  # class 1 is off the saliency: background
    assert parts["saliency"] == pytest.approx(F.mse_loss(est[:, None], sal).item(), rel=1e-5)
    assert parts["saliency"] < 0.01 and parts["fg_share"] == pytest.approx(0.5)
    cls = F.multilabel_soft_margin_loss(logits[:, :3].mean(dim=(2, 3)), target)
    assert parts["cls"] == pytest.approx(cls.item()) and loss.item() == pytest.approx(cls.item() + parts["saliency"])
    loss.backward()
    assert logits.grad[0, 3].abs().sum() > 0  # the background map learns from the saliency only
    # pixels outside the image do not count, whatever the saliency there says
    inverted = 1 - sal
    half = valid.clone()
    half[..., 2:] = False
    mixed = torch.where(half, sal, inverted)
    got = eps_loss(logits.detach(), target, mixed, half, 0.4, 0.5)[1]["saliency"]
    masked = ((est.detach()[:, None] - sal) ** 2)[half].mean().item()  # over the valid cells only
    assert got == pytest.approx(masked, rel=1e-5)
    assert got != pytest.approx(F.mse_loss(est.detach()[:, None], mixed).item(), rel=0.1)  # not the plain MSE


def test_saliency_classifier_cams_are_the_softmax_class_maps(tmp_path):
    torch.manual_seed(0)
    net = SaliencyClassifier(3, Backbone("resnet18", 16)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        maps = net.maps(x)
        assert maps.shape == (2, 4, 4, 4)
        np.testing.assert_allclose(net(x), maps[:, :3].mean(dim=(2, 3)), rtol=1e-4, atol=1e-6)
        cams = net.cams(x, torch.tensor([2, 0]))
        np.testing.assert_allclose(cams, maps.softmax(1)[:, [2, 0]], rtol=1e-5)
    save_model(net, tmp_path / "eps.pt", {"classes": ["a", "b", "c"]})
    loaded, _ = load_classifier(tmp_path / "eps.pt")
    assert isinstance(loaded, SaliencyClassifier)
    with torch.no_grad():
        np.testing.assert_allclose(loaded.maps(x), maps, rtol=1e-5)


def test_salient_images_crop_the_saliency_with_the_image(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (40, 50, 3)).astype(np.uint8)
    write_image(tmp_path / "a.png", rgb)
    sal = (rgb[..., 0] / 255.0).astype(np.float16)  # the saliency is the image's red channel
    with ArtifactWriter(tmp_path / "s.h5", stage="saliency", split="train", shard="s0", classes=["x", "y"],
                        params={}, code_hash="x") as out:
        out.add("a", saliency=sal)
    cfg = {"rescale": [1.0, 1.0], "flip": True, "color_jitter": {"brightness": 0, "contrast": 0, "saturation": 0,
                                                                  "hue": 0}, "crop_size": 64}
    ds = SalientImages([Record("a", str(tmp_path / "a.png"), (2,))], 2,
                       ArtifactArrays.from_shards([tmp_path / "s.h5"], stage="saliency", name="saliency"), cfg, seed=0,
                       fill=(0.485, 0.456, 0.406))
    for epoch in range(3):
        ds.epoch = epoch
        item = ds[0]
        assert item["target"].tolist() == [0.0, 1.0]
        valid = item["valid"][0]
        assert valid.sum() == 40 * 50  # the 64 x 64 crop pads the 40 x 50 image
        red = item["image"][0]  # RGB in 0..1: the network normalises it
        assert (red[~valid] == 0.485).all()  # the padding is the fill colour
        np.testing.assert_allclose(item["saliency"][0][valid], red[valid], atol=1 / (PAD - 1) + 1e-3)
        assert (item["saliency"][0][~valid] == 0).all()


def test_ablation_table_lists_every_tau_and_source_and_chooses_tau_on_the_training_split(tmp_path):
    def metrics(stage, miou, train, boat, folder=tmp_path):
        path = folder / f"{stage}.json"
        path.write_text(json.dumps({"stage": stage, "miou": miou, "best_threshold": 0.3,
                                    "per_class_iou": {"background": 0.7, "train": train, "boat": boat}}))
        return path

    rows = [metrics("eps_manifold_ranking_tau0.4", 0.5, 0.4, 0.3),
            metrics("eps_manifold_ranking_tau0.2", 0.45, 0.3, 0.3),
            metrics("eps_frequency_tuned_tau0.4", 0.48, 0.35, 0.25)]
    sal = tmp_path / "saliency.json"
    sal.write_text(json.dumps({"stage": "saliency", "source": "manifold_ranking", "max_f": 0.7}))
    runs = {"eps_manifold_ranking_tau0.4": ("manifold_ranking", 0.4),
            "eps_manifold_ranking_tau0.2": ("manifold_ranking", 0.2),
            "eps_frequency_tuned_tau0.4": ("frequency_tuned", 0.4)}
    (tmp_path / "train_split").mkdir()
    # on the training split tau 0.2 wins for manifold ranking, although 0.4 scores higher on the shown split
    train = [metrics("eps_manifold_ranking_tau0.4", 0.52, 0.4, 0.3, tmp_path / "train_split"),
             metrics("eps_manifold_ranking_tau0.2", 0.55, 0.3, 0.3, tmp_path / "train_split")]
    table = eps_table(rows, runs, metrics("cam", 0.42, 0.2, 0.1), [sal], tmp_path / "ablation.tsv", train)
    lines = [line.split("\t") for line in (tmp_path / "ablation.tsv").read_text().splitlines()]
    assert lines[0] == ["row", "source", "tau", "miou", "best_threshold", "iou_train", "iou_boat", "saliency_max_f",
                        "miou_train", "chosen"]
    assert [line[0] for line in lines[1:]] == ["cam", "eps_frequency_tuned_tau0.4", "eps_manifold_ranking_tau0.2",
                                               "eps_manifold_ranking_tau0.4"]
    assert lines[4][-3] == "0.7000" and lines[2][-3] == ""
    assert [line[-2:] for line in lines[1:]] == [["", ""], ["", ""], ["0.5500", "yes"], ["0.5200", ""]]
    assert "50.0" in table and "IoU train" in table and "mIoU train split" in table
