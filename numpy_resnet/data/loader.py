"""Mini-batches for training: shuffle, augment, normalise.

    for xb, yb in Loader(x, y, batch_size=128, augment=True, seed=0):
        ...                      xb: (B, 3, 32, 32) float32 normalised,  yb: (B,) int64

Every random choice of an epoch (the order, the crops, the flips) comes from one generator
seeded by (seed, epoch). So epoch e looks the same whether training ran straight through
or was stopped and resumed from a checkpoint: call `set_epoch(e)` and continue.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..seeding import get_rng
from .transforms import CIFAR10_MEAN, CIFAR10_STD, normalize, random_crop, random_hflip


def iterate_batches(x: np.ndarray, y: np.ndarray, batch_size: int, shuffle: bool = True,
                    rng: np.random.Generator | None = None, drop_last: bool = False,
                    augment: bool = False, mean=CIFAR10_MEAN, std=CIFAR10_STD
                    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One pass over (x, y) in batches.

    x: (N, C, H, W) uint8, y: (N,) -> yields xb (B, C, H, W) float32, yb (B,) int64.
    augment: random_crop(padding=4) then random_hflip, before normalising.
    mean=None (with std=None) skips normalising and only casts x to float32.
    rng: the generator for shuffling and augmenting; default the library's `get_rng()`.
    """
    if batch_size < 1:
        raise ValueError(f"iterate_batches: batch_size must be >= 1, got {batch_size}")
    if len(x) != len(y):
        raise ValueError(f"iterate_batches: {len(x)} images but {len(y)} labels")
    rng = get_rng() if rng is None else rng
    order = rng.permutation(len(x)) if shuffle else np.arange(len(x))
    stop = len(x) - len(x) % batch_size if drop_last else len(x)
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        xb = x[idx]
        if augment:
            xb = random_hflip(random_crop(xb, padding=4, rng=rng), rng=rng)
        xb = xb.astype(np.float32) if mean is None else normalize(xb, mean, std)
        yield xb, np.asarray(y[idx], dtype=np.int64)


class Loader:
    """A small DataLoader: `len()` batches per epoch, each epoch repeatable from (seed, epoch).

    x: (N, C, H, W) uint8 images, y: (N,) labels. seed=None draws one from the library
    generator (so `numpy_resnet.manual_seed` fixes it). Each `iter()` runs epoch
    `self.epoch` and then advances it; `set_epoch(e)` chooses the next epoch explicitly.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, shuffle: bool = True,
                 augment: bool = False, seed: int | None = 0, drop_last: bool = False,
                 mean=CIFAR10_MEAN, std=CIFAR10_STD):
        if batch_size < 1:
            raise ValueError(f"Loader: batch_size must be >= 1, got {batch_size}")
        if len(x) != len(y):
            raise ValueError(f"Loader: {len(x)} images but {len(y)} labels")
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle, self.augment, self.drop_last = shuffle, augment, drop_last
        self.mean, self.std = mean, std
        self.seed = int(get_rng().integers(2**31)) if seed is None else seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The next `iter()` runs this epoch (its order and augmentation)."""
        self.epoch = epoch

    def rng_for_epoch(self, epoch: int) -> np.random.Generator:
        """Depends on (seed, epoch) only, never on what ran before."""
        return np.random.default_rng([self.seed, epoch])

    def __len__(self) -> int:
        full, rest = divmod(len(self.x), self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        rng = self.rng_for_epoch(self.epoch)
        self.epoch += 1
        return iterate_batches(self.x, self.y, self.batch_size, shuffle=self.shuffle, rng=rng,
                               drop_last=self.drop_last, augment=self.augment,
                               mean=self.mean, std=self.std)
