"""AffinityNet: pair offsets, pair labels, the loss on hand-made cases, the network, training."""
import json

import numpy as np
import pytest
import torch

from pipeline.backbones import Backbone
from pipeline.artifacts import ArtifactWriter
from pipeline.config import resolve
from pipeline.manifest import read_tsv
from pipeline.nets import AffinityNet, load_affinity_net
from pipeline.grid_pairs import pair_offsets
from pipeline.manifest import Record
from pipeline.train_affinity import (EPS, CachedFeatureCrops, affinity_loss, cache_bytes, cell_labels,
                                     check_cache_fits, pair_affinities, pair_labels, pairs)


def test_pair_offsets_are_half_of_the_disk():
    offsets = pair_offsets(5)
    assert len(offsets) == 34 and len(set(offsets)) == 34  # PSA's count for radius 5
    assert all(dy * dy + dx * dx < 25 for dy, dx in offsets)
    assert not any((-dy, -dx) in offsets for dy, dx in offsets)  # each unordered pair once
    assert (0, 0) not in offsets
    assert pair_offsets(2) == [(0, 1), (1, -1), (1, 0), (1, 1)]


def test_pairs_by_hand():
    t = torch.arange(6).view(2, 3)  # [[0 1 2] [3 4 5]]
    a, b = pairs(t, [(0, 1), (1, -1)])
    # (0,1): 0-1 1-2 3-4 4-5 ; (1,-1): 1-3 2-4
    assert a.tolist() == [0, 1, 3, 4, 1, 2] and b.tolist() == [1, 2, 4, 5, 3, 4]


def test_pair_labels_same_different_and_ignored():
    labels = torch.tensor([[[0, 0, 3], [255, 3, 5]]], dtype=torch.uint8)
    kinds = pair_labels(labels, [(0, 1)])  # pairs: (0,0) (0,3) (255,3) (3,5)
    assert kinds["bg"].tolist() == [[True, False, False, False]]
    assert kinds["fg"].tolist() == [[False, False, False, False]]
    assert kinds["neg"].tolist() == [[False, True, False, True]]
    kinds = pair_labels(labels, [(1, 1)])  # pairs: (0,3) (0,5)
    assert kinds["neg"].tolist() == [[True, True]]
    same = pair_labels(torch.tensor([[[4, 4]]], dtype=torch.uint8), [(0, 1)])
    assert same["fg"].tolist() == [[True]] and not same["bg"].any()


def test_loss_on_a_hand_made_example():
    aff = torch.tensor([[0.9, 0.5, 0.2, 0.6, 0.1]])
    labels = {"bg": torch.tensor([[True, True, False, False, False]]),
              "fg": torch.tensor([[False, False, False, True, False]]),
              "neg": torch.tensor([[False, False, True, False, True]])}
    bg = -(np.log(0.9 + EPS) + np.log(0.5 + EPS)) / 2
    fg = -np.log(0.6 + EPS)
    neg = -(np.log(1 + EPS - 0.2) + np.log(1 + EPS - 0.1)) / 2
    loss, parts = affinity_loss(aff, labels, neg_weight=0.5)  # PSA's
    assert loss.item() == pytest.approx(bg / 4 + fg / 4 + neg / 2, rel=1e-4)
    assert parts == pytest.approx({"bg": bg, "fg": fg, "neg": neg}, rel=1e-4)
    heavier, _ = affinity_loss(aff, labels, neg_weight=0.8)  # the positives split the other 0.2
    assert heavier.item() == pytest.approx(bg / 10 + fg / 10 + 0.8 * neg, rel=1e-4)
    # no pairs of a kind: that term is 0, not NaN
    empty = {k: torch.zeros_like(v) for k, v in labels.items()}
    assert affinity_loss(aff, empty, 0.5)[0].item() == 0


def test_affinity_is_exp_of_minus_mean_l1_distance():
    f = torch.zeros(1, 2, 1, 2)
    f[0, :, 0, 1] = torch.tensor([1.0, 3.0])
    assert pair_affinities(f, [(0, 1)]).item() == pytest.approx(np.exp(-2.0))


def test_pair_affinities_match_autograd_through_the_pairs_and_pass_gradcheck():
    """The offset-by-offset function gives the values and gradients of the plain formula
    exp(-mean_c |a - b|) over `pairs` (which autograd differentiates directly)."""
    torch.manual_seed(0)
    offsets = pair_offsets(4)
    f = torch.randn(2, 5, 7, 6, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(2, pairs(f, offsets)[0].shape[-1], dtype=torch.float64)
    ours = pair_affinities(f, offsets)
    (grad_ours,) = torch.autograd.grad((ours * weights).sum(), f)
    a, b = pairs(f, offsets)
    plain = torch.exp(-(a - b).abs().mean(1))
    (grad_plain,) = torch.autograd.grad((plain * weights).sum(), f)
    assert torch.allclose(ours, plain) and torch.allclose(grad_ours, grad_plain)
    assert torch.autograd.gradcheck(lambda t: pair_affinities(t, offsets), (f,))


def test_cell_labels_sample_each_stride_8_cell_centre():
    label = torch.arange(16 * 24).view(16, 24)
    assert cell_labels(label).tolist() == [[4 * 24 + 4, 4 * 24 + 12, 4 * 24 + 20],
                                           [12 * 24 + 4, 12 * 24 + 12, 12 * 24 + 20]]


def test_affinity_net_features_at_stride_8_and_a_frozen_backbone_gets_no_gradient():
    torch.manual_seed(0)
    net = AffinityNet(Backbone("resnet18", 8))
    f = net(torch.randn(2, 3, 64, 48))
    assert f.shape == (2, 448, 8, 6)
    net.freeze_backbone()
    net.train()
    assert not any(m.training for m in net.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))
    pair_affinities(net(torch.randn(1, 3, 32, 32)), pair_offsets(3)).sum().backward()
    assert all(p.grad is None for p in net.backbone.parameters())
    assert net.mix.weight.grad is not None and net.reduce[0].weight.grad.abs().sum() > 0
    assert sum(len(v) for v in net.param_groups().values()) == 4


