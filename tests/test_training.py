import json

import numpy as np
import pytest
import torch

from sklearn.linear_model import LogisticRegression

from pipeline import manifest as mf
from pipeline.backbones import Backbone, build_backbone
from pipeline.config import resolve
from pipeline.data import augment, epoch_batches, random_crop, to_tensor
from pipeline.datasets.synthetic import CLASSES
from pipeline.imageio import read_image
from pipeline.nets import Classifier, cpu_channels_last, load_classifier
from pipeline.train_classifier import fit_head_weights, run
from pipeline.training import poly_lr, set_lr, sgd


def test_poly_lr():
    assert poly_lr(0.1, 0, 100, 0.9) == pytest.approx(0.1)
    assert poly_lr(0.1, 50, 100, 0.9) == pytest.approx(0.1 * 0.5 ** 0.9)
    assert poly_lr(0.1, 100, 100, 0.9) == 0.0


def test_sgd_really_uses_momentum_and_head_multiplier():
    w_body, w_head = torch.nn.Parameter(torch.ones(1)), torch.nn.Parameter(torch.ones(1))
    opt = sgd({"backbone": [w_body], "head": [w_head]}, lr=0.1, mults={"head": 10}, momentum=0.9, weight_decay=0)
    assert [g["momentum"] for g in opt.param_groups] == [0.9, 0.9]
    set_lr(opt, 0.1)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.1, 1.0])
    for _ in range(2):  # constant gradient 1: with momentum the 2nd step is 1.9x the first
        opt.zero_grad()
        (w_body.sum() + w_head.sum()).backward()
        opt.step()
    assert w_body.item() == pytest.approx(1 - 0.1 - 0.1 * 1.9)
    assert w_head.item() == pytest.approx(1 - 1.0 - 1.0 * 1.9)


