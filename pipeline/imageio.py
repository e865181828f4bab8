"""Reading images and label maps, writing label PNGs; the VOC colour palette.

Every stage reads pixels through this module, so odd inputs are handled once: grayscale,
palette, CMYK, RGBA (alpha dropped), 16-bit (scaled to 8 bits) and EXIF-rotated images
become uint8 RGB; corrupt or truncated files raise ImageReadError naming the file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .atomic import atomic_path

IGNORE = 255


class ImageReadError(OSError):
    """An image or label map cannot be read; the message names the file and the reason."""


def _open(path) -> Image.Image:
    try:
        img = Image.open(path)
        img.load()  # decode now: truncated files fail here, not later
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageReadError(f"{path}: cannot decode the image ({e})") from None
    return img


def image_size(path) -> tuple[int, int]:
    """(H, W) of an image from its header, without decoding the pixels."""
    try:
        with Image.open(path) as img:
            return img.height, img.width
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageReadError(f"{path}: cannot read the image ({e})") from None


def read_image_sized(path, size, what: str) -> np.ndarray:
    """read_image, and an ImageReadError unless the image is `size` (H, W) like its `what`."""
    rgb = read_image(path)
    if rgb.shape[:2] != tuple(size):
        raise ImageReadError(f"{path}: image size {rgb.shape[:2]} differs from its {what} size {tuple(size)}")
    return rgb


def read_image(path) -> np.ndarray:
    """uint8 RGB array [H, W, 3]."""
    img = _open(path)
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block is not worth losing the image for
        pass
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit / 32-bit grayscale: scale the full range to 8 bits instead of clipping
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        if img.mode == "F":
            top = max(float(arr.max()), 1e-12)
        arr = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")  # alpha is dropped below, colours kept as stored
    arr = np.array(img.convert("RGB"), dtype=np.uint8)  # a writable copy
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageReadError(f"{path}: unexpected image shape {arr.shape}")
    return arr


def read_label_map(path) -> np.ndarray:
    """uint8 [H, W] label values (class indices or instance ids; 255 = ignore).

    Palette PNGs are read as their indices, never converted to colours.
    """
    img = _open(path)
    if img.mode not in ("P", "L", "I", "I;16", "I;16B", "I;16L"):
        raise ImageReadError(f"{path}: a label map must be a palette or single-channel image, got mode {img.mode}")
    arr = np.array(img)
    if arr.ndim != 2:
        raise ImageReadError(f"{path}: a label map must be 2-D, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        if arr.max() > 255 or arr.min() < 0:
            raise ImageReadError(f"{path}: label values outside 0..255")
        arr = arr.astype(np.uint8)
    return np.ascontiguousarray(arr)


def read_folder_mask(folder, image_id: str, size: tuple[int, int], n_classes: int) -> np.ndarray:
    """The PNG label map `<folder>/<image_id>.png` (masks made elsewhere); ImageReadError, naming
    the file, when it is missing, unreadable, not of the image's size or holds values outside
    0..C / 255."""
    path = Path(folder) / f"{image_id}.png"
    if not path.is_file():
        raise ImageReadError(f"{path}: no mask for image {image_id}")
    mask = read_label_map(path)
    if mask.shape != tuple(size):
        raise ImageReadError(f"{path}: mask size {mask.shape} differs from the image's {tuple(size)}")
    bad = (mask >= n_classes) & (mask != IGNORE)
    if bad.any():
        raise ImageReadError(f"{path}: mask values {sorted(set(np.unique(mask[bad]).tolist()))[:5]} "
                             f"outside 0..{n_classes - 1} and 255")
    return mask


def read_grey_map(path) -> np.ndarray:
    """float32 [H, W] in 0..1 of a grey-level map (a saliency PNG: 0..255, or 16-bit);
    colour images are converted to grey levels."""
    img = _open(path)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        return (arr / (65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0)).astype(np.float32)
    if img.mode == "F":
        return np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
    if img.mode in ("RGBA", "LA", "PA"):
        img = img.convert("RGBA").convert("RGB")
    return np.asarray(img.convert("L"), dtype=np.float32) / 255.0


def voc_palette(n: int = 256) -> np.ndarray:
    """The standard PASCAL VOC colour map, [n, 3] uint8 (bit-interleaved class index)."""
    palette = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette[i] = (r, g, b)
    return palette


def colorize(labels: np.ndarray) -> np.ndarray:
    """RGB picture of a label map in the VOC palette (255 = ignore is drawn cream white)."""
    return voc_palette()[labels]


def _atomic_save(img: Image.Image, path) -> None:
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def write_label_png(path, labels: np.ndarray) -> None:
    """Save a uint8 label map as a palette PNG (VOC colours; values are the class indices)."""
    if labels.dtype != np.uint8 or labels.ndim != 2:
        raise ValueError(f"{path}: label map must be uint8 [H, W], got {labels.dtype} {labels.shape}")
    img = Image.fromarray(labels)  # mode L; putpalette turns it into P without touching values
    img.putpalette(voc_palette().reshape(-1).tolist())
    _atomic_save(img, path)


def write_image(path, rgb: np.ndarray) -> None:
    """Save a uint8 RGB array as PNG."""
    _atomic_save(Image.fromarray(rgb), path)
