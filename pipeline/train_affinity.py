"""Stage train_affinity: AffinityNet (PSA) trained on the pairs of the affinity labels.

The affinity labels (confident classes, background 0, ignore 255) of a training crop are
sampled at the centre of every stride-8 cell (crop sizes are multiples of 8). Each cell i is paired with the
cells j at the offsets of `pair_offsets(radius)` (half of the disk dy^2 + dx^2 < r^2, so each unordered pair
appears once): label 1 if both have the same label, 0 if different, no label if either is
ignored. The loss on the predicted affinities a_ij = exp(-mean_c |f_i - f_j|) is
    bg/4 + fg/4 + neg/2,  bg = mean of -log a over background-background pairs,
    fg = the same over same-object pairs, neg = mean of -log(1 - a) over different pairs,
so the three kinds of pairs weigh the same whatever their counts (`neg_weight` moves the
negative term's share, the other two splitting the rest).

With the backbone frozen (`freeze_backbone`, IRN's way) its features never change, and
`feature_cache` computes them once per image instead of once per step (`CachedFeatureCrops`).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from . import manifest as mf
from .backbones import build_backbone
from .data import MaskedCrops, mask_locations, random_crop, to_tensor
from .devices import pick_device
from .grid_pairs import offset_slices, pair_offsets
from .imageio import IGNORE, ImageReadError, image_size
from .logs import progress
from .nets import STRIDE, AffinityNet, cpu_channels_last, init_from_classifier
from .problems import ProblemReport
from .provenance import file_id, params_hash
from .training import train_model

log = logging.getLogger(__name__)

EPS = 1e-5


def pairs(t: torch.Tensor, offsets) -> tuple[torch.Tensor, torch.Tensor]:
    """(first, second) members of every in-image pair of t [..., h, w], flattened on the last axis."""
    h, w = t.shape[-2:]
    first, second = [], []
    for dy, dx in offsets:
        (ya, xa), (yb, xb) = offset_slices(h, w, dy, dx)
        first.append(t[..., ya, xa].flatten(-2))
        second.append(t[..., yb, xb].flatten(-2))
    return torch.cat(first, -1), torch.cat(second, -1)


class _PairL1(torch.autograd.Function):
    """mean_c |f_i - f_j| of every pair, offset by offset. Autograd through `pairs` keeps two
    copies of every pair's C channels and, in the backward pass, a zero-filled feature-sized
    gradient per slice: at VOC crops that, not the network, was most of a training step. Here the
    backward pass recomputes each offset's signs and adds them into one gradient."""

    @staticmethod
    def forward(ctx, features, offsets):
        h, w = features.shape[-2:]
        out = []
        for dy, dx in offsets:
            (ya, xa), (yb, xb) = offset_slices(h, w, dy, dx)
            out.append(torch.sub(features[..., ya, xa], features[..., yb, xb]).abs_().mean(1).flatten(1))
        ctx.save_for_backward(features)
        ctx.offsets = offsets
        return torch.cat(out, -1)

    @staticmethod
    def backward(ctx, grad_out):
        (features,) = ctx.saved_tensors
        n, c, h, w = features.shape
        grad = torch.zeros_like(features)
        start = 0
        for dy, dx in ctx.offsets:
            (ya, xa), (yb, xb) = offset_slices(h, w, dy, dx)
            signed = torch.sub(features[..., ya, xa], features[..., yb, xb]).sign_()  # in place: 1.2x
            hh, ww = signed.shape[-2:]
            signed.mul_(grad_out[:, start:start + hh * ww].reshape(n, 1, hh, ww) / c)
            start += hh * ww
            grad[..., ya, xa] += signed
            grad[..., yb, xb] -= signed
        return grad, None


def pair_affinities(features: torch.Tensor, offsets) -> torch.Tensor:
    """a_ij = exp(-mean_c |f_i - f_j|) for features [N, C, h, w] -> [N, P], pairs ordered as `pairs`'."""
    return torch.exp(-_PairL1.apply(features, list(offsets)))


