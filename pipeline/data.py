"""Training data: images with their image-level labels, augmented reproducibly.

Every random choice of a sample is drawn from a generator seeded by (seed, epoch, index),
and the order of an epoch from (seed, epoch): a run resumed in the middle of an epoch sees
exactly the batches an uninterrupted run would, whatever the number of loader workers.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .imageio import ImageReadError, image_size, read_folder_mask, read_image, read_label_map
from .logs import progress
from .manifest import Record



def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] -> float [3, H, W] in 0..1."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(255.0)


def scaled_views(x: torch.Tensor, scales, flip: bool):
    """Multi-scale (and flip) test-time views of a [3, H, W] image: per scale a batch of the
    resized image, with `flip` its mirror image as a second item. Each side keeps at least 8 px,
    one cell of the networks' stride-8 grid. `unflip` brings a view's outputs back in line."""
    h, w = x.shape[-2:]
    for s in scales:
        xs = resize(x, (max(8, round(h * s)), max(8, round(w * s))))[None]
        yield torch.cat([xs, xs.flip(-1)]) if flip else xs


def unflip(out: torch.Tensor) -> torch.Tensor:
    """Outputs [1 or 2, ...] of a `scaled_views` batch with the mirrored item flipped back."""
    return torch.cat([out[:1], out[1:].flip(-1)]) if len(out) > 1 else out


def resize(x: torch.Tensor, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """Resize [C, H, W] or [N, C, H, W] images (antialiased when shrinking)."""
    batched = x.dim() == 4
    x = x if batched else x[None]
    if tuple(x.shape[-2:]) != tuple(size):
        shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
        x = F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=shrink and mode == "bilinear")
    return x if batched else x[0]


def upsample_scores(scores, size: tuple[int, int]) -> torch.Tensor:
    """Score maps [K, h, w] (array or tensor, e.g. stored on a stride-8 grid) bilinearly resized
    to the image size [K, H, W], float32: the one way every stage brings scores to the image."""
    return resize(torch.as_tensor(scores, dtype=torch.float32), tuple(size))


def color_jitter(x: torch.Tensor, rng: np.random.Generator, brightness: float, contrast: float,
                 saturation: float, hue: float) -> torch.Tensor:
    """Random brightness, contrast, saturation and hue, applied in a random order (as torchvision)."""
    # imported here: torchvision costs ~1.7 s at start-up (it loads torch._dynamo), and the CRF
    # and evaluation jobs that use this module's other helpers train nothing
    from torchvision.transforms.v2 import functional as TF

    ops = []  # (adjustment, its factor), the factors drawn in this order
    if brightness:
        ops.append((TF.adjust_brightness, rng.uniform(1 - brightness, 1 + brightness)))
    if contrast:
        ops.append((TF.adjust_contrast, rng.uniform(1 - contrast, 1 + contrast)))
    if saturation:
        ops.append((TF.adjust_saturation, rng.uniform(1 - saturation, 1 + saturation)))
    if hue:
        ops.append((TF.adjust_hue, rng.uniform(-hue, hue)))
    for i in rng.permutation(len(ops)):
        adjust, factor = ops[i]
        x = adjust(x, factor)
    return x.clamp_(0.0, 1.0)


def random_crop(x: torch.Tensor, size: int, rng: np.random.Generator, label: torch.Tensor | None = None,
                fill=(0.0, 0.0, 0.0)):
    """A size x size window; sides shorter than `size` are padded with the colour `fill` (the
    network's normalisation mean, which it sees as zero). A label map [H, W] gets the same
    window, padded with 255 (ignore)."""
    _, h, w = x.shape
    out = torch.as_tensor(fill, dtype=x.dtype).view(-1, 1, 1).repeat(1, size, size)
    ch, cw = min(h, size), min(w, size)
    ys, xs = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)  # window in the image
    yd, xd = rng.integers(0, size - ch + 1), rng.integers(0, size - cw + 1)  # place in the crop
    out[:, yd:yd + ch, xd:xd + cw] = x[:, ys:ys + ch, xs:xs + cw]
    if label is None:
        return out
    lab = label.new_full((size, size), 255)
    lab[yd:yd + ch, xd:xd + cw] = label[ys:ys + ch, xs:xs + cw]
    return out, lab


def augment(rgb: np.ndarray, cfg: dict, rng: np.random.Generator, label: np.ndarray | None = None,
            fill=(0.0, 0.0, 0.0)):
    """Random rescale, flip, colour jitter and crop (padded with `fill`) of one training image,
    RGB in 0..1; a label map [H, W] (uint8) given too is rescaled (nearest), flipped and
    cropped alike."""
    x = to_tensor(rgb)
    s = rng.uniform(*cfg["rescale"])
    h, w = x.shape[1:]
    size = (max(1, round(h * s)), max(1, round(w * s)))
    x = resize(x, size)
    lab = None
    if label is not None:
        lab = F.interpolate(torch.from_numpy(np.ascontiguousarray(label))[None, None].float(), size=size,
                            mode="nearest")[0, 0].to(torch.uint8)
    if cfg["flip"] and rng.random() < 0.5:
        x = x.flip(-1)
        lab = None if lab is None else lab.flip(-1)
    x = color_jitter(x, rng, **cfg["color_jitter"])
    return random_crop(x, cfg["crop_size"], rng, lab, fill)


class LabelledImages(torch.utils.data.Dataset):
    """(augmented image, multi-hot label vector) per record; unreadable images come back as errors.

    `sub_targets` (image id -> vector), when given, adds a second target per image (SC-CAM's
    sub-category labels). `fill` pads crops: the network's normalisation mean."""

    def __init__(self, records: list[Record], n_classes: int, cfg: dict, seed: int,
                 sub_targets: dict[str, np.ndarray] | None = None, fill=(0.0, 0.0, 0.0)):
        self.records, self.n_classes, self.cfg, self.seed = records, n_classes, cfg, seed
        self.sub_targets, self.fill = sub_targets, tuple(fill)
        self.epoch = 0

    def __len__(self):
        return len(self.records)

    def load(self, index: int):
        """(record, RGB image, the sample's generator, multi-hot target), or an error item."""
        r = self.records[index]
        try:
            rgb = read_image(r.image)
        except ImageReadError as e:
            return {"error": (r.image_id, r.image, str(e))}
        target = torch.zeros(self.n_classes)
        target[[v - 1 for v in r.labels]] = 1.0
        return r, rgb, np.random.default_rng([self.seed, self.epoch, index]), target

    def __getitem__(self, index: int):
        loaded = self.load(index)
        if isinstance(loaded, dict):
            return loaded
        r, rgb, rng, target = loaded
        item = {"image": augment(rgb, self.cfg, rng, fill=self.fill), "target": target, "index": index}
        if self.sub_targets is not None:
            item["sub_target"] = torch.as_tensor(self.sub_targets[r.image_id], dtype=torch.float32)
        return item


class ArtifactArrays:
    """One named array per image from artifact shards (`where`: image id -> .h5 path), opened
    lazily and once per process: HDF5 handles must not cross a loader's fork."""

    def __init__(self, where: dict[str, str], stage: str | None, name: str):
        self.where, self.stage, self.name = where, stage, name
        self._readers, self._pid = {}, None

    @classmethod
    def from_shards(cls, shard_paths, stage: str, name: str) -> "ArtifactArrays":
        from .artifacts import shard_index

        return cls(shard_index(shard_paths, stage=stage), stage, name)

    def read(self, image_id: str) -> np.ndarray:
        from .artifacts import ArtifactReader

        if self._pid != os.getpid():
            self._readers, self._pid = {}, os.getpid()
        path = str(self.where[image_id])
        if path not in self._readers:
            self._readers[path] = ArtifactReader(path, stage=self.stage)
        return self._readers[path].read(image_id, self.name)[self.name]


class MaskedCrops(torch.utils.data.Dataset):
    """(augmented image, label map cropped alike) per record, for pixel-level training.

    `mask_paths` maps an image id to its label map: an artifact (.h5, dataset `mask` of the
    given `stage`) or a PNG label map. Artifacts are opened lazily in each loader process.
    `fill` pads crops: the network's normalisation mean."""

    def __init__(self, records: list[Record], mask_paths: dict[str, str], cfg: dict, seed: int,
                 stage: str | None = None, fill=(0.0, 0.0, 0.0)):
        self.records, self.mask_paths, self.cfg, self.seed = records, mask_paths, cfg, seed
        self.fill = tuple(fill)
        self.epoch = 0
        self._masks = ArtifactArrays(mask_paths, stage, "mask")

    def __len__(self):
        return len(self.records)

    def _mask(self, image_id: str) -> np.ndarray:
        path = str(self.mask_paths[image_id])
        return self._masks.read(image_id) if path.endswith(".h5") else read_label_map(path)

    def load(self, index: int):
        """(RGB image, label map) of record `index` as stored, or an error item."""
        r = self.records[index]
        try:
            rgb = read_image(r.image)
            label = self._mask(r.image_id)
        except ImageReadError as e:
            return {"error": (r.image_id, r.image, str(e))}
        if label.shape != rgb.shape[:2]:
            return {"error": (r.image_id, r.image, f"image size {rgb.shape[:2]} differs from its label map size "
                                                   f"{label.shape} ({self.mask_paths[r.image_id]})")}
        return rgb, label

    def __getitem__(self, index: int):
        loaded = self.load(index)
        if isinstance(loaded, dict):
            return loaded
        rgb, label = loaded
        rng = np.random.default_rng([self.seed, self.epoch, index])
        image, lab = augment(rgb, self.cfg, rng, label, self.fill)
        return {"image": image, "label": lab, "index": index}


def mask_locations(records: list[Record], shard_paths, stage: str, problems) -> dict[str, str]:
    """image id -> where its label map is: the shard (.h5 of `stage`) that holds it or, when
    `shard_paths` is None, the ground-truth mask file of the manifest. Images without one are
    added to `problems` (a ProblemReport)."""
    if shard_paths is None:
        where = {r.image_id: r.mask for r in records if r.mask}
        missing = "no ground-truth mask in the manifest"
    else:
        where = ArtifactArrays.from_shards(shard_paths, stage, "mask").where
        missing = f"no {stage} mask (see that stage's problems)"
    for r in records:
        if r.image_id not in where:
            problems.add(r.image_id, r.image, missing)
    return where


def folder_mask_locations(records: list[Record], folder, n_classes: int, problems) -> dict[str, str]:
    """image id -> its PNG label map in `folder` (masks made elsewhere), for the records whose
    mask is there, readable, of the image's size and within 0..C / 255; the others are rows of
    `problems` (a ProblemReport)."""
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"{folder}: the folder of masks does not exist")
    where = {}
    for r in progress(records, desc=f"check the masks in {folder}", unit="img"):
        try:
            read_folder_mask(folder, r.image_id, image_size(r.image), n_classes)
        except ImageReadError as e:
            problems.add(r.image_id, Path(folder) / f"{r.image_id}.png", str(e))
            continue
        where[r.image_id] = str(Path(folder) / f"{r.image_id}.png")
    return where


def collate(items: list[dict]) -> dict:
    good = [it for it in items if "error" not in it]
    batch = {"errors": [it["error"] for it in items if "error" in it], "size": len(good)}
    for key in good[0] if good else ():
        if key != "index":
            batch[key] = torch.stack([it[key] for it in good])
    return batch


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The batches of one epoch: a seeded permutation cut into full batches (one partial if n < batch)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(n, generator=g).tolist()
    if n < batch_size:
        return [order]
    return [order[i:i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]
