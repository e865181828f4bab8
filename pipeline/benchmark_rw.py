"""`python -m pipeline benchmark-rw`: the sparse random walk against the dense one, and the CRF.

On a VOC-sized input (500 x 375 image, 448-channel AffinityNet features on the stride-4 or
stride-8 grid, 3 class maps, radius 5, beta 8, logt 8) each method runs in a fresh process:
the time of the walk (affinities from the features, transition, 2^logt steps) and its peak
memory above the process's memory before the walk (Linux VmHWM after resetting it). Both
start from the same features, so the outputs are compared too: argmax agreement and the
largest difference. The dense way is the public codes' (N x N transition squared logt times).
Then the dense CRF (PSA profile) on the same image size: images per second in one process and
with every core.
"""
from __future__ import annotations

import multiprocessing
import os
import time

import numpy as np

IMAGE = (375, 500)  # height, width of a typical VOC image


def _features(stride: int, seed: int = 0):
    """Piecewise-smooth features (regions of alike cells) and 3 class maps on the grid."""
    import torch
    import torch.nn.functional as F

    h, w = -(-IMAGE[0] // stride), -(-IMAGE[1] // stride)
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(1, 448, 6, 8, generator=g)
    f = F.interpolate(coarse, size=(h, w), mode="nearest")[0] + 0.1 * torch.randn(448, h, w, generator=g)
    maps = F.interpolate(torch.rand(1, 3, 6, 8, generator=g) ** 4, size=(h, w), mode="bilinear")[0]
    return f, maps


def _peak_rss_reset():
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def _walk_worker(args):
    method, stride, threads = args
    import torch

    from .random_walk import random_walk, random_walk_dense

    torch.set_num_threads(threads)
    f, maps = _features(stride)
    fn = random_walk if method == "sparse" else random_walk_dense
    fn(f[:, :8, :8], maps[:, :8, :8], 5, 8.0, 8)  # warm-up of the kernels, tiny
    resettable = _peak_rss_reset()
    before = _status_kib("VmRSS")
    start = time.perf_counter()
    out = fn(f, maps, 5, 8.0, 8)
    seconds = time.perf_counter() - start
    peak = _status_kib("VmHWM") - before if resettable else float("nan")
    return {"seconds": seconds, "peak_mib": peak / 1024, "grid": tuple(maps.shape[1:]), "out": out.numpy()}


def _crf_job(args):
    from .crf import dense_crf

    rgb, scores, profile = args
    return dense_crf(rgb, scores, profile).argmax(0)


def crf_speed(cores: int, n_images: int) -> dict:
    from .config import resolve
    from .crf import parallel_map

    profile = resolve({})["crf"]["profiles"]["psa"]
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (*IMAGE, 3), dtype=np.uint8)
    scores = rng.random((4, *IMAGE)).astype(np.float32)
    jobs = [(rgb, scores, profile)] * n_images
    out = {}
    for workers in sorted({1, cores}):
        list(parallel_map(_crf_job, jobs[:workers], workers))  # start the workers
        start = time.perf_counter()
        list(parallel_map(_crf_job, jobs, workers))
        out[workers] = n_images / (time.perf_counter() - start)
    return out


def main(args) -> dict:
    ctx = multiprocessing.get_context("spawn")
    results = {}
    for stride in args.strides:
        for method in ("sparse", "dense"):
            print(f"random walk, {method}, stride {stride} ...", flush=True)
            with ctx.Pool(1) as pool:  # a fresh process per measurement: its own peak memory
                results[method, stride] = pool.apply(_walk_worker, ((method, stride, args.cores),))
    crf = crf_speed(args.cores, args.crf_images)

    print(f"\nbenchmark-rw ({args.cores} threads, {os.cpu_count()} CPUs visible; image {IMAGE[1]}x{IMAGE[0]}, "
          "448 feature channels, 3 class maps, radius 5, beta 8, logt 8)")
    rows = []
    for stride in args.strides:
        s, d = results["sparse", stride], results["dense", stride]
        same = (s["out"].argmax(0) == d["out"].argmax(0)).mean()
        diff = np.abs(s["out"] - d["out"]).max() / max(np.abs(d["out"]).max(), 1e-12)
        n = s["grid"][0] * s["grid"][1]
        rows += [(f"stride {stride} ({s['grid'][0]}x{s['grid'][1]} = {n} cells) sparse",
                  f"{s['seconds']:.2f} s, peak +{s['peak_mib']:.0f} MiB"),
                 (f"stride {stride} dense (N x N = {n * n * 4 / 2 ** 20:.0f} MiB)",
                  f"{d['seconds']:.2f} s, peak +{d['peak_mib']:.0f} MiB"),
                 (f"stride {stride} sparse vs dense",
                  f"{d['seconds'] / s['seconds']:.0f}x faster, {d['peak_mib'] / max(s['peak_mib'], 1e-9):.0f}x less "
                  f"memory; same argmax {100 * same:.3f} %, max rel. difference {diff:.1e}")]
    for workers, ips in crf.items():
        rows.append((f"dense CRF (psa profile, 4 labels), {workers} process{'es' if workers > 1 else ''}",
                     f"{ips:.2f} images/s"))
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"  {name.ljust(width)}  {value}")
    return {"walk": {f"{m}_stride{st}": {k: v for k, v in r.items() if k != "out"} for (m, st), r in results.items()},
            "crf_images_per_s": crf}
