"""The device a job computes on.

A job uses the GPUs it was given. SLURM (like any scheduler) sets CUDA_VISIBLE_DEVICES to the
job's allocation, so a job that sees one GPU uses it. A job that sees several -- a local run on
a multi-GPU machine, where Snakemake gives GPU jobs no particular device -- takes the first one
that no other job of this user holds: each GPU has a lock file that the job holds (flock) for
its lifetime and that the kernel releases when the process ends, however it ends. With
`--resources gpu=N` (N = the number of GPUs) no job waits; with more GPU jobs than GPUs the
extra ones wait for a GPU to be released.
"""
from __future__ import annotations

import fcntl
import logging
import os
import re
import tempfile
import time
from functools import cache
from pathlib import Path

import torch

log = logging.getLogger(__name__)

LOCK_DIR_ENV = "WSSS_GPU_LOCK_DIR"
_held: list = []  # this process's open lock files; closing one releases its GPU
_claimed: int | None = None  # the visible GPU this process took (one per process)
PRECISIONS = ("float32", "bfloat16")  # a network's arithmetic (backbone.precision, saliency.u2netp.precision)


def lock_dir() -> Path:
    """Where the GPU lock files are: $WSSS_GPU_LOCK_DIR, else one folder per user in the temp dir."""
    return Path(os.environ.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir()) / f"wsss-gpu-locks-{os.getuid()}")


def visible_gpu_names(count: int) -> list[str]:
    """A name per visible GPU that is the same for every process on the machine: the entries of
    CUDA_VISIBLE_DEVICES (visible index 0 may be physical GPU 2), else the indices."""
    entries = [e.strip() for e in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if e.strip()]
    return entries[:count] if len(entries) >= count else [str(i) for i in range(count)]


def claim_gpu(names: list[str], directory: Path, poll_seconds: float = 5.0) -> int:
    """Index into `names` of a GPU no other holder has locked; waits while all are held."""
    directory.mkdir(parents=True, exist_ok=True)
    waiting_since = None
    while True:
        for index, name in enumerate(names):
            lock = open(directory / f"gpu-{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.lock", "a")
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.close()
                continue
            _held.append(lock)
            if waiting_since is not None:
                log.info("GPU %s free after %.0f s", name, time.monotonic() - waiting_since)
            return index
        if waiting_since is None:
            waiting_since = time.monotonic()
            log.info("all %d GPUs are held by other jobs (lock files in %s); waiting for one", len(names), directory)
        time.sleep(poll_seconds)


def pick_device(preference: str = "auto") -> torch.device:
    """cuda when asked for (or available under auto), else cpu; see the module docstring for
    which GPU."""
    global _claimed
    if preference == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("compute.device is cuda but no CUDA device is visible to this job")
    if preference == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    count = torch.cuda.device_count()
    if count == 1:
        return torch.device("cuda")
    if _claimed is None:
        names = visible_gpu_names(count)
        _claimed = claim_gpu(names, lock_dir())
        torch.cuda.set_device(_claimed)
        log.info("this job computes on GPU %s (visible index %d of %d)", names[_claimed], _claimed, count)
    return torch.device(f"cuda:{_claimed}")


def autocast(device: torch.device, precision: str):
    """A context in which convolutions and matrix products on `device` run in `precision`: bfloat16
    by torch's autocast (mixed precision: weights and other operations stay float32), or float32."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16")


def widen(t: torch.Tensor) -> torch.Tensor:
    """A tensor that autocast left in bfloat16 as float32; any other as it is (float64 stays)."""
    return t.float() if t.dtype == torch.bfloat16 else t


def native_bfloat16() -> bool:
    """Whether this CPU has bfloat16 instructions that oneDNN uses (AVX512-BF16, AMX); False where
    torch was built without oneDNN (the query is a private operator)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def checked_precision(precision: str, key: str) -> str:
    """`precision` when it is one of PRECISIONS, else a ValueError naming the config `key`;
    bfloat16 on a CPU without its instructions is logged, once a process and key."""
    if precision not in PRECISIONS:
        raise ValueError(f"{key} must be one of {PRECISIONS}, got {precision!r}")
    if precision == "bfloat16":
        warn_without_native_bfloat16(key)
    return precision


@cache
def warn_without_native_bfloat16(key: str) -> None:
    """A CPU without bfloat16 instructions emulates them (oneDNN), slower than float32."""
    if not native_bfloat16():
        log.warning("%s: bfloat16, but this CPU has no bfloat16 instructions (AVX512-BF16 or AMX): its networks "
                    "run emulated, slower than in float32 (a GPU job is not affected)", key)
