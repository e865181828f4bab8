"""`python -m pipeline benchmark-backbones`: speed of each registered backbone at VOC size, as
the CAM classifier uses it: training steps on 320 x 320 crops (batch 8, SGD, batch norm fixed,
with and without the first three stages frozen; in the default layout and in channels-last, the
trainers' on a CPU) and CAM inference on 500 x 375 images (scales
1.0 / 0.5 / 1.5 with flips, as config/voc_sample.yaml), in images per second, measured in one
process with the same threads; then a head learning on a fixed backbone (AffinityNet's and the
photo segmenters' setting) with its frozen part folded and not, and with malloc keeping freed
memory and not (each in a new process); then float32 against bfloat16 (`backbone.precision`).
Random weights: speed does not depend on them.
"""
from __future__ import annotations

import time

DEFAULT_BACKBONES = ("mobilenet_v2", "efficientnet_lite0", "efficientnet_lite2", "resnet18", "resnet50")


def _rate(step, n_images: int, seconds: float) -> float:
    step()  # warm-up
    done, start = 0, time.perf_counter()
    while done == 0 or time.perf_counter() - start < seconds:
        step()
        done += n_images
    return done / (time.perf_counter() - start)


CROPS = 8  # a training batch: crops of 320 x 320


def _sgd_step(model, device):
    """One SGD step (momentum 0.9) of `model`'s learning parameters on CROPS random crops with a
    20-class multi-label target: what every training measurement here repeats."""
    import torch

    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
    crops, target = torch.rand(CROPS, 3, 320, 320, device=device), torch.zeros(CROPS, 20, device=device)
    target[:, 3] = 1

    def train_step():
        loss = torch.nn.functional.multilabel_soft_margin_loss(model(crops), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return train_step


def _cam_step(model, device):
    """CAMs of a random 500 x 375 image at scales 1.0 / 0.5 / 1.5 with flips (config/voc_sample.yaml's)."""
    import torch

    from .make_cams import multiscale_cams

    rgb = (torch.rand(375, 500, 3) * 255).byte().numpy()
    return lambda: multiscale_cams(model, rgb, [3], [1.0, 0.5, 1.5], True, device)


def backbone_speed(name: str, output_stride: int = 16, frozen_stages: int = 0, seconds: float = 5.0,
                   device: str = "cpu") -> dict:
    """Training images per second in the default layout and in channels-last (what every trainer
    takes on a CPU, nets.cpu_channels_last), then CAM images per second in channels-last."""
    import torch

    from .backbones import Backbone
    from .nets import Classifier

    torch.manual_seed(0)
    model = Classifier(20, Backbone(name, output_stride, freeze_bn=True, frozen_stages=frozen_stages)).to(device)
    train_step = _sgd_step(model, device)
    model.train()
    train_default = _rate(train_step, CROPS, seconds)
    model.to(memory_format=torch.channels_last)
    train = _rate(train_step, CROPS, seconds)
    model.eval()
    cams = _rate(_cam_step(model, device), 1, seconds)
    return {"backbone": name, "output_stride": output_stride, "frozen_stages": frozen_stages,
            "train_images_per_s": train, "train_default_layout_images_per_s": train_default,
            "cam_images_per_s": cams}


def fixed_backbone_speed(name: str, output_stride: int, seconds: float = 5.0, device: str = "cpu") -> dict:
    """Training images per second of a head on a fixed backbone (frozen_stages 4: AffinityNet's
    and the photo segmenters' setting), its frozen part run with its batch norms folded (what the
    trainers do) and unfolded, alternately in this process, in channels-last."""
    import torch

    from .backbones import Backbone
    from .nets import Classifier, cpu_channels_last

    torch.manual_seed(0)
    model = cpu_channels_last(Classifier(20, Backbone(name, output_stride, frozen_stages=4)).to(device), device)
    train_step = _sgd_step(model, device)  # the head alone learns
    model.train()
    rates = {True: [], False: []}
    for _ in range(2):
        for fold in (False, True):
            model.backbone.fold_frozen = fold
            rates[fold].append(_rate(train_step, CROPS, seconds / 2))
    return {"backbone": name, "output_stride": output_stride, "frozen_stages": 4,
            "train_images_per_s": sum(rates[True]) / 2, "train_unfolded_images_per_s": sum(rates[False]) / 2}


def _speed_in_fresh_process(job: tuple) -> float:
    """fixed_backbone_speed's folded rate in this (new) process, malloc told to keep freed memory
    (what every stage does) or left at its default."""
    keep, name, stride, seconds, cores = job
    import torch

    from .training import keep_freed_memory

    torch.set_num_threads(cores)
    if keep:
        keep_freed_memory()
    return fixed_backbone_speed(name, stride, seconds)["train_images_per_s"]


def allocator_speed(name: str, output_stride: int, seconds: float, cores: int) -> dict:
    """fixed_backbone_speed with malloc keeping freed memory (training.keep_freed_memory) and at
    its default, each in a new process (the setting cannot be undone in one), alternating twice."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    rates = {True: [], False: []}
    for _ in range(2):
        for keep in (False, True):
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                rates[keep].append(pool.submit(_speed_in_fresh_process, (keep, name, output_stride, seconds,
                                                                         cores)).result())
    return {"backbone": name, "output_stride": output_stride, "train_images_per_s": sum(rates[True]) / 2,
            "train_malloc_default_images_per_s": sum(rates[False]) / 2}


def precision_speed(name: str, output_stride: int, seconds: float, device: str = "cpu") -> dict:
    """Images per second in float32 and in bfloat16 (backbone.precision), alternating twice in this
    process: a head learning on the fixed backbone (folded, channels-last, as the trainers run
    it), and CAMs (500 x 375, three scales with flips) of that network in eval mode."""
    import torch

    from .backbones import Backbone
    from .nets import Classifier, cpu_channels_last

    torch.manual_seed(0)
    model = cpu_channels_last(Classifier(20, Backbone(name, output_stride, frozen_stages=4)).to(device), device)
    train_step, cam_step = _sgd_step(model, device), _cam_step(model, device)
    rates = {(p, what): [] for p in ("float32", "bfloat16") for what in ("train", "cam")}
    for _ in range(2):
        for precision in ("float32", "bfloat16"):
            model.backbone.precision = precision
            model.train()
            rates[precision, "train"].append(_rate(train_step, CROPS, seconds / 4))
            model.eval()
            rates[precision, "cam"].append(_rate(cam_step, 1, seconds / 4))
    return {"backbone": name, "output_stride": output_stride,
            **{f"{what}_{p}_images_per_s": sum(v) / 2 for (p, what), v in rates.items()}}


def main(args) -> list[dict]:
    from .training import configure_torch

    configure_torch(args.cores)  # as every stage runs
    rows = []
    print(f"backbone speed ({args.cores} threads; training: crops 320, batch 8, in the default layout and in "
          f"channels-last, as the trainers run; CAMs: 500 x 375, 3 scales x flip)")
    print(f"  {'backbone':<20} {'frozen stages':>13} {'train img/s':>12} {'default layout':>15} {'CAM img/s':>10}")
    for name in args.backbones:
        for frozen in (0, 3):
            r = backbone_speed(name, 16, frozen, args.seconds)
            rows.append(r)
            print(f"  {name:<20} {frozen:>13} {r['train_images_per_s']:>12.2f} "
                  f"{r['train_default_layout_images_per_s']:>15.2f} {r['cam_images_per_s']:>10.2f}", flush=True)
    print("fixed backbone (frozen_stages 4, a head learning; crops 320, batch 8, channels-last): its frozen "
          "part folded, as the trainers run it, and not folded")
    print(f"  {'backbone':<20} {'output stride':>13} {'train img/s':>12} {'not folded':>11} {'ratio':>6}")
    for name in args.backbones:
        for stride in (8, 16):  # AffinityNet's, the segmenters'
            r = fixed_backbone_speed(name, stride, args.seconds)
            rows.append(r)
            folded, unfolded = r["train_images_per_s"], r["train_unfolded_images_per_s"]
            print(f"  {name:<20} {stride:>13} {folded:>12.2f} {unfolded:>11.2f} {folded / unfolded:>6.2f}", flush=True)
    print("the same, folded, with malloc keeping freed memory (every stage's setting) and at its default, "
          "each in a new process")
    print(f"  {'backbone':<20} {'output stride':>13} {'train img/s':>12} {'malloc default':>15} {'ratio':>6}")
    for name in args.backbones:
        for stride in (8, 16):
            r = allocator_speed(name, stride, args.seconds, args.cores)
            rows.append(r)
            kept, default = r["train_images_per_s"], r["train_malloc_default_images_per_s"]
            print(f"  {name:<20} {stride:>13} {kept:>12.2f} {default:>15.2f} {kept / default:>6.2f}", flush=True)
    print("backbone.precision: float32 and bfloat16 alternating in one process (a head learning on the fixed "
          "backbone as above; CAMs as in the first table)")
    print(f"  {'backbone':<20} {'output stride':>13} {'train f32':>10} {'bf16':>7} {'ratio':>6} "
          f"{'CAM f32':>8} {'bf16':>7} {'ratio':>6}")
    for name in args.backbones:
        for stride in (8, 16):
            r = precision_speed(name, stride, args.seconds)
            rows.append(r)
            t32, t16 = r["train_float32_images_per_s"], r["train_bfloat16_images_per_s"]
            c32, c16 = r["cam_float32_images_per_s"], r["cam_bfloat16_images_per_s"]
            print(f"  {name:<20} {stride:>13} {t32:>10.2f} {t16:>7.2f} {t16 / t32:>6.2f} "
                  f"{c32:>8.2f} {c16:>7.2f} {c16 / c32:>6.2f}", flush=True)
    return rows