class _Images:
    """MaskedCrops' loading interface over images in memory."""
    fill = (0.5, 0.5, 0.5)

    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def load(self, index):
        return self.images[index]


def _frozen_affinity_net():
    torch.manual_seed(0)
    net = AffinityNet(Backbone("resnet18", 8))
    net.freeze_backbone()
    return net.eval()


def test_cached_feature_crops_are_windows_of_the_backbones_features_and_cell_labels():
    """Every item is a window of the image's stage features (float16) and cell labels, flipped or
    not; windows wider than the image are padded with zeros and ignored cells."""
    net = _frozen_affinity_net()
    rng = np.random.default_rng(0)
    # 37 x 60 pixels: padded to 40 x 64 with the fill colour, the padded pixels' labels ignored
    rgb = rng.integers(0, 256, (37, 60, 3), dtype=np.uint8)
    label = rng.integers(0, 4, (37, 60), dtype=np.uint8)
    padded = np.full((40, 64, 3), 0.5, np.float32)
    padded[:37, :60] = rgb / 255
    padded_label = np.full((40, 64), 255, np.uint8)
    padded_label[:37, :60] = label
    error = {"error": ("b", "b.jpg", "unreadable")}
    with torch.no_grad():
        full = torch.cat(net.backbone.stages(torch.from_numpy(padded).permute(2, 0, 1)[None])[1:], 1)[0]
    cells = cell_labels(torch.from_numpy(padded_label))
    assert full.shape[-2:] == cells.shape == (5, 8) and (cells[:, -1] == 255).all() and (cells[:, :-1] != 255).all()
    for crop_size, flip in ((24, True), (24, False), (80, True)):
        data = CachedFeatureCrops(net, _Images([(rgb, label), error]), {"crop_size": crop_size, "flip": flip},
                                  seed=0, device="cpu")
        assert data[1] == error and data.channels == full.shape[0]
        flips = set()
        for epoch in range(8):
            data.epoch = epoch
            item = data[0]
            feats, lab = item["features"], item["cell_label"]
            size = crop_size // 8
            assert feats.shape == (full.shape[0], size, size) and lab.shape == (size, size)
            found = False
            for flipped in (False, True):
                f, c = (full.flip(-1), cells.flip(-1)) if flipped else (full, cells)
                if size <= 5:  # a window inside the image
                    for y in range(5 - size + 1):
                        for x in range(8 - size + 1):
                            if torch.equal(lab, c[y:y + size, x:x + size]) and torch.allclose(
                                    feats, f[:, y:y + size, x:x + size].half().float()):
                                found = True
                                flips.add(flipped)
                else:  # the whole image somewhere in a padded window (its last cell column ignored)
                    inside = lab != 255
                    ys, xs = torch.nonzero(inside, as_tuple=True)
                    y, x = ys.min().item(), xs.min().item() - (1 if flipped else 0)
                    if (inside.sum() == 35 and torch.equal(lab[y:y + 5, x:x + 8], c)
                            and torch.allclose(feats[:, y:y + 5, x:x + 8], f.half().float())
                            and not torch.cat([feats[:, :y], feats[:, y + 5:]], 1).any()
                            and not torch.cat([feats[:, :, :x], feats[:, :, x + 8:]], 2).any()):
                        found = True
                        flips.add(flipped)
            assert found, (crop_size, flip, epoch)
        assert flips == ({False, True} if flip else {False})


