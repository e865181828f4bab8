"""Segmenters: both DeepLab heads, the loss with ignored pixels, multi-scale inference, training."""
import json

import numpy as np
import pytest
import torch

from pipeline import segment, train_segmenter
from pipeline.backbones import Backbone
from pipeline.artifacts import ArtifactReader, ArtifactWriter
from pipeline.config import resolve
from pipeline.datasets.synthetic import CLASSES
from pipeline.imageio import read_image, read_label_map
from pipeline.manifest import read_tsv
from pipeline.nets import DeepLab, load_segmenter, save_model
from pipeline.problems import read_report
from pipeline.segment import multiscale_probs
from pipeline.train_segmenter import segmentation_loss


@pytest.mark.parametrize("head", ["largefov", "aspp"])
def test_heads_give_stride_8_logits_and_full_size_outputs(head):
    torch.manual_seed(0)
    net = DeepLab(9, head, Backbone("resnet18", 8)).eval()
    x = torch.randn(2, 3, 72, 56)
    assert net.logits(x).shape == (2, 9, 9, 7)
    assert net(x).shape == (2, 9, 72, 56)
    groups = net.param_groups()
    assert len(groups["head"]) == (6 if head == "largefov" else 8)


def test_aspp_has_the_four_rates_and_unknown_heads_are_refused():
    net = DeepLab(3, "aspp", Backbone("resnet18", 8))
    assert [b.dilation for b in net.head] == [(6, 6), (12, 12), (18, 18), (24, 24)]
    # at output stride 16 the dilations are halved: the same fields of view in pixels
    coarse = DeepLab(3, "aspp", Backbone("resnet18", 16)).eval()
    assert [b.dilation for b in coarse.head] == [(3, 3), (6, 6), (9, 9), (12, 12)]
    assert DeepLab(3, "largefov", Backbone("resnet18", 16)).head[0].dilation == (6, 6)
    x = torch.randn(1, 3, 64, 96)
    assert coarse.logits(x).shape == (1, 3, 4, 6) and coarse(x).shape == (1, 3, 64, 96)
    with pytest.raises(ValueError, match="unknown segmenter head"):
        DeepLab(3, "fcn", Backbone("resnet18", 8))


def test_largefov_s_fresh_hidden_layers_keep_the_signal_s_scale():
    # DeepLab takes fc6 / fc7 from VGG; started from nothing at N(0, 0.01), the ReLU stack shrank
    # its input about tenfold and the head barely learned in a CPU schedule (docs/mcof.md)
    torch.manual_seed(0)
    net = DeepLab(5, "largefov", Backbone("resnet18", 8), dropout=0.0).eval()
    fc6, fc7, classifier = net.head[0], net.head[3], net.head[6]
    features = torch.relu(torch.randn(1, fc6.in_channels, 40, 40))
    hidden = net.head[:5](features)[..., 12:-12, 12:-12]  # away from the dilated conv's zero padding
    ratio = hidden.pow(2).mean().sqrt() / features.pow(2).mean().sqrt()
    assert 0.5 < ratio < 2.0, ratio
    assert abs(classifier.weight.std().item() - 0.01) < 0.001  # the new classifier layer: DeepLab's N(0, 0.01)
    assert abs(fc7.weight.std().item() - (2 / fc7.in_channels) ** 0.5) < 0.005


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
    net = DeepLab(4, "largefov", Backbone("resnet18", 8)).eval()
    rgb = np.random.default_rng(0).integers(0, 256, (40, 52, 3), dtype=np.uint8)
    p = multiscale_probs(net, rgb, [1.0, 0.5, 1.5], flip=True)
    assert p.shape == (4, 40, 52) and torch.allclose(p.sum(0), torch.ones(40, 52), atol=1e-5)
    mirrored = multiscale_probs(net, rgb[:, ::-1].copy(), [1.0, 0.5, 1.5], flip=True)
    assert torch.allclose(mirrored, p.flip(-1), atol=1e-5)
    single = multiscale_probs(net, rgb, [1.0], flip=False)
    assert not torch.allclose(single, p, atol=1e-3)


