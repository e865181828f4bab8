"""PRM (Zhou et al., CVPR 2018): peak stimulation in training, peak back-propagation at inference.

The network is the CAM classifier (nets.Classifier); only how class scores are made differs.
- Class response maps: the 1x1 head applied before pooling (no ReLU), bilinearly upsampled by
  `sub_pixel_factor` (align_corners, as the paper's code) so that peaks are located finer
  than the stride of the backbone.
- Peak stimulation: peaks are the local maxima of each map in a `window` x `window`
  neighbourhood, kept when at least the map's median (`median_filter`); the class score is
  the mean response at the peaks. The peak positions are found without gradient, so the
  loss reaches the network only through the responses at the peaks.
- Peak back-propagation: from each peak of a present class whose response is at least
  `peak_threshold` x the class's highest peak (the highest one always: the class is in the
  image's label), one backward pass to the input image; the
  peak response map (PRM) is that input gradient summed over the colour channels, clamped at
  0 and normalised (divided by its sum, as the paper's code, for the proposal scores; stored
  scaled to max 1). `backprop: excitation` passes the signal through every convolution by
  the excitation rule of the paper's code (positive weights, inputs shifted to >= 0,
  normalised per output: a winning-probability walk); `gradient` is the plain gradient.
The trained model is saved like the CAM classifier (nets.load_classifier reads it), with
the peak settings among its extras.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import manifest as mf
from .artifacts import ArtifactWriter
from .backbones import build_backbone
from .data import LabelledImages, to_tensor, upsample_scores
from .devices import autocast, pick_device
from .logs import progress
from .nets import Classifier, init_from_classifier, load_classifier
from .problems import ProblemReport, readable_images
from .provenance import file_id, params_hash
from .training import train_model

log = logging.getLogger(__name__)

BACKPROP = ("excitation", "gradient")


# ---------------------------------------------------------------- peak stimulation

def local_peaks(maps: torch.Tensor, window: int = 3, median_filter: bool = True) -> torch.Tensor:
    """bool [N, C, h, w]: positions equal to the maximum of their window x window neighbourhood
    (outside the map counts as -inf), and, with `median_filter`, at least the map's median."""
    if window < 1 or window % 2 == 0:
        raise ValueError(f"prm.window must be an odd number >= 1, got {window}")
    maps = maps.detach()
    peaks = maps == F.max_pool2d(maps, window, stride=1, padding=window // 2)
    if median_filter:
        median = maps.flatten(2).median(dim=2).values[..., None, None]
        peaks &= maps >= median
    return peaks


def peak_stimulation(maps: torch.Tensor, window: int = 3, median_filter: bool = True) -> torch.Tensor:
    """Class scores [N, C]: the mean of each map at its peaks. The peak mask carries no
    gradient, so only the responses at the peaks receive one."""
    peaks = local_peaks(maps, window, median_filter).to(maps.dtype)
    return (maps * peaks).flatten(2).sum(2) / peaks.flatten(2).sum(2).clamp_min(1)


def response_maps(model: Classifier, x: torch.Tensor, sub_pixel_factor: int = 1,
                  normalized: bool = False) -> torch.Tensor:
    """Class response maps [N, C, h*f, w*f] of a classifier: its head before pooling. `x` is
    RGB in 0..1, or the backbone's input already when `normalized`."""
    maps = model.head(model.backbone.features(x) if normalized else model.backbone(x))
    if sub_pixel_factor > 1:
        maps = F.interpolate(maps, scale_factor=sub_pixel_factor, mode="bilinear", align_corners=True)
    return maps


def peak_loss(model: Classifier, images: torch.Tensor, target: torch.Tensor, cfg: dict):
    scores = peak_stimulation(response_maps(model, images, cfg["sub_pixel_factor"]), cfg["window"],
                              cfg["median_filter"])
    return F.multilabel_soft_margin_loss(scores, target), {}


# ---------------------------------------------------------------- peak back-propagation

def conv_input_gradient(weight: torch.Tensor, grad: torch.Tensor, input_shape, stride, padding, dilation,
                        groups: int) -> torch.Tensor:
    """The gradient of conv2d(x, weight, ...) with respect to x, for output gradient `grad`:
    what torch.nn.grad.conv2d_input returns, by the routes that are fast on a CPU. Its generic
    route is slow at batch 1 for depthwise convolutions (10x at stride 2, 15x dilated); the
    same sums are a transposed convolution, at stride 1 a convolution by the flipped kernel,
    and for a 1x1 kernel one matrix product."""
    stride, padding, dilation = (tuple(v) if isinstance(v, (tuple, list)) else (v, v)
                                 for v in (stride, padding, dilation))
    c_out, c_in_group, kh, kw = weight.shape
    if (kh, kw) == (1, 1) and stride == (1, 1) and padding == (0, 0) and groups == 1:
        n, _, h, w = grad.shape
        return (weight[:, :, 0, 0].t() @ grad.reshape(n, c_out, h * w)).reshape(n, c_in_group, h, w)
    if groups > 1 and stride != (1, 1) and grad.dtype == torch.bfloat16:
        # no fast bfloat16 kernel for a strided depthwise convolution's transpose: in float32
        with autocast(grad.device, "float32"):
            return conv_input_gradient(weight.float(), grad.float(), input_shape, stride, padding, dilation,
                                       groups).to(torch.bfloat16)
    reach = (dilation[0] * (kh - 1) - padding[0], dilation[1] * (kw - 1) - padding[1])
    if stride == (1, 1) and min(reach) >= 0:
        # each group's kernel with inputs and outputs swapped, flipped in space
        swapped = weight.reshape(groups, c_out // groups, c_in_group, kh, kw).transpose(1, 2)
        swapped = swapped.reshape(groups * c_in_group, c_out // groups, kh, kw).flip(-2, -1)
        return F.conv2d(grad, swapped, None, 1, reach, dilation, groups)
    # the rows and columns the strided convolution never reached come back as output padding
    extra = tuple(input_shape[2 + i] - ((grad.shape[2 + i] - 1) * stride[i] - 2 * padding[i]
                                        + dilation[i] * (k - 1) + 1) for i, k in enumerate((kh, kw)))
    return F.conv_transpose2d(grad, weight, None, stride, padding, extra, groups, dilation)


def _as_forward(grad: torch.Tensor):
    """The backward pass in the forward's arithmetic: bfloat16 (autocast) where the backbone ran in it
    (backbone.precision; the signal arrives in bfloat16), else float32."""
    return autocast(grad.device, "bfloat16" if grad.dtype == torch.bfloat16 else "float32")


class _ExcitationConv(torch.autograd.Function):
    """A convolution whose backward pass is the excitation rule: the signal g reaching an
    output is shared among its inputs in proportion to (x - min x) * w+ of each. A convolution
    with a batch norm folded into it (fold_batch_norms_for_peaks) shares by its own weights w and
    passes on the norm's scale s, as the convolution and the norm apart: (s g) * w+ ... / norm."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups, unfolded):
        ctx.save_for_backward(x, weight)
        ctx.conv, ctx.unfolded = (stride, padding, dilation, groups), unfolded
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad):
        with _as_forward(grad):
            return _ExcitationConv._backward(ctx, grad)

    @staticmethod
    def _backward(ctx, grad):
        x, weight = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conv
        if not hasattr(ctx, "cache"):
            # the same for every peak back-propagated through one forward pass: computed once,
            # which halves the cost of each further peak; the reciprocal of the normaliser
            # (0 where it vanishes), times a folded norm's scale, makes each peak's share one
            # multiplication
            own, scale = ctx.unfolded if ctx.unfolded is not None else (weight, None)
            shifted = x - x.min()
            positive = own.clamp_min(0)
            norm = F.conv2d(shifted, positive, None, stride, padding, dilation, groups)
            inverse = torch.where(norm > 1e-10, 1.0 / norm.clamp_min(1e-10), torch.zeros_like(norm))
            if scale is not None:
                inverse = inverse * scale.to(inverse.dtype).view(1, -1, 1, 1)
            ctx.cache = shifted, positive, inverse
        shifted, positive, inverse = ctx.cache
        back = conv_input_gradient(positive, grad * inverse, x.shape, stride, padding, dilation, groups)
        # `back` is this call's own tensor (grad may be shared with another branch: not in place)
        return back.mul_(shifted), None, None, None, None, None, None, None


class _GradientConv(torch.autograd.Function):
    """A convolution whose backward pass gives its input's plain gradient by conv_input_gradient's
    routes, which autograd's own takes at batch 1 for depthwise layers only slowly. No gradient
    for the weights: peak back-propagation wants the input's alone."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups, unfolded):
        ctx.save_for_backward(weight)  # a folded norm's scale is in the weights: its gradient is theirs
        ctx.conv, ctx.input_shape = (stride, padding, dilation, groups), x.shape
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad):
        (weight,) = ctx.saved_tensors
        with _as_forward(grad):
            return (conv_input_gradient(weight, grad, ctx.input_shape, *ctx.conv),
                    None, None, None, None, None, None, None)


@contextmanager
def peak_backprop_convolutions(model: nn.Module, backprop: str = "excitation"):
    """Within the block every Conv2d of `model` back-propagates to its input by `backprop`: the
    excitation rule, or the plain gradient (of the input only)."""
    if backprop not in BACKPROP:
        raise ValueError(f"prm.backprop must be one of {BACKPROP}, got {backprop!r}")
    rule = _ExcitationConv if backprop == "excitation" else _GradientConv
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]

    def forward(self, x):
        return rule.apply(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups,
                          getattr(self, "unfolded", None))

    for m in convs:
        m.forward = forward.__get__(m)
    try:
        yield model
    finally:
        for m in convs:
            del m.forward  # back to the class's forward


def _conv_norm_pairs(module: nn.Module):
    """(convolution, batch norm) of `module` where the norm alone reads the convolution's output:
    the pairs torch.fx's `fuse` folds (Backbone.fold_batch_norms), found the same way."""
    traced = torch.fx.symbolic_trace(module)
    named = dict(traced.named_modules())  # the modules themselves, not copies
    for node in traced.graph.nodes:
        if node.op != "call_module" or not isinstance(named[node.target], nn.BatchNorm2d):
            continue
        source = node.args[0]
        if (isinstance(source, torch.fx.Node) and source.op == "call_module" and len(source.users) == 1
                and isinstance(named[source.target], nn.Conv2d) and named[node.target].track_running_stats):
            yield named[source.target], named[node.target]


def fold_batch_norms_for_peaks(model: Classifier) -> Classifier:
    """The backbone's batch norms folded into its convolutions (Backbone.fold_batch_norms) for
    peak back-propagation, in eval mode: each folded convolution keeps its own weights and the
    norm's scale (`unfolded`), from which the excitation rule shares the signal exactly as through
    the convolution and the norm apart, without the norm's backward pass (an eighth of a peak's)
    and with the forward pass's 15 % less. The plain gradient needs only the folded weights."""
    backbone = model.backbone
    for part in (backbone.stem, backbone.head, *backbone.blocks):
        for conv, norm in list(_conv_norm_pairs(part)):
            scale = norm.running_var.add(norm.eps).rsqrt() * (norm.weight if norm.affine else 1.0)
            conv.unfolded = (conv.weight.detach().clone(), scale.detach().clone())
    backbone.fold_batch_norms()
    if any(isinstance(m, nn.BatchNorm2d) for m in backbone.modules()):
        raise RuntimeError("fold_batch_norms_for_peaks: a batch norm was left unfolded; its convolution "
                           "would count its scale twice")
    return model


def select_peaks(maps: torch.Tensor, class_index: list[int], window: int, median_filter: bool,
                 peak_threshold: float) -> list[tuple[int, int, int, float]]:
    """(k, y, x, response) of the peaks of each present class (k indexes `class_index`) whose
    response is at least peak_threshold x the class's highest peak (the highest always),
    strongest first within a class. maps [1, C, h, w]."""
    peaks = local_peaks(maps, window, median_filter)[0]
    chosen = []
    for k, c in enumerate(class_index):
        ys, xs = torch.nonzero(peaks[c], as_tuple=True)
        values = maps[0, c, ys, xs].detach()
        if values.numel() == 0:
            continue
        # the class is in the image's label, so its highest peak is kept even when not positive
        keep = (values >= peak_threshold * values.max()) | (values == values.max())
        order = torch.argsort(values[keep], descending=True)
        for y, x, v in zip(ys[keep][order].tolist(), xs[keep][order].tolist(), values[keep][order].tolist()):
            chosen.append((k, y, x, v))
    return chosen


def predicted_classes(maps: torch.Tensor, cfg: dict) -> list[int]:
    """0-based classes whose peak-stimulated score exceeds cfg["class_threshold"] (PRM's inference
    without image labels; the demo's threshold is 0). maps [1, C, h, w]."""
    scores = peak_stimulation(maps.detach(), cfg["window"], cfg["median_filter"])[0]
    return torch.nonzero(scores > cfg["class_threshold"]).flatten().tolist()


def peak_response_maps(model: Classifier, rgb: np.ndarray, class_index: list[int] | None, cfg: dict,
                       device="cpu") -> dict:
    """The peaks of the image's classes (0-based `class_index`; None: the classes predicted from
    the peak-stimulated scores) and their PRMs at image size.

    Returns classes [K] (0-based, class_index or the predicted ones), peaks int [P, 2] (y, x in
    image pixels), peak_classes [P] (index into classes), peak_scores [P] (responses), prms
    float32 [P, H, W] (each summing to 1, or all 0 when nothing reaches the input), responses
    float32 [K, H, W] (the classes' response maps at image size, for the proposal scores'
    background term)."""
    h, w = rgb.shape[:2]
    # the peaks are back-propagated to the network's (normalised) input, as in the paper
    x = model.backbone.normalize(to_tensor(rgb).to(device)[None]).detach().requires_grad_(True)
    model.eval()
    with torch.enable_grad(), peak_backprop_convolutions(model, cfg["backprop"]):
        maps = response_maps(model, x, cfg["sub_pixel_factor"], normalized=True)
        if class_index is None:
            class_index = predicted_classes(maps, cfg)
        peaks = select_peaks(maps, class_index, cfg["window"], cfg["median_filter"], cfg["peak_threshold"])
        prms = np.zeros((len(peaks), h, w), np.float32)
        for i, (k, py, px, _) in enumerate(peaks):
            x.grad = None
            maps[0, class_index[k], py, px].backward(retain_graph=i + 1 < len(peaks))
            prm = x.grad[0].sum(0).clamp_min(0)
            total = prm.sum()
            prms[i] = (prm / total).cpu().numpy() if total > 0 else 0.0
    mh, mw = maps.shape[-2:]
    # align_corners grid: map position i lies at image coordinate i * (H - 1) / (h - 1)
    locations = np.array([[round(py * (h - 1) / max(mh - 1, 1)), round(px * (w - 1) / max(mw - 1, 1))]
                          for _, py, px, _ in peaks], np.int32).reshape(-1, 2)
    keys = torch.as_tensor(class_index, dtype=torch.long, device=maps.device)
    responses = (upsample_scores(maps.detach()[0, keys].cpu(), (h, w)).numpy() if class_index
                 else np.zeros((0, h, w), np.float32))
    return {"classes": list(class_index), "peaks": locations, "peak_classes": np.array([p[0] for p in peaks], np.int64),
            "peak_scores": np.array([p[3] for p in peaks], np.float32), "prms": prms, "responses": responses}


# ---------------------------------------------------------------- stages

def train(*, manifest_path, classifier_path, classes, cfg: dict, prm: dict, seed: int, compute: dict,
          code_hash: str, model_path, history_path, problems_path, checkpoint_path) -> None:
    """Train the classifier with peak stimulation; `cfg` is the CAM classifier's recipe (epochs
    already set), `prm` the method's block; `classifier_path` (or None) gives the starting weights."""
    records = mf.read_tsv(manifest_path)
    peak_cfg = {k: prm[k] for k in ("window", "median_filter", "sub_pixel_factor")}
    run_hash = params_hash({"cfg": cfg, "peaks": peak_cfg, "seed": seed, "code": code_hash, "classes": list(classes),
                            "data": mf.digest(records), "init": file_id(classifier_path) if classifier_path else None})
    torch.manual_seed(seed)
    model = Classifier(len(classes), build_backbone(cfg["backbone"], cfg["output_stride"],
                                                    load_weights=not classifier_path))
    if classifier_path:
        classifier = init_from_classifier(model, classifier_path, "prm")
        model.head.load_state_dict(classifier.head.state_dict())
        log.info("backbone and head start from %s", classifier_path)
    train_model(model, LabelledImages(records, len(classes), cfg, seed, fill=model.backbone.normalization["mean"]),
                lambda m, batch: peak_loss(m, batch["image"], batch["target"], peak_cfg), cfg=cfg, seed=seed,
                compute=compute, run_hash=run_hash, problems=ProblemReport(problems_path), model_path=model_path,
                history_path=history_path, checkpoint_path=checkpoint_path, desc="train_prm",
                lr_config="classifier.lr", extra={"classes": list(classes), "peak_stimulation": peak_cfg})


def run_peaks(*, manifest_path, model_path, cfg: dict, device: str, code_hash: str, split: str, shard: str,
              out_path, problems_path) -> None:
    """Stage prm_peaks: per image peaks [P, 2], peak_classes [P] (class values 1..C),
    peak_scores [P], prms [P, H, W] (float16, max 1), responses [K, H, W] and keys [K]."""
    records = mf.read_tsv(manifest_path)
    dev = pick_device(device)
    model, saved = load_classifier(model_path, dev)
    model.requires_grad_(False)  # only the input's gradient is wanted (1.5x faster with backprop: gradient)
    fold_batch_norms_for_peaks(model)  # the same maps, 1.1x faster (bfloat16, MobileNetV2 on photos)
    problems = ProblemReport(problems_path)
    n_peaks = 0
    by_labels = cfg["classes"] == "labels"
    with ArtifactWriter(out_path, stage="prm_peaks", split=split, shard=shard, classes=saved["classes"],
                        params=cfg, code_hash=code_hash) as out:
        for r, rgb in readable_images(progress(records, desc=f"prm_peaks {split}/{shard}", unit="img"), problems):
            found = peak_response_maps(model, rgb, [v - 1 for v in r.labels] if by_labels else None, cfg, dev)
            peak_max = found["prms"].max(axis=(1, 2), initial=0)
            scaled = found["prms"] / np.maximum(peak_max, 1e-30)[:, None, None]
            labels = np.asarray([c + 1 for c in found["classes"]], np.uint8)
            n_peaks += len(found["peaks"])
            out.add(r.image_id, {"image_path": r.image, "mask_path": r.mask, "instances_path": r.instances,
                                 "height": rgb.shape[0], "width": rgb.shape[1]},
                    peaks=found["peaks"], peak_classes=labels[found["peak_classes"]].reshape(-1),
                    peak_scores=found["peak_scores"], prms=scaled.astype(np.float16),
                    responses=found["responses"].astype(np.float16), keys=labels)
    log.info("%s: %d peaks in %d images", shard, n_peaks, len(records))
    problems.write()