@pytest.mark.parametrize("freeze_bn", [True, False])
def test_channels_last_training_has_the_gradients_of_the_default_layout(freeze_bn):
    """Every trainer runs in channels-last on a CPU (faster kernels): its gradients are float64's
    up to float32's rounding, as the default layout's are."""
    torch.manual_seed(0)
    reference, default, last = (Classifier(3, Backbone("mobilenet_v2", 16, frozen_stages=2, freeze_bn=freeze_bn))
                                for _ in range(3))
    default.load_state_dict(reference.state_dict())
    last.load_state_dict(reference.state_dict())
    cpu_channels_last(last, "cpu")
    assert last.head.weight.is_contiguous(memory_format=torch.channels_last)
    reference.double()
    x, target = torch.rand(4, 3, 96, 96), torch.tensor([[1.0, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    grads = []
    for model in (reference, default, last):
        model.train()
        dtype = next(model.parameters()).dtype
        torch.nn.functional.multilabel_soft_margin_loss(model(x.to(dtype)), target.to(dtype)).backward()
        grads.append({n: p.grad.double() for n, p in model.named_parameters() if p.grad is not None})
    ref, default_grads, last_grads = grads
    assert len(ref) > 100  # the unfrozen stages' and the head's
    scale = max(g.abs().max().item() for g in ref.values())
    error = {key: max((gs[n] - ref[n]).abs().max().item() for n in ref)
             for key, gs in (("default", default_grads), ("channels_last", last_grads))}
    # float32's rounding: 1e-6 of the largest gradient with batch norm fixed; with the batch
    # statistics of 4 images 1e-3 to 5e-3 in either layout, and which layout lands closer is chance
    # (seeds 0-2). A layout mistake would be of the order of the gradients
    rounding = 1e-7 * scale if freeze_bn else 5e-3 * scale
    assert error["channels_last"] <= 5 * error["default"] + rounding, error
    assert error["channels_last"] < 1e-2 * scale, error


def test_epoch_batches_are_seeded_full_and_cover_once():
    a, b = epoch_batches(50, 8, seed=3, epoch=2), epoch_batches(50, 8, seed=3, epoch=2)
    assert a == b and len(a) == 6 and all(len(x) == 8 for x in a)
    assert len({i for x in a for i in x}) == 48
    assert epoch_batches(50, 8, seed=3, epoch=3) != a
    small = epoch_batches(5, 8, 0, 0)  # fewer images than a batch: one partial batch
    assert len(small) == 1 and sorted(small[0]) == list(range(5))


def test_augment_is_reproducible_and_has_the_crop_size():
    cfg = resolve({"classifier": {"crop_size": 48}})["classifier"]
    rgb = np.random.default_rng(0).integers(0, 256, (40, 70, 3), dtype=np.uint8)
    x1 = augment(rgb, cfg, np.random.default_rng([1, 2, 3]))
    x2 = augment(rgb, cfg, np.random.default_rng([1, 2, 3]))
    x3 = augment(rgb, cfg, np.random.default_rng([1, 2, 4]))
    assert x1.shape == (3, 48, 48)
    torch.testing.assert_close(x1, x2)
    assert not torch.equal(x1, x3)


def test_random_crop_pads_small_images_with_zeros():
    x = torch.ones(3, 10, 20)
    out = random_crop(x, 16, np.random.default_rng(0))
    assert out.shape == (3, 16, 16)
    assert out.sum().item() == 3 * 10 * 16  # all of the 10 rows, 16 of the 20 columns


def test_the_lbfgs_head_is_the_logistic_regression_of_the_pooled_features():
    """fit: lbfgs minimises the mean soft-margin loss + weight_decay / 2 |W|^2, which per class is
    scikit-learn's L2 logistic regression without intercept at C = 1 / (weight_decay x N x C)."""
    rng = np.random.default_rng(0)
    features = torch.from_numpy(rng.normal(size=(60, 8))).float()
    targets = (features[:, :3] + 0.5 * torch.from_numpy(rng.normal(size=(60, 3))).float() > 0).float()
    weight_decay = 0.01
    weights, loss, iterations = fit_head_weights(features, targets, weight_decay)
    assert iterations > 1 and 0 < loss < np.log(2)
    for c in range(3):
        ref = LogisticRegression(C=1 / (weight_decay * 60 * 3), fit_intercept=False, tol=1e-10, max_iter=10000)
        ref.fit(features.numpy(), targets[:, c].numpy())
        assert np.allclose(weights[c].numpy(), ref.coef_[0], atol=1e-4)


def test_an_lbfgs_classifier_keeps_its_imagenet_backbone_and_learns_its_head(tmp_path, tiny_dataset):
    cfg = resolve({"backbone": {"name": "mobilenet_v2"}, "classifier": {"fit": "lbfgs"}})["classifier"]
    run(manifest_path=tiny_dataset["train"], classes=list(CLASSES), cfg=cfg, seed=0,
        compute={"device": "cpu", "num_workers": 0, "checkpoint_minutes": 10}, code_hash="c",
        model_path=tmp_path / "m.pt", history_path=tmp_path / "h.json", problems_path=tmp_path / "p.tsv",
        checkpoint_path=tmp_path / "ck.pt")
    model, saved = load_classifier(tmp_path / "m.pt")
    imagenet = build_backbone({**cfg["backbone"], "features": "last_block"}, 16).state_dict()
    assert all(torch.equal(v, imagenet[k]) for k, v in model.backbone.state_dict().items())
    assert model.backbone.out_channels == 320 and saved["classes"] == list(CLASSES)
    history = json.loads((tmp_path / "h.json").read_text())["epochs"]
    assert (history[0]["images"], history[0]["views"]) == (24, 48) and history[0]["loss"] < 0.5  # and mirrors
    # the head separates the training images' labels it was fitted to
    records = mf.read_tsv(tiny_dataset["train"])
    with torch.no_grad():
        scores = torch.cat([model(to_tensor(read_image(r.image))[None]) for r in records])
    targets = torch.zeros_like(scores)
    for i, r in enumerate(records):
        targets[i, [v - 1 for v in r.labels]] = 1
    assert ((scores > 0) == (targets > 0)).float().mean() > 0.9


def test_keep_freed_memory_sets_glibcs_thresholds_and_is_a_no_op_without_mallopt(monkeypatch):
    import ctypes
    import platform

    from pipeline import training

    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert training.keep_freed_memory() is True  # glibc accepts 256 MiB for both thresholds
    monkeypatch.setattr(ctypes, "CDLL", lambda name: object())  # a C library without mallopt
    assert training.keep_freed_memory() is False
