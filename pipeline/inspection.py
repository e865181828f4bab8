"""Looking inside artifacts: `python -m pipeline inspect FILE.h5` and `... show FILE.h5 IMAGE_ID`."""
from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import numpy as np

from .artifacts import ArtifactError, ArtifactReader
from .figures import pyplot, save_figure
from .imageio import IGNORE, ImageReadError, colorize, read_image, read_label_map


def _range(ds: h5py.Dataset) -> str:
    if ds.size == 0 or ds.dtype.kind not in "biuf":
        return ""
    arr = ds[()]
    return f"  range [{arr.min():.4g}, {arr.max():.4g}]"


def describe(path, max_images: int | None = 5) -> str:
    """Provenance, parameters and the tree of an artifact (or of any HDF5 file)."""
    lines = []
    if not Path(path).is_file():
        raise ArtifactError(f"{path}: no such file")
    try:
        f = h5py.File(path, "r", locking=False)
    except OSError as e:
        raise ArtifactError(f"{path}: not a readable HDF5 file (truncated, still being written, or another format; "
                            f"h5py: {str(e).split('(')[-1].rstrip(')')})") from None
    with f:
        lines.append(f"{path}")
        for key, value in f.attrs.items():
            value = value.decode() if isinstance(value, bytes) else value
            if key == "versions":
                value = ", ".join(f"{k} {v}" for k, v in json.loads(value).items())
            lines.append(f"  @{key}: {value}")
        if "params" in f:
            raw = f["params"][()]
            lines.append(f"  params: {raw.decode() if isinstance(raw, bytes) else raw}")
        images = f["images"] if "images" in f else None
        ids = list(images.keys()) if images is not None else []
        others = [k for k in f.keys() if k not in ("images", "params")]
        for key in others:
            obj = f[key]
            dataset = isinstance(obj, h5py.Dataset)
            lines.append(f"  /{key}  {obj.shape} {obj.dtype}{_range(obj)}" if dataset else f"  /{key}/")
        if images is not None:
            lines.append(f"  /images/  {len(ids)} image groups")
            shown = ids if max_images is None else ids[:max_images]
            for iid in shown:
                group = images[iid]
                attrs = ", ".join(f"{k}={v}" for k, v in group.attrs.items())
                lines.append(f"    {iid}/  {attrs}")
                for name, ds in group.items():
                    lines.append(f"      {name}  {ds.shape} {ds.dtype}{_range(ds)}")
            if len(shown) < len(ids):
                lines.append(f"    ... {len(ids) - len(shown)} more (--all lists every image)")
    return "\n".join(lines)


