"""Which GPU a job takes: the one it was given, or a free one among several it sees."""
from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
import torch

from pipeline import devices


@pytest.fixture(autouse=True)
def released():
    yield
    for lock in devices._held:
        lock.close()
    devices._held.clear()
    devices._claimed = None


def test_jobs_take_distinct_gpus_and_a_released_one_is_taken_again(tmp_path):
    names = ["0", "1"]
    assert devices.claim_gpu(names, tmp_path) == 0
    assert devices.claim_gpu(names, tmp_path) == 1
    # a third holder waits until one is released
    got = []
    waiter = threading.Thread(target=lambda: got.append(devices.claim_gpu(names, tmp_path, poll_seconds=0.05)))
    waiter.start()
    time.sleep(0.3)
    assert got == [] and waiter.is_alive()
    devices._held[1].close()  # the job on GPU 1 ends
    waiter.join(timeout=5)
    assert got == [1]


def test_a_killed_job_releases_its_gpu(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from pipeline import devices;"
        f"print(devices.claim_gpu(['3', '5'], Path({str(tmp_path)!r})), flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "0"
        assert devices.claim_gpu(["3", "5"], tmp_path) == 1  # GPU 3 is held by the other process
        devices._held.pop().close()
    finally:
        holder.kill()
        holder.wait()
    assert devices.claim_gpu(["3", "5"], tmp_path, poll_seconds=0.05) == 0


def test_gpu_names_follow_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert devices.visible_gpu_names(2) == ["2", "3"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert devices.visible_gpu_names(3) == ["0", "1", "2"]


def test_pick_device_takes_a_free_gpu_once_per_process(monkeypatch, tmp_path):
    monkeypatch.setenv(devices.LOCK_DIR_ENV, str(tmp_path))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    chosen = []
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    devices.claim_gpu(["4"], tmp_path)  # another job holds GPU 4
    assert devices.pick_device("auto") == torch.device("cuda:1")
    assert devices.pick_device("cuda") == torch.device("cuda:1")  # the same GPU, not a second one
    assert chosen == [1]
    assert devices.pick_device("cpu") == torch.device("cpu")


def test_one_visible_gpu_is_used_without_locks(monkeypatch, tmp_path):
    monkeypatch.setenv(devices.LOCK_DIR_ENV, str(tmp_path / "locks"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert devices.pick_device("auto") == torch.device("cuda")
    assert not (tmp_path / "locks").exists()


def test_cuda_without_a_gpu_is_an_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="no CUDA device is visible"):
        devices.pick_device("cuda")
    assert devices.pick_device("auto") == torch.device("cpu")
