"""Sample natural images for calibration and evaluation, shipped with scikit-image / sklearn.

Splits (disjoint source images):

* ``"calib"`` — 14 images: skimage ``rocket``, ``immunohistochemistry``, ``hubble_deep_field``,
  ``retina``, ``colorwheel``, ``camera``, ``coins``, ``clock``, ``brick``, ``grass``, ``gravel``,
  ``moon``, ``page`` and sklearn ``china.jpg``; each as a center crop and its horizontal flip
  (28 images).
* ``"eval"`` — 5 images: skimage ``chelsea`` (cat), ``coffee``, ``astronaut``,
  ``stereo_motorcycle`` (left view) and sklearn ``flower.jpg``; each as 5 crops (center and
  the 4 corners) and their horizontal flips (50 images).

Preprocessing as for ImageNet models: resize so the short side is ``round(size · 256/224)``
(bilinear, anti-aliased), crop ``size × size``, scale to [0, 1], normalize with the ImageNet
mean/std.  Grayscale images are repeated over the 3 channels.  Deterministic.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from hwsim.errors import WorkloadError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

CALIB_IMAGES = ("rocket", "immunohistochemistry", "hubble_deep_field", "retina", "colorwheel",
                "camera", "coins", "clock", "brick", "grass", "gravel", "moon", "page",
                "sklearn:china.jpg")
EVAL_IMAGES = ("chelsea", "coffee", "astronaut", "stereo_motorcycle", "sklearn:flower.jpg")


def _load(name: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB image by name."""
    if name.startswith("sklearn:"):
        from sklearn.datasets import load_sample_image

        img = load_sample_image(name.split(":", 1)[1])
    else:
        import skimage.data

        img = getattr(skimage.data, name)()
        if isinstance(img, tuple):  # stereo_motorcycle -> (left, right, disparity)
            img = img[0]
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return img[:, :, :3].astype(np.uint8)


def _resize_short(img: np.ndarray, short: int) -> np.ndarray:
    """Resize (H, W, 3) uint8 so min(H, W) == short; float64 in [0, 1]."""
    from skimage.transform import resize

    h, w = img.shape[:2]
    scale = short / min(h, w)
    shape = (max(short, round(h * scale)), max(short, round(w * scale)), 3)
    return resize(img, shape, order=1, anti_aliasing=True, preserve_range=False)


def _crops(img: np.ndarray, size: int, corners: bool) -> list[np.ndarray]:
    h, w = img.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    boxes = [(top, left)]
    if corners:
        boxes += [(0, 0), (0, w - size), (h - size, 0), (h - size, w - size)]
    return [img[t:t + size, l:l + size] for t, l in boxes]


def _normalize(batch: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) in [0, 1] -> ImageNet-normalized float32 (N, 3, H, W)."""
    batch = (batch.astype(np.float32) - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))


def preprocess(img: np.ndarray, size: int = 224) -> np.ndarray:
    """One (H, W, 3) uint8 RGB image -> float32 (3, size, size): resized, center-cropped and
    normalized as the evaluation images are."""
    crop = _crops(_resize_short(np.asarray(img, dtype=np.uint8), round(size * 256 / 224)), size,
                  False)[0]
    return _normalize(crop[None])[0]


@functools.lru_cache(maxsize=4)
def _build(split: str, size: int) -> np.ndarray:
    names, corners = (CALIB_IMAGES, False) if split == "calib" else (EVAL_IMAGES, True)
    short = round(size * 256 / 224)
    out = []
    for name in names:
        crops = _crops(_resize_short(_load(name), short), size, corners)
        out += crops + [c[:, ::-1] for c in crops]
    return _normalize(np.stack(out))


def sample_images(split: str = "calib", size: int = 224) -> torch.Tensor:
    """ImageNet-normalized images, float32 (N, 3, size, size): N = 28 (calib) or 50 (eval)."""
    if split not in ("calib", "eval"):
        raise WorkloadError(f"sample_images: split must be 'calib' or 'eval'; got {split!r}")
    if isinstance(size, bool) or not isinstance(size, int) or not 16 <= size <= 1024:
        raise WorkloadError(f"sample_images: size must be an int in [16, 1024]; got {size!r}")
    return torch.from_numpy(_build(split, size).copy())
