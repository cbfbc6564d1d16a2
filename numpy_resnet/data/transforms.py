"""Per-channel normalisation and the two standard CIFAR augmentations, on whole batches.

    normalize      uint8 (N, 3, H, W) -> float32, each channel to mean 0 and std 1
    random_crop    pad with zeros, then cut a random H x W window per image
    random_hflip   mirror each image left-right with probability p

The augmentations work on the uint8 images (so the padding is black, as in torchvision,
where RandomCrop runs before ToTensor and Normalize) and never loop over the images in
Python: one fancy-indexing gather does every crop of the batch at once.
"""

from __future__ import annotations

import numpy as np

from ..seeding import get_rng

# Per-channel mean and standard deviation of the 50,000 training images, pixels in [0, 1].
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def normalize(x: np.ndarray, mean=CIFAR10_MEAN, std=CIFAR10_STD) -> np.ndarray:
    """x̂ = (x / 255 - mean_c) / std_c for each channel c.

    x: (N, C, H, W) or (C, H, W) uint8 in 0..255 -> float32, same shape.
    """
    if x.dtype != np.uint8:
        raise ValueError(f"normalize: expected uint8 images (0..255), got dtype {x.dtype}")
    mean = np.asarray(mean, dtype=np.float32).reshape(-1, 1, 1)  # (C, 1, 1) broadcasts
    std = np.asarray(std, dtype=np.float32).reshape(-1, 1, 1)
    if x.ndim < 3 or x.shape[-3] != mean.shape[0]:
        raise ValueError(f"normalize: expected images (N, {mean.shape[0]}, H, W), "
                         f"got shape {x.shape}")
    out = x.astype(np.float32)  # one new array, then updated in place
    out /= 255
    out -= mean
    out /= std
    return out


def channel_stats(x: np.ndarray, chunk: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of uint8 images, scaled to [0, 1].

    mean_c = E[x_c],  std_c = sqrt(E[x_c²] - mean_c²)  over images and pixels (ddof=0).
    Sums run in float64 over chunks of images, so 50,000 images need little memory.
    x: (N, C, H, W) uint8 -> mean (C,), std (C,) float64
    """
    total = np.zeros(x.shape[1])
    total_sq = np.zeros(x.shape[1])
    for start in range(0, len(x), chunk):
        pixels = x[start:start + chunk].astype(np.float64) / 255
        total += pixels.sum(axis=(0, 2, 3))
        total_sq += (pixels ** 2).sum(axis=(0, 2, 3))
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    return mean, np.sqrt(total_sq / count - mean ** 2)


def random_crop(x: np.ndarray, padding: int = 4, rng: np.random.Generator | None = None
                ) -> np.ndarray:
    """Zero-pad by `padding` on every side, then cut an H x W window at a random offset.

    Image n gets offsets (top_n, left_n), each uniform in 0..2·padding, and
        out[n, c, i, j] = padded[n, c, top_n + i, left_n + j]
    which is one gather with index arrays broadcast to (N, C, H, W).
    x: (N, C, H, W) -> same shape and dtype
    """
    rng = get_rng() if rng is None else rng
    n, c, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    top = rng.integers(0, 2 * padding + 1, size=n)
    left = rng.integers(0, 2 * padding + 1, size=n)
    rows = top[:, None] + np.arange(h)    # (N, H): the rows image n keeps
    cols = left[:, None] + np.arange(w)   # (N, W)
    return padded[np.arange(n)[:, None, None, None],
                  np.arange(c)[None, :, None, None],
                  rows[:, None, :, None],
                  cols[:, None, None, :]]


def random_hflip(x: np.ndarray, rng: np.random.Generator | None = None, p: float = 0.5
                 ) -> np.ndarray:
    """Mirror each image left-right with probability p.  x: (N, C, H, W) -> same shape."""
    rng = get_rng() if rng is None else rng
    flip = rng.random(len(x)) < p  # (N,) bool
    out = x.copy()
    out[flip] = x[flip, :, :, ::-1]
    return out
