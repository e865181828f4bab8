"""What every training stage shares: device choice, SGD with a poly schedule, resumable checkpoints.

A checkpoint holds the model, the optimiser, the step and a `run_hash` of everything that
defines the run (parameters, code, data); a rerun resumes from it only when the hash is the
same, and starts over otherwise. Checkpoints live outside the declared outputs, so
Snakemake does not delete them when a job is killed.
"""
from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import torch

from .atomic import write_text
from .data import collate, epoch_batches
from .devices import pick_device
from .logs import progress
from .nets import atomic_torch_save, cpu_channels_last, save_model

log = logging.getLogger(__name__)


# glibc's malloc: blocks up to this size come from the heap, and up to twice it of freed memory
# stays there. Its default (128 KiB, raised as blocks are freed) hands each large activation a
# fresh mapping, zeroed page by page by the kernel: with 256 MiB a fixed-backbone training step
# runs 1.15x (AffinityNet, Lite2) to 1.3x (DeepLab, MobileNetV2) faster (8 alternations; the photo
# run's jobs 1.21x / 1.40x), for 0.1-0.7 GB more peak memory (2026-12-07, docs/backbones.md)
MALLOC_KEEP_BYTES = 256 * 2 ** 20


def keep_freed_memory(size: int = MALLOC_KEEP_BYTES) -> bool:
    """Tell glibc's malloc to serve blocks up to `size` from the heap and keep freed memory for
    reuse (mallopt's M_MMAP_THRESHOLD and M_TRIM_THRESHOLD). False where the C library has no
    mallopt or refuses the values (macOS, for one): nothing changes there."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    return bool(mallopt(m_mmap_threshold, size)) and bool(mallopt(m_trim_threshold, 2 * size))


def configure_torch(threads: int) -> None:
    """A stage's torch work: its CPU threads, and malloc keeping freed memory for the next tensor."""
    torch.set_num_threads(max(1, int(threads)))
    keep_freed_memory()


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


