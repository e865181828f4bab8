"""Segmenters: both DeepLab heads, the loss with ignored pixels, multi-scale inference, training."""
import numpy as np
import pytest
import torch

from pipeline.config import resolve
from pipeline.data import MaskedCrops
from pipeline.manifest import read_tsv
from pipeline.nets import DeepLab
from pipeline.problems import ProblemReport
from pipeline.segmenter import multiscale_probs, segmentation_loss
from pipeline.training import fit, sgd


@pytest.mark.parametrize("head", ["largefov", "aspp"])
def test_heads_give_stride_8_logits_and_full_size_outputs(head):
    torch.manual_seed(0)
    net = DeepLab(9, head, depth=18).eval()
    x = torch.randn(2, 3, 72, 56)
    assert net.logits(x).shape == (2, 9, 9, 7)
    assert net(x).shape == (2, 9, 72, 56)
    groups = net.param_groups()
    assert len(groups["head"]) == (6 if head == "largefov" else 8)


def test_aspp_has_the_four_rates_and_unknown_heads_are_refused():
    net = DeepLab(3, "aspp", depth=18)
    assert [b.dilation for b in net.head] == [(6, 6), (12, 12), (18, 18), (24, 24)]
    with pytest.raises(ValueError, match="unknown segmenter head"):
        DeepLab(3, "fcn", depth=18)


def test_ignored_pixels_do_not_count():
    torch.manual_seed(0)
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    target = torch.tensor([[[0, 2], [255, 1]]])
    loss = segmentation_loss(logits, target)
    loss.backward()
    assert logits.grad[0, :, 1, 0].abs().sum() == 0  # the ignored pixel gets no gradient
    expected = -torch.log_softmax(logits.detach(), 1)[0, [0, 2, 1], [0, 0, 1], [0, 1, 1]].mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert segmentation_loss(logits, torch.full((1, 2, 2), 255)).item() == 0


def test_balanced_loss_weighs_each_present_class_the_same():
    logits = torch.zeros(1, 2, 1, 4)
    logits[0, 1, 0, 3] = 2.0  # the single class-1 pixel is predicted well
    target = torch.tensor([[[0, 0, 0, 1]]])
    per_pixel = -torch.log_softmax(logits, 1)[0, target[0, 0], 0, torch.arange(4)]
    plain = segmentation_loss(logits, target).item()
    balanced = segmentation_loss(logits, target, balanced=True).item()
    assert plain == pytest.approx(per_pixel.mean().item())
    assert balanced == pytest.approx(((per_pixel[:3].mean() + per_pixel[3]) / 2).item())


def test_multiscale_inference_averages_probabilities_and_respects_the_mirror():
    torch.manual_seed(0)
    net = DeepLab(4, "largefov", depth=18).eval()
    rgb = np.random.default_rng(0).integers(0, 256, (40, 52, 3), dtype=np.uint8)
    p = multiscale_probs(net, rgb, [1.0, 0.5, 1.5], flip=True)
    assert p.shape == (4, 40, 52) and torch.allclose(p.sum(0), torch.ones(40, 52), atol=1e-5)
    mirrored = multiscale_probs(net, rgb[:, ::-1].copy(), [1.0, 0.5, 1.5], flip=True)
    assert torch.allclose(mirrored, p.flip(-1), atol=1e-5)
    single = multiscale_probs(net, rgb, [1.0], flip=False)
    assert not torch.allclose(single, p, atol=1e-3)


def test_tiny_training_on_masks_lowers_the_loss(tmp_path, tiny_dataset):
    records = read_tsv(tiny_dataset["train"])
    cfg = {**resolve({"classifier": {"crop_size": 48, "batch_size": 8, "epochs": 10, "lr": 0.01,
                                     "rescale": [0.9, 1.1]}})["classifier"]}
    torch.manual_seed(0)
    net = DeepLab(9, "largefov", depth=18)
    opt = sgd(net.param_groups(), lr=cfg["lr"], mults={"head": 10}, momentum=0.9, weight_decay=5e-4)
    dataset = MaskedCrops(records, {r.image_id: r.mask for r in records}, cfg, seed=0)

    def step_loss(model, batch):
        return segmentation_loss(model(batch["image"]), batch["label"]), {}

    torch.set_num_threads(2)
    history = fit(model=net, optimizer=opt, dataset=dataset, step_loss=step_loss, cfg=cfg, seed=0,
                  compute={"device": "cpu", "num_workers": 0, "checkpoint_minutes": 10}, run_hash="t",
                  checkpoint_path=tmp_path / "ckpt.pt", problems=ProblemReport(tmp_path / "p.tsv"), device="cpu",
                  desc="segmenter", lr_config="lr")
    assert len(history) == 10 and history[-1]["loss"] < 0.85 * history[0]["loss"]