def pair_labels(labels: torch.Tensor, offsets) -> dict[str, torch.Tensor]:
    """Boolean masks [N, P] of the background, foreground and negative pairs of labels [N, h, w]."""
    a, b = pairs(labels, offsets)
    valid = (a != IGNORE) & (b != IGNORE)
    same = valid & (a == b)
    return {"bg": same & (a == 0), "fg": same & (a != 0), "neg": valid & (a != b)}


def affinity_loss(aff: torch.Tensor, labels: dict[str, torch.Tensor], neg_weight: float
                  ) -> tuple[torch.Tensor, dict]:
    """(bg + fg) (1 - neg_weight) / 2 + neg neg_weight, PSA's bg/4 + fg/4 + neg/2 at the schema's
    affinity.neg_weight 0.5 (each term the mean over its pairs; 0 when there are none)."""
    def mean(values, mask):
        mask = mask.float()
        return (values * mask).sum() / (mask.sum() + EPS)

    bg = mean(-torch.log(aff + EPS), labels["bg"])
    fg = mean(-torch.log(aff + EPS), labels["fg"])
    neg = mean(-torch.log(1.0 + EPS - aff), labels["neg"])
    total = (bg + fg) * (1 - neg_weight) / 2 + neg * neg_weight
    return total, {"bg": bg.item(), "fg": fg.item(), "neg": neg.item()}


def cell_labels(label: torch.Tensor) -> torch.Tensor:
    """The label at the centre of each stride-8 cell of [..., H, W] (H, W multiples of 8)."""
    return label[..., STRIDE // 2::STRIDE, STRIDE // 2::STRIDE]


class CachedFeatureCrops(torch.utils.data.Dataset):
    """Training crops for an AffinityNet whose backbone is frozen, cut from features computed once.

    Each image's backbone stages (the three the head reads, at stride 8) are computed once at
    scale 1, padded to whole cells, and kept in float16 with the image's cell labels (the label
    at each cell's centre, as `cell_labels`). An item is a random window of crop_size / 8 cells
    of them, flipped left-right with probability 1/2 when cfg["flip"] (a flip of the features
    stands in for the features of the flipped image); windows larger than the image are padded
    with zero features and ignored labels. No rescale or colour jitter: the steps skip the
    backbone, which at crops of 320 on a CPU was about two thirds of a step. Memory: about 8 MB
    a VOC photo for MobileNetV2 (1,408 channels). `device` is where the model is and the backbone runs."""

    def __init__(self, model: AffinityNet, crops: MaskedCrops, cfg: dict, seed: int, device):
        self.seed, self.flip, self.epoch = seed, cfg["flip"], 0
        self.cells = cfg["crop_size"] // STRIDE
        self.items = []
        fill = torch.as_tensor(crops.fill, dtype=torch.float32).view(3, 1, 1)
        backbone = model.backbone.eval()
        with torch.no_grad():
            for index in progress(range(len(crops)), desc="train_affinity features", unit="img"):
                loaded = crops.load(index)
                if isinstance(loaded, dict):
                    self.items.append(loaded)
                    continue
                rgb, label = loaded
                h, w = label.shape
                padded_h, padded_w = h + (-h % STRIDE), w + (-w % STRIDE)
                x = fill.repeat(1, padded_h, padded_w)
                x[:, :h, :w] = to_tensor(rgb)
                lab = torch.full((padded_h, padded_w), IGNORE, dtype=torch.uint8)
                lab[:h, :w] = torch.from_numpy(np.ascontiguousarray(label))
                features = torch.cat(backbone.stages(x[None].to(device))[1:], 1)[0].half().cpu()
                # a copy: the strided view would keep the whole padded label map alive
                self.items.append({"features": features, "label": cell_labels(lab).clone()})
        self.channels = sum(model.backbone.stage_channels[1:])
        cached = [it["features"] for it in self.items if "features" in it]
        log.info("train_affinity: features of %d images cached, %.2f GiB; crops are not rescaled or "
                 "colour-jittered (affinity.rescale and color_jitter unused)", len(cached),
                 sum(f.numel() * f.element_size() for f in cached) / 2 ** 30)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index: int):
        item = self.items[index]
        if "error" in item:
            return item
        rng = np.random.default_rng([self.seed, self.epoch, index])
        features, label = item["features"], item["label"]
        if self.flip and rng.random() < 0.5:
            features, label = features.flip(-1), label.flip(-1)
        window, cells = random_crop(features, self.cells, rng, label, fill=(0.0,) * self.channels)
        return {"features": window.float(), "cell_label": cells, "index": index}