def test_the_cache_is_sized_before_it_is_made_and_refused_when_the_job_would_not_fit(tmp_path):
    """cache_bytes, from the image headers, is what CachedFeatureCrops then holds; a job about
    twice that size stops before any feature is computed, naming the option to turn off."""
    from PIL import Image

    net = _frozen_affinity_net()
    rng = np.random.default_rng(2)
    images, records = [], []
    for i, (h, w) in enumerate(((37, 60), (48, 41))):
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(tmp_path / f"{i}.png")
        images.append((rgb, np.zeros((h, w), np.uint8)))
        records.append(Record(f"img{i}", str(tmp_path / f"{i}.png"), (1,)))
    records.append(Record("gone", str(tmp_path / "gone.png"), (1,)))  # unreadable: counts nothing
    data = CachedFeatureCrops(net, _Images(images), {"crop_size": 24, "flip": False}, seed=0, device="cpu")
    held = sum(it["features"].numel() * it["features"].element_size() for it in data.items)
    size = cache_bytes(records, data.channels)
    assert size == held == (5 * 8 + 6 * 6) * data.channels * 2
    check_cache_fits(records, data.channels, available=None)  # unknown: no check
    check_cache_fits(records, data.channels, available=2 * size)
    with pytest.raises(MemoryError, match=r"affinity.feature_cache: the backbone features of 3 images .* "
                                          r"set affinity.feature_cache: false"):
        check_cache_fits(records, data.channels, available=2 * size - 1)


def test_a_step_on_cached_features_equals_a_step_on_the_image():
    """Same image, no augmentation: the loss through the cache equals the loss through the
    whole network (up to the cache's float16)."""
    net = _frozen_affinity_net()
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (44, 42, 3), dtype=np.uint8)
    label = np.zeros((44, 42), np.uint8)
    label[8:40, 16:42] = 2
    label[:, :4] = 255
    offsets = pair_offsets(3)
    data = CachedFeatureCrops(net, _Images([(rgb, label)]), {"crop_size": 48, "flip": False}, seed=0, device="cpu")
    item = data[0]
    # the crop path: the image padded with the fill colour to 48 x 48, labels with 255
    image = torch.full((3, 48, 48), 0.5)
    image[:, :44, :42] = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255
    full_label = torch.full((48, 48), 255, dtype=torch.uint8)
    full_label[:44, :42] = torch.from_numpy(label)
    assert torch.equal(item["cell_label"], cell_labels(full_label))
    with torch.no_grad():
        direct, _ = affinity_loss(pair_affinities(net(image[None]), offsets),
                                  pair_labels(cell_labels(full_label)[None], offsets), 0.5)
        stages = torch.split(item["features"][None], net.backbone.stage_channels[1:], dim=1)
        cached, _ = affinity_loss(pair_affinities(net.embed(stages), offsets),
                                  pair_labels(item["cell_label"][None], offsets), 0.5)
    assert cached.item() == pytest.approx(direct.item(), rel=2e-3)


@pytest.mark.parametrize("feature_cache", [False, True])
def test_training_learns_affinities_that_separate_the_labels(tmp_path, tiny_dataset, feature_cache):
    """Trained on ground-truth regions as affinity labels, AffinityNet gives same-region pairs a
    higher affinity than different-region pairs; the saved model loads back. With the feature
    cache only the head learns, on the features of a backbone that keeps its (random) weights."""
    from pipeline import train_affinity
    from pipeline.evaluate import load_ground_truth

    records = read_tsv(tiny_dataset["train"])
    labels = tmp_path / "labels.h5"
    with ArtifactWriter(labels, stage="affinity_labels", split="train", shard="shard0", classes=["a"] * 8,
                        params={}, code_hash="x") as w:
        for r in records:
            w.add(r.image_id, mask=load_ground_truth(r, 9))
    cfg = resolve({"backbone": {"name": "resnet18", "weights": "none"},
                   "affinity": {"epochs": 16, "batch_size": 8, "crop_size": 48, "lr": 0.1,
                                "rescale": [0.9, 1.1], "freeze_backbone": feature_cache,
                                "feature_cache": feature_cache}})["affinity"]
    compute = {"device": "cpu", "num_workers": 0, "checkpoint_minutes": 10}
    torch.set_num_threads(2)
    train_affinity.run(manifest_path=tiny_dataset["train"], label_paths=[labels], classes=["a"] * 8, cfg=cfg, seed=0,
                       compute=compute, code_hash="x", classifier_path=None, model_path=tmp_path / "aff.pt",
                       history_path=tmp_path / "history.json", problems_path=tmp_path / "problems.tsv",
                       checkpoint_path=tmp_path / "ckpt.pt")
    history = json.loads((tmp_path / "history.json").read_text())["epochs"]
    assert len(history) == 16 and history[-1]["loss"] < history[0]["loss"]
    assert {"bg", "fg", "neg"} <= set(history[0])
    model, saved = load_affinity_net(tmp_path / "aff.pt")
    assert saved["radius"] == 5 and not (tmp_path / "ckpt.pt").exists()
    from pipeline.data import to_tensor
    from pipeline.imageio import read_image

    same, diff = [], []
    with torch.no_grad():
        for r in records[:12]:
            rgb = read_image(r.image)
            h, w = (rgb.shape[0] // 8) * 8, (rgb.shape[1] // 8) * 8
            gt = torch.from_numpy(load_ground_truth(r, 9)[:h, :w])
            aff = pair_affinities(model(to_tensor(rgb[:h, :w])[None]), pair_offsets(5))
            kinds = pair_labels(cell_labels(gt)[None], pair_offsets(5))
            same.append(aff[kinds["bg"] | kinds["fg"]])
            diff.append(aff[kinds["neg"]])
    assert torch.cat(same).mean() > torch.cat(diff).mean() + 0.05
