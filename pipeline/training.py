"""What every training stage shares: device choice, SGD with a poly schedule, resumable checkpoints.

A checkpoint holds the model, the optimiser, the step and a `run_hash` of everything that
defines the run (parameters, code, data); a rerun resumes from it only when the hash is the
same, and starts over otherwise. Checkpoints live outside the declared outputs, so
Snakemake does not delete them when a job is killed.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from .atomic import atomic_path

log = logging.getLogger(__name__)


def pick_device(preference: str = "auto") -> torch.device:
    """cuda when asked for (or available under auto), else cpu; CUDA_VISIBLE_DEVICES picks the card."""
    if preference == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("compute.device is cuda but no CUDA device is visible to this job")
    if preference == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


def configure_threads(threads: int) -> None:
    torch.set_num_threads(max(1, int(threads)))


def sgd(groups: dict[str, list], lr: float, mults: dict[str, float], momentum: float, weight_decay: float):
    """SGD with one parameter group per name; the group's `lr_mult` scales the poly schedule.

    Arguments are passed by keyword: the optimiser copied across public WSSS code passed
    them positionally and silently trained without momentum.
    """
    param_groups = [{"params": params, "lr": lr * mults.get(name, 1.0), "lr_mult": mults.get(name, 1.0), "name": name}
                    for name, params in groups.items() if params]
    return torch.optim.SGD(param_groups, lr=lr, momentum=momentum, weight_decay=weight_decay)


def poly_lr(base_lr: float, step: int, total_steps: int, power: float) -> float:
    return base_lr * (1.0 - min(step, total_steps) / max(total_steps, 1)) ** power


def set_lr(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)


def atomic_torch_save(obj, path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path, run_hash: str) -> dict | None:
    """The checkpoint at `path` if it belongs to this run, else None (and say why)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a damaged checkpoint is only lost time: start over
        log.warning("ignoring unreadable checkpoint %s (%s); starting over", path, e)
        return None
    if ckpt.get("run_hash") != run_hash:
        log.info("checkpoint %s belongs to other parameters, code or data; starting over", path)
        return None
    return ckpt
