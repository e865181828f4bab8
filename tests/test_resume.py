"""Training killed mid-way resumes from its checkpoint, and ends where an uninterrupted run ends."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from pipeline.config import resolve
from pipeline.datasets.synthetic import CLASSES

CFG = resolve({"backbone": {"name": "resnet18", "weights": "none"},
               "classifier": {"epochs": 3, "batch_size": 4, "crop_size": 32, "lr": 0.02}})["classifier"]
COMPUTE = {"device": "cpu", "num_workers": 0, "checkpoint_minutes": 0.0001}  # a checkpoint after every step
# DeepLab-LargeFOV on the ground truth: its dropout must continue as it would have
SEGMENTER = {**resolve({"backbone": {"name": "resnet18", "weights": "none"},
                        "segmenter": {"iterations": 12, "batch_size": 4, "crop_size": 32,
                                      "lr": 0.01}})["segmenter"], "head": "largefov"}
RUN = """
import importlib, json, sys
from pipeline.logs import stage_logging
from pipeline.training import configure_torch
a = json.loads(sys.argv[1])
configure_torch(1)
stage = importlib.import_module("pipeline." + a.pop("stage"))
with stage_logging(a.pop("log")):
    stage.run(**a)
"""


def start(tmp, manifest, code="code-v1", cfg=CFG, stage="train_classifier"):
    args = dict(manifest_path=str(manifest), classes=list(CLASSES), cfg=cfg, seed=0, compute=COMPUTE, code_hash=code,
                model_path=str(tmp / "model.pt"), history_path=str(tmp / "history.json"),
                problems_path=str(tmp / "problems.tsv"), checkpoint_path=str(tmp / "ckpt.pt"), log=str(tmp / "log.txt"),
                stage=stage)
    if stage == "train_segmenter":
        args.update(mask_paths=[], source="ground_truth", classifier_path=None)
    return subprocess.Popen([sys.executable, "-c", RUN, json.dumps(args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def kill_after_first_checkpoint(proc, ckpt):
    deadline = time.time() + 120
    while not ckpt.exists():
        assert proc.poll() is None, "training ended before its first checkpoint"
        assert time.time() < deadline
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.parametrize("stage,cfg,steps,epochs", [("train_classifier", CFG, 18, 3),
                                                     ("train_segmenter", SEGMENTER, 12, 2)])
def test_killed_training_resumes_and_matches_an_uninterrupted_run(tmp_path, tiny_dataset, stage, cfg, steps, epochs):
    manifest = tiny_dataset["train"]
    ref, run = tmp_path / "ref", tmp_path / "run"
    ref.mkdir(), run.mkdir()
    assert start(ref, manifest, cfg=cfg, stage=stage).wait() == 0

    proc = start(run, manifest, cfg=cfg, stage=stage)
    kill_after_first_checkpoint(proc, run / "ckpt.pt")
    assert not (run / "model.pt").exists()  # nothing half-written among the outputs
    step = torch.load(run / "ckpt.pt", weights_only=False)["state"]["step"]
    assert 0 < step < steps
    assert start(run, manifest, cfg=cfg, stage=stage).wait() == 0
    log = (run / "log.txt").read_text()
    assert f"resumed from {run / 'ckpt.pt'} at step" in log
    assert not (run / "ckpt.pt").exists()

    a = torch.load(ref / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(run / "model.pt", weights_only=True)["state_dict"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
        assert b[k].is_contiguous(), k  # saved in the default layout, whatever the training's
    assert len(json.loads((run / "history.json").read_text())["epochs"]) == epochs


def test_checkpoint_of_other_code_or_parameters_is_not_resumed(tmp_path, tiny_dataset):
    proc = start(tmp_path, tiny_dataset["train"])
    kill_after_first_checkpoint(proc, tmp_path / "ckpt.pt")
    assert start(tmp_path, tiny_dataset["train"], code="code-v2").wait() == 0
    log = (tmp_path / "log.txt").read_text()
    assert "belongs to other parameters, code or data; starting over" in log and "resumed" not in log