def segmenter_cfg(**extra):
    return resolve({"backbone": {"name": "resnet18", "weights": "none"},
                    "segmenter": {"crop_size": 48, "batch_size": 8, "lr": 0.01, "rescale": [0.9, 1.1],
                                  "test_scales": [1.0], **extra}})["segmenter"]


def train(tmp_path, manifest, source="ground_truth", mask_paths=(), head="largefov", **extra):
    cfg = {**segmenter_cfg(**extra), "head": head}
    paths = {k: tmp_path / f"{k}.out" for k in ("model", "history", "problems", "checkpoint")}
    train_segmenter.run(manifest_path=manifest, mask_paths=list(mask_paths), source=source, classes=list(CLASSES),
                        cfg=cfg, seed=0, compute={"device": "cpu", "num_workers": 0, "checkpoint_minutes": 10},
                        code_hash="t", classifier_path=None, **{f"{k}_path": v for k, v in paths.items()})
    return paths


def test_tiny_training_on_ground_truth_lowers_the_loss_and_counts_iterations(tmp_path, tiny_dataset):
    torch.set_num_threads(2)
    paths = train(tmp_path, tiny_dataset["train"], iterations=30)  # 3 steps an epoch: 10 epochs
    history = json.loads(paths["history"].read_text())["epochs"]
    assert len(history) == 10 and history[-1]["loss"] < 0.85 * history[0]["loss"]
    assert sum(h["images"] for h in history) == 30 * 8
    model, saved = load_segmenter(paths["model"])
    assert model.arch["head"] == "largefov" and saved["source"] == "ground_truth" and saved["classes"] == list(CLASSES)
    assert not paths["checkpoint"].exists() and read_report(paths["problems"]) == []


def test_training_on_a_stage_s_masks_records_the_images_it_lacks(tmp_path, tiny_dataset):
    """A pseudo-mask shard (here: the ground truth stored as stage `rw`) missing one image."""
    records = read_tsv(tiny_dataset["train"])
    shard = tmp_path / "rw.h5"
    with ArtifactWriter(shard, stage="rw", split="train", shard="shard0", classes=CLASSES, params={},
                        code_hash="t") as out:
        for r in records[1:]:
            out.add(r.image_id, {}, mask=read_label_map(r.mask))
    paths = train(tmp_path, tiny_dataset["train"], source="rw", mask_paths=[shard], iterations=2, head="aspp")
    problems = read_report(paths["problems"])
    assert [p[0] for p in problems] == [records[0].image_id] and "no rw mask" in problems[0][2]
    assert sum(h["images"] for h in json.loads(paths["history"].read_text())["epochs"]) == 2 * 8
    with pytest.raises(ValueError, match="none of the training images has a rw mask"):
        train(tmp_path / "x", tiny_dataset["train"], source="rw", mask_paths=[], iterations=1)


def test_segment_stores_full_size_probabilities_of_predicted_classes_and_the_mask(tmp_path, tiny_dataset):
    torch.manual_seed(0)
    net = DeepLab(len(CLASSES) + 1, "aspp", Backbone("resnet18", 8))
    save_model(net, tmp_path / "model.pt", {"classes": list(CLASSES), "source": "rw"})
    segment.run(manifest_path=tiny_dataset["val"], model_path=tmp_path / "model.pt",
                cfg={"scales": [1.0, 0.75], "flip": True}, device="cpu", code_hash="t", stage="deeplab_aspp",
                split="val", shard="shard0", out_path=tmp_path / "out.h5", png_dir=tmp_path / "png",
                problems_path=tmp_path / "problems.tsv")
    records = read_tsv(tiny_dataset["val"])
    with ArtifactReader(tmp_path / "out.h5", stage="deeplab_aspp") as r:
        assert sorted(r.image_ids()) == sorted(x.image_id for x in records)
        assert r.params()["head"] == "aspp" and r.params()["source"] == "rw"
        d = r.read(records[0].image_id, "scores", "keys", "mask")
        a = r.image_attrs(records[0].image_id)
    h, w = a["height"], a["width"]
    assert d["mask"].shape == (h, w)
    probs = multiscale_probs(net.eval(), read_image(records[0].image), [1.0, 0.75], flip=True)
    np.testing.assert_array_equal(d["mask"], probs.argmax(0).numpy())
    # the CRF's input at full resolution (as DeepLab's): background and the classes the mask holds
    assert list(d["keys"]) == sorted({0, *np.unique(d["mask"]).tolist()})
    assert d["scores"].shape == (len(d["keys"]), h, w) and d["scores"].dtype == np.float16
    np.testing.assert_allclose(d["scores"].astype(np.float32), probs.numpy()[d["keys"]], atol=1e-3)
    np.testing.assert_array_equal(read_label_map(tmp_path / "png" / f"{records[0].image_id}.png"), d["mask"])


