"""Networks: the multi-label CAM classifier and its SC-CAM / EPS variants, AffinityNet and
DeepLab, each on a backbone from the registry (pipeline/backbones.py). Every network takes RGB
images in 0..1: its backbone normalises them as its weights were trained.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .atomic import atomic_path
from .backbones import Backbone, from_arch
from .devices import widen

# the grid of AffinityNet's features and of the segmenters' stored scores (output stride 8)
STRIDE = 8


class Classifier(nn.Module):
    """Backbone features -> global average pooling -> 1x1 conv (no bias) to class scores.

    The CAM of class c is ReLU(w_c . f(x, y)): the head applied before pooling.
    """

    def __init__(self, n_classes: int, backbone: Backbone):
        super().__init__()
        self.arch = {"n_classes": n_classes, "backbone": backbone.arch}
        self.backbone = backbone
        self.head = nn.Conv2d(self.backbone.out_channels, n_classes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.backbone(x)
        return self.head(f.mean(dim=(2, 3), keepdim=True)).flatten(1)

    def cams(self, x: torch.Tensor, class_index: torch.Tensor) -> torch.Tensor:
        """ReLU class activation maps [N, K, h, w] of the classes `class_index` (0-based)."""
        f = self.backbone(x)
        return F.relu(F.conv2d(f, self.head.weight[class_index]))

    def pooled_features(self, x: torch.Tensor) -> torch.Tensor:
        """Global-average-pooled backbone features [N, D]: what the head sees."""
        return self.backbone(x).mean(dim=(2, 3))

    def param_groups(self):
        return {"backbone": list(self.backbone.parameters()), "head": list(self.head.parameters())}


class SubCategoryClassifier(Classifier):
    """SC-CAM's classifier: the CAM classifier plus a second 1x1 head to n_classes x k
    sub-category scores (sub-category j of class c at index c * k + j), with dropout on the
    pooled features before both heads. CAMs come from the parent head, as in Classifier."""

    def __init__(self, n_classes: int, k: int, backbone: Backbone, dropout: float = 0.5):
        super().__init__(n_classes, backbone)
        self.arch.update(k=k, dropout=dropout)
        self.dropout = nn.Dropout(dropout)
        self.sub_head = nn.Conv2d(self.backbone.out_channels, n_classes * k, 1, bias=False)
        # SC-CAM's code (network/resnet38_cls.py) starts both heads with Xavier-uniform weights
        nn.init.xavier_uniform_(self.head.weight)
        nn.init.xavier_uniform_(self.sub_head.weight)

    def both_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(parent scores [N, C], sub-category scores [N, C * k])."""
        f = self.dropout(self.backbone(x).mean(dim=(2, 3), keepdim=True))
        return self.head(f).flatten(1), self.sub_head(f).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.both_heads(x)[0]

    def param_groups(self):
        return {"backbone": list(self.backbone.parameters()),
                "head": [*self.head.parameters(), *self.sub_head.parameters()]}


