"""Stage train_classifier: the multi-label classifier whose CAMs seed every method.

Multi-label soft-margin loss on image-level labels, SGD (momentum really on) with a poly
learning rate and the head at x`head_lr_mult`, random rescale / flip / colour jitter / crop.
Resumable: killed mid-training, a rerun continues from the last checkpoint when the
parameters, code and data are unchanged.
"""
from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from . import manifest as mf
from .atomic import write_text
from .data import LabelledImages, collate, epoch_batches
from .logs import progress
from .nets import Classifier, save_model
from .problems import ProblemReport
from .provenance import params_hash
from .training import atomic_torch_save, load_checkpoint, pick_device, poly_lr, set_lr, sgd

log = logging.getLogger(__name__)


def run(*, manifest_path, classes, cfg: dict, seed: int, compute: dict, code_hash: str,
        model_path, history_path, problems_path, checkpoint_path) -> None:
    """Train on the manifest's images; `compute` (device, num_workers, checkpoint_minutes) says
    how to run and is not part of the run's identity: a checkpoint resumes on another device."""
    records = mf.read_tsv(manifest_path)
    run_hash = params_hash({"cfg": cfg, "seed": seed, "code": code_hash, "classes": list(classes),
                            "data": mf.digest(records)})
    dev = pick_device(compute["device"])
    torch.manual_seed(seed)
    model = Classifier(len(classes), cfg["depth"], cfg["output_stride"], cfg["pretrained"]).to(dev)
    optimizer = sgd(model.param_groups(), lr=cfg["lr"], mults={"head": cfg["head_lr_mult"]},
                    momentum=cfg["momentum"], weight_decay=cfg["weight_decay"])
    dataset = LabelledImages(records, len(classes), cfg, seed)
    steps_per_epoch = len(epoch_batches(len(records), cfg["batch_size"], seed, 0))
    total = cfg["epochs"] * steps_per_epoch
    problems = ProblemReport(problems_path)
    state = {"step": 0, "history": [], "problems": []}

    ckpt = load_checkpoint(checkpoint_path, run_hash)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        state = ckpt["state"]
        log.info("resumed from %s at step %d of %d", checkpoint_path, state["step"], total)
    for row in state["problems"]:
        problems.rows.append(tuple(row))

    def save_checkpoint():
        state["problems"] = [list(r) for r in problems.rows]
        atomic_torch_save({"run_hash": run_hash, "model": model.state_dict(),
                           "optimizer": optimizer.state_dict(), "state": state}, checkpoint_path)

    log.info("training on %d images of %d classes, %d epochs x %d steps, device %s",
             len(records), len(classes), cfg["epochs"], steps_per_epoch, dev)
    model.train()
    bar = progress(total=total, desc="train_classifier", unit="step")
    bar.update(state["step"])
    last_save = time.monotonic()
    while state["step"] < total:
        epoch, start = divmod(state["step"], steps_per_epoch)
        dataset.epoch = epoch
        batches = epoch_batches(len(records), cfg["batch_size"], seed, epoch)[start:]
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, collate_fn=collate,
                                             num_workers=compute["num_workers"])
        t0, epoch_loss, epoch_images = time.perf_counter(), state.get("epoch_loss", 0.0), state.get("epoch_images", 0)
        timed_images = 0  # images of this epoch seen by this process, for the throughput
        for batch in loader:
            for image_id, path, problem in batch["errors"]:
                if image_id not in problems.ids():
                    problems.add(image_id, path, problem)
            lr = poly_lr(cfg["lr"], state["step"], total, cfg["poly_power"])
            if batch["size"]:
                set_lr(optimizer, lr)
                logits = model(batch["image"].to(dev, non_blocking=True))
                loss = F.multilabel_soft_margin_loss(logits, batch["target"].to(dev))
                if not math.isfinite(loss.item()):
                    raise FloatingPointError(f"training diverged at step {state['step']} (loss {loss.item()}); "
                                             "lower classifier.lr")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                epoch_loss += loss.item() * batch["size"]
                epoch_images += batch["size"]
                timed_images += batch["size"]
                bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{lr:.2e}", refresh=False)
            state["step"] += 1
            state["epoch_loss"], state["epoch_images"] = epoch_loss, epoch_images
            bar.update(1)
            if time.monotonic() - last_save > 60 * compute["checkpoint_minutes"] and state["step"] < total:
                save_checkpoint()
                last_save = time.monotonic()
        seconds = time.perf_counter() - t0
        if epoch_images == 0:
            raise RuntimeError(f"epoch {epoch + 1}: no training image could be read (the first problems: "
                               f"{problems.rows[:3]})")
        mean_loss = epoch_loss / epoch_images
        images_per_s = timed_images / max(seconds, 1e-9)
        state["history"].append({"epoch": epoch + 1, "loss": mean_loss, "lr": lr, "images": epoch_images,
                                 "seconds": round(seconds, 2), "images_per_s": round(images_per_s, 2)})
        state["epoch_loss"], state["epoch_images"] = 0.0, 0
        log.info("epoch %d/%d: loss %.4f, %.1f images/s", epoch + 1, cfg["epochs"], mean_loss, images_per_s)
        save_checkpoint()
        last_save = time.monotonic()
    bar.close()

    save_model(model.cpu(), model_path, {"classes": list(classes)})
    write_text(history_path, json.dumps({"epochs": state["history"], "steps": total}, indent=1))
    problems.write()
    Path(checkpoint_path).unlink(missing_ok=True)