def heat_overlay(rgb: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """A map in [0, 1] as a jet heat map blended half and half with the image."""
    import matplotlib

    colours = matplotlib.colormaps["jet"](np.clip(cam, 0, 1))[..., :3] * 255
    return (0.5 * rgb + 0.5 * colours).astype(np.uint8)


def instance_overlay(rgb: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Instance masks [N, H, W] in one colour each over the darkened image."""
    import matplotlib

    drawn = rgb // 2
    for i, m in enumerate(masks):
        colour = np.array(matplotlib.colormaps["tab10"](i % 10)[:3]) * 255
        drawn[m] = (0.35 * rgb[m] + 0.65 * colour).astype(np.uint8)
    return drawn


def show(path, image_id: str, out_path, threshold: float = 0.15) -> Path:
    """Draw an image with its CAMs (one heat map per class and the label map at `threshold`),
    its saliency map or its label maps overlaid, plus the ground truth when the mask is at
    hand; save as PNG."""
    from matplotlib.patches import Patch

    plt = pyplot()
    with ArtifactReader(path) as reader:
        attrs = reader.image_attrs(image_id)
        group = reader.file["images"][image_id]
        names = reader.classes()
        stage = reader.attrs["stage"]
        data = reader.read(image_id, *group.keys())
    h, w = int(attrs.get("height", 0)), int(attrs.get("width", 0))
    try:
        rgb = read_image(attrs["image_path"])
    except (KeyError, ImageReadError):
        rgb = np.full((h or 64, w or 64, 3), 128, np.uint8)
    if h and w and rgb.shape[:2] != (h, w):
        raise ValueError(f"{attrs['image_path']}: the image is {rgb.shape[0]} x {rgb.shape[1]}, the artifact's maps "
                         f"{h} x {w}: another image (image paths are relative to the workflow's directory: run "
                         f"show from there)")

    def name_of(v: int) -> str:
        return "background" if v == 0 else (names[v - 1] if v <= len(names) else f"class {v}")

    panels = [("image", rgb)]
    label_maps = []
    mask_path = attrs.get("mask_path", "")
    if mask_path and Path(mask_path).is_file():
        label_maps.append(("ground truth", read_label_map(mask_path)))
    if "cams" in data and "keys" in data:
        cams, keys = data["cams"].astype(np.float32), data["keys"]
        for k, v in enumerate(keys):
            panels.append((f"CAM {name_of(int(v))} (max {cams[k].max():.2f})", heat_overlay(rgb, cams[k])))
        from .evaluate import cam_labels

        label_maps.append((f"CAM labels, background > {threshold:g}", cam_labels(cams, keys, threshold)))
    if "scores" in data and "keys" in data:  # score maps, possibly on a coarser grid (random walk)
        from .data import upsample_scores

        scores = upsample_scores(data["scores"], rgb.shape[:2]).numpy()
        for k, v in enumerate(data["keys"]):
            if v == 0:
                continue
            score = scores[k]
            panels.append((f"score {name_of(int(v))} (max {score.max():.2f})", heat_overlay(rgb, score)))
    if "saliency" in data:  # a saliency map: grey levels and over the image
        sal = np.clip(data["saliency"].astype(np.float32), 0, 1)
        panels.append((f"saliency (mean {sal.mean():.2f})", np.repeat((sal * 255).astype(np.uint8)[..., None], 3, 2)))
        panels.append(("saliency over the image", heat_overlay(rgb, sal)))
    if "superpixels" in data:  # region boundaries over the image
        from skimage.segmentation import find_boundaries

        edges = find_boundaries(data["superpixels"], mode="inner")
        drawn = rgb.copy()
        drawn[edges] = (255, 255, 0)
        panels.append((f"{int(data['superpixels'].max()) + 1} superpixels", drawn))
    if "prms" in data:  # PRM's peaks: one peak response map each, the peak marked
        for prm, (py, px), c, score in zip(data["prms"].astype(np.float32), data["peaks"], data["peak_classes"],
                                           data["peak_scores"]):
            drawn = heat_overlay(rgb, np.sqrt(np.clip(prm, 0, 1)))  # square root: the maps are peaky
            drawn[max(py - 2, 0):py + 3, px] = drawn[py, max(px - 2, 0):px + 3] = (255, 255, 255)
            panels.append((f"PRM {name_of(int(c))} (peak {score:.2f})", drawn))
    if "instance_masks" in data:  # PRM's instances, one colour each
        drawn = instance_overlay(rgb, data["instance_masks"].astype(bool))
        listed = ", ".join(f"{name_of(int(c))} {s:.2f}"
                           for c, s in zip(data["instance_classes"], data["instance_scores"]))
        panels.append((f"{len(data['instance_masks'])} instances" + (f": {listed}" if listed else ""), drawn))
    for name, arr in data.items():
        if arr.ndim == 2 and arr.dtype == np.uint8 and arr.shape == rgb.shape[:2]:
            label_maps.append((name, arr))
    present = set()
    for title, labels in label_maps:
        overlay = np.where((labels == 0)[..., None] | (labels == IGNORE)[..., None], rgb // 2,
                           (0.35 * rgb + 0.65 * colorize(labels)).astype(np.uint8))
        overlay[labels == IGNORE] = colorize(np.array([IGNORE], np.uint8))[0]
        panels.append((title, overlay))
        present |= {int(v) for v in np.unique(labels) if v != IGNORE}

    cols = min(4, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows * rgb.shape[0] / rgb.shape[1] + 0.6),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (title, img) in zip(axes.flat, panels):
        ax.imshow(img)
        ax.set_title(title, fontsize=9)
    palette = colorize(np.arange(256, dtype=np.uint8)) / 255.0
    handles = [Patch(color=palette[v], label=name_of(v)) for v in sorted(present)]
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=8, frameon=False)
    fig.suptitle(f"{stage}: {image_id}  ({Path(path).name})", fontsize=10)
    fig.tight_layout(rect=(0, 0.06 if handles else 0, 1, 0.96))
    return save_figure(fig, out_path, dpi=110)


__all__ = ["describe", "show", "heat_overlay", "instance_overlay", "ArtifactError"]