class SaliencyClassifier(Classifier):
    """EPS's classifier: the head gives C class maps and one background map. Class scores are
    the spatial means of the class maps (the background map has no image label); the CAMs are
    the softmax over all C + 1 maps, so foreground and background compete per pixel."""

    def __init__(self, n_classes: int, backbone: Backbone):
        super().__init__(n_classes, backbone)
        self.arch.update(background_map=True)
        self.head = nn.Conv2d(self.backbone.out_channels, n_classes + 1, 1, bias=False)

    def maps(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [N, C + 1, h, w], background last."""
        return self.head(self.backbone(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.backbone(x).mean(dim=(2, 3), keepdim=True)
        return self.head(f).flatten(1)[:, :-1]

    def cams(self, x: torch.Tensor, class_index: torch.Tensor) -> torch.Tensor:
        """Softmax probabilities [N, K, h, w] of the classes `class_index` among all C + 1 maps."""
        return self.maps(x).softmax(dim=1)[:, class_index]


class AffinityNet(nn.Module):
    """PSA's AffinityNet on a backbone at output stride 8: 1x1 convolutions of its last three
    stages (to 64, 128 and 256 channels, ELU) concatenated and mixed by a 1x1 convolution into
    448-channel features f; the affinity of cells i and j is exp(-mean_c |f_i - f_j|) (PSA's
    code averages the L1 distance over channels)."""

    def __init__(self, backbone: Backbone):
        super().__init__()
        if backbone.output_stride != 8:
            raise ValueError(f"AffinityNet needs a backbone at output stride 8, got {backbone.output_stride}")
        self.arch = {"backbone": backbone.arch}
        self.backbone = backbone
        self.reduce = nn.ModuleList(nn.Conv2d(c, k, 1, bias=False)
                                    for c, k in zip(backbone.stage_channels[1:], (64, 128, 256)))
        self.mix = nn.Conv2d(448, 448, 1, bias=False)
        for conv in self.reduce:
            nn.init.kaiming_normal_(conv.weight)
        nn.init.xavier_uniform_(self.mix.weight, gain=4)  # PSA's initialisation

    def freeze_backbone(self) -> None:
        """Train only the head on fixed backbone features (batch-norm statistics fixed too)."""
        self.backbone.freeze(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features [N, 448, h, w] at stride 8."""
        return self.embed(self.backbone.stages(x)[1:])

    def embed(self, stages) -> torch.Tensor:
        """The affinity features from the backbone's last three stages (stride 8): the head alone."""
        with self.backbone.arithmetic(stages[0]):
            reduced = [F.elu(conv(f)) for conv, f in zip(self.reduce, stages)]
            return widen(F.elu(self.mix(torch.cat(reduced, dim=1))))

    def param_groups(self):
        head = [p for m in (self.reduce, self.mix) for p in m.parameters()]
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        return {"backbone": backbone, "head": head}


class DeepLab(nn.Module):
    """A segmenter on a backbone dilated to output stride 8 (DeepLab's) or 16, with one of
    DeepLab's heads:

    largefov  DeepLab v1 LargeFOV: 3x3 convolution with dilation 12 to 1024 channels, 1x1 to
              1024, ReLU and dropout after each, then 1x1 to the classes
    aspp      DeepLab v2 ASPP: four parallel 3x3 convolutions to the classes with dilations
              6, 12, 18, 24, summed
    The dilations are DeepLab's at stride 8; at stride 16 they are halved, so that each field
    of view covers the same pixels. Logits come at the backbone's stride; `forward` upsamples
    them to the input size.
    """

    HEADS = ("largefov", "aspp")

    OUTPUT_STRIDES = (8, 16)

    def __init__(self, n_classes: int, head: str, backbone: Backbone, rates=None, dropout: float = 0.5):
        super().__init__()
        if head not in self.HEADS:
            raise ValueError(f"unknown segmenter head {head!r}; choose one of {self.HEADS}")
        if backbone.output_stride not in self.OUTPUT_STRIDES:
            raise ValueError(f"DeepLab needs a backbone at output stride 8 or 16, got {backbone.output_stride}")
        shrink = backbone.output_stride // 8
        rates = tuple(rates) if rates is not None else tuple(r // shrink for r in (6, 12, 18, 24))
        self.arch = {"n_classes": n_classes, "head": head, "backbone": backbone.arch, "rates": list(rates),
                     "dropout": dropout}
        self.backbone = backbone
        c = self.backbone.out_channels
        if head == "largefov":
            fov = 12 // shrink
            self.head = nn.Sequential(nn.Conv2d(c, 1024, 3, padding=fov, dilation=fov), nn.ReLU(inplace=True),
                                      nn.Dropout2d(dropout), nn.Conv2d(1024, 1024, 1), nn.ReLU(inplace=True),
                                      nn.Dropout2d(dropout), nn.Conv2d(1024, n_classes, 1))
        else:
            self.head = nn.ModuleList(nn.Conv2d(c, n_classes, 3, padding=r, dilation=r) for r in rates)
        for m in self.head.modules():
            if isinstance(m, nn.Conv2d):  # DeepLab initialises its new layers with N(0, 0.01)
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)
        if head == "largefov":
            # LargeFOV's fc6 / fc7 come from VGG's ImageNet fc layers in DeepLab; here they start
            # from nothing, and at N(0, 0.01) their ReLU stack passes almost no signal: He's init
            for m in (self.head[0], self.head[3]):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores [N, C, h, w] at the backbone's stride."""
        f = self.backbone(x)
        with self.backbone.arithmetic(f):
            if isinstance(self.head, nn.ModuleList):
                return widen(torch.stack([branch(f) for branch in self.head]).sum(0))
            return widen(self.head(f))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.logits(x), size=x.shape[-2:], mode="bilinear", align_corners=False)

    def param_groups(self):
        return {"backbone": list(self.backbone.parameters()), "head": list(self.head.parameters())}