def cache_bytes(records, channels: int) -> int:
    """The feature cache's size for `records`: each image's stride-8 cells (padded to whole cells)
    x `channels` x 2 bytes (float16), from the image headers. Unreadable images count 0 (they
    are reported when loaded)."""
    total = 0
    for r in records:
        try:
            h, w = image_size(r.image)
        except ImageReadError:
            continue
        total += -(-h // STRIDE) * -(-w // STRIDE) * channels * 2
    return total


def available_memory() -> int | None:
    """Bytes this process may still take: the kernel's MemAvailable, capped by the cgroup's
    (v2) limit where one is set, as under SLURM or a container; None where neither is known."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            found.append(int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def check_cache_fits(records, channels: int, available: int | None) -> None:
    """Stop before the features are computed when the job (about twice the cache) would not fit
    in `available` bytes: on full VOC the cache alone is about 80 GiB."""
    size = cache_bytes(records, channels)
    if available is not None and 2 * size > available:
        raise MemoryError(
            f"affinity.feature_cache: the backbone features of {len(records)} images take {size / 2 ** 30:.1f} GiB "
            f"and the job about twice that, more than the {available / 2 ** 30:.1f} GiB of memory available: "
            "set affinity.feature_cache: false (the backbone then runs at every step, in constant memory)")


def run(*, manifest_path, label_paths, classes, cfg: dict, seed: int, compute: dict, code_hash: str,
        classifier_path, model_path, history_path, problems_path, checkpoint_path) -> None:
    records = mf.read_tsv(manifest_path)
    problems = ProblemReport(problems_path)
    where = mask_locations(records, label_paths, "affinity_labels", problems)
    records = [r for r in records if r.image_id in where]
    run_hash = params_hash({"cfg": cfg, "seed": seed, "code": code_hash, "data": mf.digest(records),
                            "init": file_id(classifier_path) if cfg["init_from_classifier"] else None})
    torch.manual_seed(seed)
    device = pick_device(compute["device"])
    model = AffinityNet(build_backbone(cfg["backbone"], 8, load_weights=not cfg["init_from_classifier"]))
    if cfg["init_from_classifier"]:
        init_from_classifier(model, classifier_path, "affinity")
    if cfg["freeze_backbone"]:
        model.freeze_backbone()
    offsets = pair_offsets(cfg["radius"])

    crops = MaskedCrops(records, where, cfg, seed, stage="affinity_labels", fill=model.backbone.normalization["mean"])
    if cfg["feature_cache"]:  # with freeze_backbone (plan.check)
        check_cache_fits(records, sum(model.backbone.stage_channels[1:]), available_memory())
        dataset = CachedFeatureCrops(cpu_channels_last(model.to(device), device), crops, cfg, seed, device)
        compute = {**compute, "num_workers": 0}  # the cache lives in this process

        def step_loss(model, batch):
            stages = torch.split(batch["features"], model.backbone.stage_channels[1:], dim=1)
            return affinity_loss(pair_affinities(model.embed(stages), offsets),
                                 pair_labels(batch["cell_label"], offsets), cfg["neg_weight"])
    else:
        dataset = crops

        def step_loss(model, batch):
            aff = pair_affinities(model(batch["image"]), offsets)
            return affinity_loss(aff, pair_labels(cell_labels(batch["label"]), offsets), cfg["neg_weight"])

    train_model(model, dataset, step_loss, cfg=cfg,
                seed=seed, compute=compute, run_hash=run_hash, problems=problems, model_path=model_path,
                history_path=history_path, checkpoint_path=checkpoint_path, desc="train_affinity",
                lr_config="affinity.lr", extra={"classes": list(classes), "radius": cfg["radius"]})