def _get_rng() -> dict:
    return {"cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _set_rng(rng: dict | None) -> None:
    if rng is None:
        return
    torch.set_rng_state(rng["cpu"])
    if rng["cuda"] is not None and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(rng["cuda"])


def fit(*, model, optimizer, dataset, step_loss, cfg: dict, seed: int, compute: dict, run_hash: str,
        checkpoint_path, problems, device, desc: str, lr_config: str) -> list[dict]:
    """Train `model` for cfg["epochs"] epochs of cfg["batch_size"] (or cfg["iterations"] steps
    when the config counts in iterations, as DeepLab's does), resumably; return the history.

    `step_loss(model, batch)` returns (loss tensor, {name: float} of parts to log); the batch's
    tensors are already on `device`. The poly schedule runs over every step; a checkpoint is
    written at each epoch end and every compute["checkpoint_minutes"], and a rerun of the same
    `run_hash` resumes from it with exactly the batches (and random state) an uninterrupted run
    would see. Unreadable images go to `problems`.
    """
    steps_per_epoch = len(epoch_batches(len(dataset), cfg["batch_size"], seed, 0))
    total = cfg.get("iterations") or cfg["epochs"] * steps_per_epoch
    n_epochs = math.ceil(total / steps_per_epoch)
    state = {"step": 0, "history": [], "problems": [], "sums": {}, "epoch_images": 0}
    ckpt = load_checkpoint(checkpoint_path, run_hash)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        state = ckpt["state"]
        _set_rng(ckpt.get("rng"))  # dropout continues as it would have
        log.info("resumed from %s at step %d of %d", checkpoint_path, state["step"], total)
    for row in map(tuple, state["problems"]):
        if row not in problems.rows:  # those found before training (missing masks) are there already
            problems.rows.append(row)

    def save_checkpoint():
        state["problems"] = [list(r) for r in problems.rows]
        atomic_torch_save({"run_hash": run_hash, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                           "state": state, "rng": _get_rng()}, checkpoint_path)

    log.info("%s: %d images, %d steps (%d epochs of %d steps), device %s", desc, len(dataset), total,
             n_epochs, steps_per_epoch, device)
    model.train()
    bar = progress(total=total, desc=desc, unit="step")
    bar.update(state["step"])
    last_save = time.monotonic()
    lr = cfg["lr"]
    while state["step"] < total:
        epoch, start = divmod(state["step"], steps_per_epoch)
        dataset.epoch = epoch
        batches = epoch_batches(len(dataset), cfg["batch_size"], seed, epoch)[start:]
        # its own generator: a loader drawing its worker seed from the global RNG would shift
        # the dropout masks of a resumed run against an uninterrupted one
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, collate_fn=collate,
                                             num_workers=compute["num_workers"], generator=torch.Generator())
        t0, timed_images = time.perf_counter(), 0  # images seen by this process, for the throughput
        for batch in loader:
            if state["step"] >= total:  # the last epoch of an iteration count ends early
                break
            batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
            for image_id, path, problem in batch["errors"]:
                if image_id not in problems.ids():
                    problems.add(image_id, path, problem)
            lr = poly_lr(cfg["lr"], state["step"], total, cfg["poly_power"])
            if batch["size"]:
                set_lr(optimizer, lr)
                loss, parts = step_loss(model, batch)
                if not math.isfinite(loss.item()):
                    raise FloatingPointError(f"{desc}: training diverged at step {state['step']} (loss "
                                             f"{loss.item()}); lower {lr_config}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                for name, value in {"loss": loss.item(), **parts}.items():
                    state["sums"][name] = state["sums"].get(name, 0.0) + value * batch["size"]
                state["epoch_images"] += batch["size"]
                timed_images += batch["size"]
                bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{lr:.2e}", refresh=False)
            state["step"] += 1
            bar.update(1)
            if time.monotonic() - last_save > 60 * compute["checkpoint_minutes"] and state["step"] < total:
                save_checkpoint()
                last_save = time.monotonic()
        seconds = time.perf_counter() - t0
        if state["epoch_images"] == 0:
            raise RuntimeError(f"{desc}: epoch {epoch + 1}: no training image could be read (the first "
                               f"problems: {problems.rows[:3]})")
        means = {name: v / state["epoch_images"] for name, v in state["sums"].items()}
        state["history"].append({"epoch": epoch + 1, **means, "lr": lr, "images": state["epoch_images"],
                                 "seconds": round(seconds, 2),
                                 "images_per_s": round(timed_images / max(seconds, 1e-9), 2)})
        state["sums"], state["epoch_images"] = {}, 0
        log.info("epoch %d/%d: %s, %.1f images/s", epoch + 1, n_epochs,
                 ", ".join(f"{k} {v:.4f}" for k, v in means.items()), state["history"][-1]["images_per_s"])
        save_checkpoint()
        last_save = time.monotonic()
    bar.close()
    return state["history"]


def train_model(model, dataset, step_loss, *, cfg: dict, seed: int, compute: dict, run_hash: str, problems,
                model_path, history_path, checkpoint_path, desc: str, lr_config: str, extra: dict) -> list[dict]:
    """What every trainer does around `fit`: SGD on the model's backbone / head groups (head at
    x cfg["head_lr_mult"]), then the model saved with `extra`, the history, the problem report,
    and the checkpoint removed once the outputs are safe."""
    device = pick_device(compute["device"])
    # channels-last on a CPU: a training step 1.08x (ResNet-50) to 1.35x (EfficientNet-Lite2) faster
    # (`python -m pipeline benchmark-backbones`)
    cpu_channels_last(model.to(device), device)
    optimizer = sgd(model.param_groups(), lr=cfg["lr"], mults={"head": cfg["head_lr_mult"]},
                    momentum=cfg["momentum"], weight_decay=cfg["weight_decay"])
    history = fit(model=model, optimizer=optimizer, dataset=dataset, step_loss=step_loss, cfg=cfg, seed=seed,
                  compute=compute, run_hash=run_hash, checkpoint_path=checkpoint_path, problems=problems,
                  device=device, desc=desc, lr_config=lr_config)
    save_model(model.cpu().to(memory_format=torch.contiguous_format), model_path, extra)
    write_text(history_path, json.dumps({"epochs": history}, indent=1))
    problems.write()
    Path(checkpoint_path).unlink(missing_ok=True)
    return history
