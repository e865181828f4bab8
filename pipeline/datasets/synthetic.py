"""The embedded synthetic dataset: deterministic scenes that carry the difficulties of WSSS.

What each image holds, and why:
- Objects of 8 classes. Every object is a body whose look (shape, colour, hatching) is
  shared by all classes, plus one discriminative part: the 28% of the body at one end,
  painted in the class's own hue and texture. A classifier needs only the part, so its
  CAM lights up the part, not the whole object (the problem seeds, random walks and
  saliency exist to solve).
- Each class comes in 2 or 3 sub-types: sub-type k of class c has its own body shape and
  body colour (shared with sub-types of other classes), which sub-category clustering can find.
- "train" stands on rails and "boat" floats on water in most images (context_prob); the
  context is background, yet it predicts the class (EPS's train-vs-railroad case).
- Object boundaries are colour edges: the body colour differs from the background, which is
  textured (smooth noise, grain and clutter blobs), never flat.
- 1-3 objects of 1-2 classes per image at varied scales; two objects of the same class are
  common, for instance masks.
Ground truth: class masks (0 background, 1..8, 255 on a 2-pixel band around every object
boundary, as VOC) and instance masks (0 background, 1..n, same band), for evaluation only.

The scene (classes, counts, sub-types, context) is drawn from its own random stream, so
the image-level labels are known without rendering; pixels come from a second stream.
"""
from __future__ import annotations

import colorsys
import zlib
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..imageio import IGNORE, write_image, write_label_png
from ..manifest import ManifestError, Record

CLASSES = ("train", "boat", "car", "bird", "cat", "cow", "bottle", "chair")
N_SUBTYPES = (3, 2, 3, 2, 3, 2, 3, 2)
CONTEXT = {"train": "rails", "boat": "water"}
STRAY_CONTEXT_PROB = 0.03  # a context pattern without its class
PART_FRACTION = 0.28
SHAPES = ("ellipse", "box", "diamond")
BODY_COLOURS = np.array([[150, 150, 150], [176, 142, 96], [96, 118, 152]], dtype=np.float64)
PART_TEXTURES = ("stripes", "dots", "checker", "rings")


def part_colour(c: int) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(c / len(CLASSES), 0.85, 0.92)) * 255.0


def subtype_look(c: int, k: int) -> tuple[str, int]:
    """Body shape and body-colour index of sub-type k of class c. A class's sub-types differ
    in both; each of the 9 (shape, colour) looks is worn by sub-types of 2 or 3 classes."""
    return SHAPES[(c + k) % 3], (k + c // 3) % 3


def _split_code(split: str) -> int:
    return zlib.crc32(split.encode())


def image_id(split: str, index: int) -> str:
    return f"{split}_{index:05d}"


def sample_scene(seed: int, split: str, index: int, context_prob: float) -> dict:
    """Classes (0-based), object count and sub-type per class, context patterns present."""
    rng = np.random.default_rng([seed, _split_code(split), index, 0])
    n_classes = 1 if rng.random() < 0.6 else 2
    classes = sorted(int(c) for c in rng.choice(len(CLASSES), n_classes, replace=False))
    if n_classes == 1:
        counts = [int(rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15]))]
    else:
        counts = [1, 1]
        if rng.random() < 0.3:
            counts[int(rng.integers(2))] = 2
    subtypes = [int(rng.integers(N_SUBTYPES[c])) for c in classes]
    context = []
    for name, pattern in CONTEXT.items():
        c = CLASSES.index(name)
        p = context_prob if c in classes else STRAY_CONTEXT_PROB
        if rng.random() < p:
            context.append(pattern)
    return {"classes": classes, "counts": counts, "subtypes": subtypes, "context": context}


def paths(root: str | Path, image_id: str) -> dict[str, str]:
    root = Path(root)
    return {"image": str(root / "images" / f"{image_id}.png"),
            "mask": str(root / "masks" / f"{image_id}.png"),
            "instances": str(root / "instances" / f"{image_id}.png")}


def manifest(cfg: dict, split: str, root: str | Path) -> list[Record]:
    if split not in cfg["n_images"]:
        raise ManifestError(f"dataset.synthetic.n_images: no split named {split!r} "
                            f"(configured: {', '.join(sorted(cfg['n_images']))})")
    records = []
    for index in range(cfg["n_images"][split]):
        scene = sample_scene(cfg["seed"], split, index, cfg["context_prob"])
        iid = image_id(split, index)
        p = paths(root, iid)
        records.append(Record(
            image_id=iid, image=p["image"], mask=p["mask"], instances=p["instances"],
            labels=tuple(c + 1 for c in scene["classes"]),
            label_names=tuple(CLASSES[c] for c in scene["classes"]),
            meta={"subtypes": {CLASSES[c]: k for c, k in zip(scene["classes"], scene["subtypes"])},
                  "context": scene["context"]}))
    return records