def test_predictions_can_keep_to_the_image_s_classes(tiny_dataset):
    """MCOF's PixelNet on its training images: only background and the image's classes."""
    from pipeline.segment import segment_image

    torch.manual_seed(0)
    net = DeepLab(len(CLASSES) + 1, "aspp", Backbone("resnet18", 8)).eval()
    record = read_tsv(tiny_dataset["val"])[0]
    rgb = read_image(record.image)
    _, _, free = segment_image(net, rgb, [1.0], False)
    allowed = record.labels
    _, kept_keys, kept = segment_image(net, rgb, [1.0], False, allowed=allowed)
    assert set(np.unique(kept).tolist()) <= {0, *allowed} and set(kept_keys.tolist()) <= {0, *allowed}
    inside = np.isin(free, [0, *allowed])
    np.testing.assert_array_equal(kept[inside], free[inside])  # where the free argmax was allowed, nothing moves


def test_ablation_table_marks_the_rate_best_on_the_training_split(tmp_path):
    from pipeline.ablations import segmenter_table

    def metrics(folder, stage, miou):
        folder.mkdir(exist_ok=True)
        (folder / f"{stage}.json").write_text(json.dumps({"stage": stage, "miou": miou}))
        return folder / f"{stage}.json"

    runs = {"deeplab_aspp_lr0.001": 0.001, "deeplab_aspp_lr0.00025": 0.00025}
    shown = [metrics(tmp_path, "deeplab_aspp_lr0.001", 0.50), metrics(tmp_path, "deeplab_aspp_lr0.00025", 0.45)]
    # the lower rate fits the training split better, although the other scores higher where shown
    train = [metrics(tmp_path / "train_split", "deeplab_aspp_lr0.001", 0.60),
             metrics(tmp_path / "train_split", "deeplab_aspp_lr0.00025", 0.62)]
    # without ground truth, the higher rate reproduces its pseudo masks more closely
    agreement = [metrics(tmp_path / "agreement", "deeplab_aspp_lr0.001", 0.58),
                 metrics(tmp_path / "agreement", "deeplab_aspp_lr0.00025", 0.51)]
    table = segmenter_table(shown, runs, tmp_path / "a.tsv", train, agreement)
    lines = [line.split("\t") for line in (tmp_path / "a.tsv").read_text().splitlines()]
    assert lines == [["row", "lr", "miou", "miou_train", "chosen", "agreement", "chosen_by_agreement"],
                     ["deeplab_aspp_lr0.00025", "0.00025", "0.4500", "0.6200", "yes", "0.5100", ""],
                     ["deeplab_aspp_lr0.001", "0.001", "0.5000", "0.6000", "", "0.5800", "yes"]]
    assert "mIoU train split" in table and "62.0" in table and "agreement with its masks" in table and "58.0" in table
    segmenter_table(shown, runs, tmp_path / "b.tsv")  # no ground truth, no agreement: nothing chosen
    assert [line.split("\t")[4::2] for line in (tmp_path / "b.tsv").read_text().splitlines()[1:]] == [["", ""]] * 2
