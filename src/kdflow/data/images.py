"""Encoded images (JPEG/PNG bytes) to fixed-size float inputs: decode, check, and the train/eval views.

Runs in DataLoader workers. Random draws come from a generator seeded by (seed, epoch, sample id),
so a sample's crop does not depend on which worker decodes it, and a resumed run draws what an
uninterrupted one drew.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, UnidentifiedImageError

from kdflow.config import ImageViews
from kdflow.errors import KdflowError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
DECODE_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError)


def open_image(data: bytes, mode: str, where: str, full: bool = True) -> Image.Image:
    """Decode (or, `full=False`, only parse the header of) one image; one clear error naming `where`."""
    try:
        img = Image.open(io.BytesIO(data))
        if not full:
            img.verify()
            return img
        return img.convert(mode)
    except DECODE_ERRORS as exc:
        raise KdflowError(f"cannot read image {where}: {exc}") from None


def _resize(img: Image.Image, size: tuple[int, int], box=None) -> Image.Image:
    return img.resize((size[1], size[0]), Image.BILINEAR, box=box)


def center_box(w: int, h: int, size: tuple[int, int], fraction: float) -> tuple[float, float, float, float]:
    """The centered box of the output's aspect ratio covering `fraction` of the shorter side."""
    out_h, out_w = size
    scale = min(w / out_w, h / out_h) * fraction
    cw, ch = out_w * scale, out_h * scale
    return ((w - cw) / 2, (h - ch) / 2, (w + cw) / 2, (h + ch) / 2)


def random_box(w: int, h: int, v: ImageViews, rng: np.random.Generator) -> tuple[float, float, float, float]:
    """Random-resized-crop box: area fraction in `v.scale`, log-uniform aspect ratio in `v.ratio`."""
    for _ in range(10):
        area = w * h * rng.uniform(*v.scale)
        ar = math.exp(rng.uniform(math.log(v.ratio[0]), math.log(v.ratio[1])))
        cw, ch = math.sqrt(area * ar), math.sqrt(area / ar)
        if cw <= w and ch <= h:
            x0, y0 = rng.uniform(0, w - cw), rng.uniform(0, h - ch)
            return (x0, y0, x0 + cw, y0 + ch)
    return center_box(w, h, (h, w), 1.0)  # fallback: the whole image


def view(img: Image.Image, size: tuple[int, int], policy: str, v: ImageViews,
         rng: np.random.Generator | None = None) -> np.ndarray:
    """One view as a (C, H, W) float32 array in [0, 1]."""
    w, h = img.size
    if policy == "resize":
        img = _resize(img, size)
    elif policy == "center_crop":
        img = _resize(img, size, center_box(w, h, size, v.crop_fraction))
    elif policy == "random_resized_crop":
        img = _resize(img, size, random_box(w, h, v, rng))
        if v.flip and rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
    else:
        raise KdflowError(f"unknown image view '{policy}'")
    a = np.asarray(img, np.float32) / 255.0
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def sample_rng(seed: int, epoch: int, sample_id: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64([seed, epoch, sample_id]))