# ---------------------------------------------------------------- rendering

def _smooth_noise(rng, h, w, cell, channels=1):
    gh, gw = h // cell + 3, w // cell + 3
    grid = rng.standard_normal((gh, gw, channels))
    up = ndimage.zoom(grid, (cell, cell, 1), order=3, mode="nearest")
    return up[:h, :w]


def _background(rng, h, w, avoid):
    """Textured background whose mean colour is far from every body colour in `avoid`."""
    for _ in range(100):
        hue, sat, val = rng.random(), rng.uniform(0.1, 0.5), rng.uniform(0.25, 0.95)
        base = np.array(colorsys.hsv_to_rgb(hue, sat, val)) * 255.0
        if all(np.linalg.norm(base - a) > 80 for a in avoid):
            break
    img = base + 22.0 * _smooth_noise(rng, h, w, int(rng.integers(12, 32)), 3)
    img += 7.0 * rng.standard_normal((h, w, 3))
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(int(rng.integers(0, 4))):  # clutter blobs in other muted colours
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(4, h / 6), rng.uniform(4, w / 6)
        blob = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
        colour = np.array(colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.05, 0.35), rng.uniform(0.2, 0.9))) * 255.0
        img[blob] = 0.5 * img[blob] + 0.5 * colour
    return img


def _draw_rails(img, y, rng):
    h, w, _ = img.shape
    y0, y1 = int(np.clip(y, 0, h - 1)), int(np.clip(y + 9, 0, h))
    if y1 - y0 < 3:
        return
    phase = int(rng.integers(0, 8))
    for x in range(phase, w, 8):  # sleepers
        img[y0:y1, x:x + 3] = (105, 72, 40)
    for ry in (y0 + 1, y1 - 2):  # two steel rails
        img[ry:ry + 2, :] = (60, 60, 68)


def _draw_water(img, y, rng):
    h, w, _ = img.shape
    y0 = int(np.clip(y, 0, h - 1))
    yy, xx = np.mgrid[y0:h, 0:w]
    period = rng.uniform(6, 10)
    waves = np.sin(2 * np.pi * (xx / (2.5 * period) + np.sin(yy / 3.0) * 0.3 + yy / period))
    water = np.array([30, 85, 160], dtype=np.float64) + 25.0 * waves[..., None]
    img[y0:h] = water


def _shape_mask(shape, yy, xx, cy, cx, ry, rx):
    dy, dx = (yy - cy) / ry, (xx - cx) / rx
    if shape == "ellipse":
        return dy ** 2 + dx ** 2 <= 1
    if shape == "box":
        return (np.abs(dy) <= 1) & (np.abs(dx) <= 1)
    return np.abs(dy) + np.abs(dx) <= 1  # diamond