def atomic_torch_save(obj, path) -> None:
    """torch.save that leaves either the old file or the whole new one, never half of it."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def save_model(model: nn.Module, path, extra: dict | None = None) -> None:
    atomic_torch_save({"arch": model.arch, "state_dict": model.state_dict(), **(extra or {})}, path)


def cpu_channels_last(model: nn.Module, device) -> nn.Module:
    """`model` with its weights in channels-last layout when `device` is a CPU (unchanged
    otherwise): in that layout PyTorch gives a CPU convolution its fast kernels, where the default
    layout sends a one-image 1x1 convolution at one thread to a slow generic route. Outputs and
    gradients are the same to float rounding; every trainer and every forward-only load uses it."""
    return model.to(memory_format=torch.channels_last) if torch.device(device).type == "cpu" else model


def load_saved(path, build, what: str, device, forward_only: bool = False):
    """Rebuild a model saved by save_model with build(arch), in eval mode; errors name the file.
    `forward_only`, for stages that only run the model forward: the backbone's batch norms folded
    into its convolutions (Backbone.fold_batch_norms, about 15 % less time) and cpu_channels_last
    (1.2-1.8x at photo size, MobileNetV2 at one and two threads). PRM's back-propagation folds
    by its own rule (prm.fold_batch_norms_for_peaks: its excitation rule reads each convolution)."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        model = build(saved["arch"])
        model.load_state_dict(saved["state_dict"])
    except Exception as e:  # a missing, foreign or damaged file fails in many ways; all mean the same
        raise ValueError(f"{path}: not {what} saved by this pipeline ({type(e).__name__}: {e})") from None
    model.eval()
    if forward_only:
        model.backbone.fold_batch_norms()
        cpu_channels_last(model, device)
    model.to(device)
    return model, {k: v for k, v in saved.items() if k not in ("arch", "state_dict")}


def init_from_classifier(model: nn.Module, classifier_path, config_key: str) -> Classifier:
    """Start `model`'s backbone from the trained CAM classifier's (a stand-in for ImageNet
    weights when none are available); dilation is structure, not weights, so strides may differ.
    Returns the classifier, for callers that take more of it."""
    classifier, _ = load_classifier(classifier_path)
    theirs, ours = classifier.arch["backbone"]["name"], model.arch["backbone"]["name"]
    if theirs != ours:
        raise ValueError(f"{config_key}.init_from_classifier: the classifier's backbone is {theirs}, "
                         f"{config_key}.backbone.name is {ours}")
    if classifier.backbone.feature_layer != model.backbone.feature_layer:
        raise ValueError(f"{config_key}.init_from_classifier: the classifier's features end at its "
                         f"{classifier.backbone.feature_layer} (classifier.fit: lbfgs, whose backbone is ImageNet's "
                         f"unchanged): start {config_key} from backbone.weights instead")
    model.backbone.load_state_dict(classifier.backbone.state_dict())
    return classifier


def _build_classifier(arch: dict) -> Classifier:
    backbone = from_arch(arch["backbone"])
    if arch.get("background_map"):
        return SaliencyClassifier(arch["n_classes"], backbone)
    if "k" in arch:
        return SubCategoryClassifier(arch["n_classes"], arch["k"], backbone, dropout=arch["dropout"])
    return Classifier(arch["n_classes"], backbone)


def load_classifier(path, device="cpu", forward_only: bool = False) -> tuple[Classifier, dict]:
    """A classifier saved by train_classifier (or an SC-CAM round's, with its sub-category
    head, or EPS's, with its background map), in eval mode, and the saved dict's extras."""
    return load_saved(path, _build_classifier, "a classifier", device, forward_only)


def load_affinity_net(path, device="cpu", forward_only: bool = False) -> tuple[AffinityNet, dict]:
    """The AffinityNet saved by train_affinity, in eval mode, and the saved dict's extras."""
    return load_saved(path, lambda a: AffinityNet(from_arch(a["backbone"])), "an AffinityNet", device, forward_only)


def load_segmenter(path, device="cpu", forward_only: bool = False) -> tuple[DeepLab, dict]:
    """A saved DeepLab segmenter, in eval mode, and the saved dict's extras."""
    return load_saved(path, lambda a: DeepLab(a["n_classes"], a["head"], from_arch(a["backbone"]), rates=a["rates"],
                                              dropout=a["dropout"]), "a segmenter", device, forward_only)