def _part_texture(c, yy, xx, cy, cx):
    y, x = yy - cy, xx - cx
    kind = PART_TEXTURES[c % 4]
    if kind == "stripes":
        angle = np.pi * (c // 4) / 2 + np.pi / 4
        return np.sin(2 * np.pi * (x * np.cos(angle) + y * np.sin(angle)) / 5.0) > 0
    if kind == "dots":
        return ((x % 6) - 3) ** 2 + ((y % 6) - 3) ** 2 < 4 + 2 * (c // 4)
    if kind == "checker":
        p = 4 + c // 4
        return ((np.floor(x / p) + np.floor(y / p)) % 2) == 0
    return (np.hypot(y, x) % (5 + c // 4)) < 2.5


def _place(rng, h, w, sizes):
    """Centres of objects, kept apart so that none is mostly hidden."""
    centres = []
    for size in sizes:
        best, best_gap = None, -np.inf
        for _ in range(30):
            cy, cx = rng.uniform(0.3 * size, h - 0.3 * size), rng.uniform(0.3 * size, w - 0.3 * size)
            gap = min((np.hypot(cy - y, cx - x) - 0.45 * (size + s) for (y, x), s in zip(centres, sizes)),
                      default=np.inf)
            if gap > 0:
                best = (cy, cx)
                break
            if gap > best_gap:
                best, best_gap = (cy, cx), gap
        centres.append(best)
    return centres


def render(cfg: dict, split: str, index: int) -> dict[str, np.ndarray]:
    """Pixels of one image: uint8 RGB image, class mask and instance mask."""
    scene = sample_scene(cfg["seed"], split, index, cfg["context_prob"])
    rng = np.random.default_rng([cfg["seed"], _split_code(split), index, 1])
    h, w = (int(v) for v in rng.integers(cfg["min_size"], cfg["max_size"] + 1, size=2))

    objects = []  # (class, subtype, size)
    for c, n, k in zip(scene["classes"], scene["counts"], scene["subtypes"]):
        objects += [(c, k, rng.uniform(0.3, 0.55) * min(h, w)) for _ in range(n)]
    order = rng.permutation(len(objects))
    objects = [objects[i] for i in order]
    centres = _place(rng, h, w, [o[2] for o in objects])
    bodies = [BODY_COLOURS[subtype_look(c, k)[1]] for c, k, _ in objects]

    img = _background(rng, h, w, bodies)
    geometry = []
    for (c, k, size), (cy, cx) in zip(objects, centres):
        shape = subtype_look(c, k)[0]
        aspect = rng.uniform(1.2, 1.7) if shape != "diamond" else rng.uniform(0.9, 1.2)
        rx, ry = size / 2, size / 2 / aspect
        geometry.append((shape, cy, cx, ry, rx))

    # context patterns go under the objects: at the bottom of the first object of their class
    for pattern in scene["context"]:
        owner = CLASSES.index("train" if pattern == "rails" else "boat")
        owned = [g for (c, _, _), g in zip(objects, geometry) if c == owner]
        if owned:
            _, cy, _, ry, _ = owned[0]
            bottom, depth = cy + ry, 0.35 * ry
        else:
            bottom, depth = rng.uniform(0.5 * h, 0.9 * h), 8.0
        if pattern == "rails":
            _draw_rails(img, bottom - 2, rng)
        else:
            _draw_water(img, bottom - depth, rng)

    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    classes = np.zeros((h, w), np.uint8)
    instances = np.zeros((h, w), np.uint8)
    hatch = (np.sin((xx + yy) * 0.9) > 0.6)  # the body texture all classes share
    for i, ((c, _k, _), (shape, cy, cx, ry, rx), body) in enumerate(zip(objects, geometry, bodies), start=1):
        inside = _shape_mask(shape, yy, xx, cy, cx, ry, rx)
        if not inside.any():
            continue
        shade = 1.0 + 0.25 * (cy - yy) / max(ry, 1.0)
        colour = body[None, None, :] * shade[..., None] * np.where(hatch, 0.85, 1.0)[..., None]
        # the part: the PART_FRACTION of the body furthest along a random direction (top, left or right)
        direction = [(-1.0, 0.0), (0.0, -1.0), (0.0, 1.0)][int(rng.integers(3))]
        proj = (yy - cy) * direction[0] + (xx - cx) * direction[1]
        cut = np.quantile(proj[inside], 1.0 - PART_FRACTION)
        part = inside & (proj > cut)
        pattern = _part_texture(c, yy, xx, cy, cx)
        pc = part_colour(c)
        part_rgb = np.where(pattern[..., None], pc, pc * 0.55)
        colour = np.where(part[..., None], part_rgb, colour)
        img[inside] = colour[inside] + 5.0 * rng.standard_normal((int(inside.sum()), 3))
        classes[inside] = c + 1
        instances[inside] = i

    # ignore band: pixels whose 4-neighbourhood holds another instance (or background)
    pad = np.pad(instances, 1, mode="edge")
    border = np.zeros((h, w), bool)
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        border |= pad[dy:dy + h, dx:dx + w] != instances
    classes[border] = IGNORE
    instances[border] = IGNORE
    return {"image": np.clip(img, 0, 255).astype(np.uint8), "mask": classes, "instances": instances}


def _render_and_write(args):
    cfg, split, index, root = args
    out = render(cfg, split, index)
    p = paths(root, image_id(split, index))
    write_image(p["image"], out["image"])
    write_label_png(p["mask"], out["mask"])
    write_label_png(p["instances"], out["instances"])


def generate(cfg: dict, split: str, root: str | Path, threads: int = 1, progress=None) -> int:
    """Render every image of `split` under root/{images,masks,instances}; returns the count."""
    jobs = [(cfg, split, i, str(root)) for i in range(cfg["n_images"][split])]
    for sub in ("images", "masks", "instances"):
        Path(root, sub).mkdir(parents=True, exist_ok=True)
    if threads > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(threads) as pool:
            for _ in (progress or iter)(pool.map(_render_and_write, jobs, chunksize=16)):
                pass
    else:
        for _ in (progress or iter)(map(_render_and_write, jobs)):
            pass
    return len(jobs)
