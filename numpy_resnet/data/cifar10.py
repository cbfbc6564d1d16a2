"""CIFAR-10 from its official binary files: find them, read them, take balanced subsets.

The binary format (https://www.cs.toronto.edu/~kriz/cifar.html) is a run of 3073-byte
records, one per image:

    byte 0          the label, 0..9
    bytes 1..3072   the 32x32 colour image: 1024 red, then 1024 green, then 1024 blue
                    bytes, each plane row by row -- already the (C, H, W) layout

so a file of n records is an (n, 3073) uint8 array: column 0 holds the labels and the
rest reshapes to (n, 3, 32, 32) without any decoding. The folder `cifar-10-batches-bin`
holds data_batch_1.bin .. data_batch_5.bin (50,000 training images), test_batch.bin
(10,000) and batches.meta.txt (the class names, one per line). No pickle is involved.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .download import download_url, md5sum, safe_extract

IMAGE_SHAPE = (3, 32, 32)
RECORD_BYTES = 1 + 3 * 32 * 32  # 3073: one label byte, then the pixels
FOLDER = "cifar-10-batches-bin"
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILE = "test_batch.bin"
META_FILE = "batches.meta.txt"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
           "dog", "frog", "horse", "ship", "truck")
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"


class CIFAR10(NamedTuple):
    """The data set as arrays; images stay uint8 until `normalize`."""

    x_train: np.ndarray  # (N_train, 3, 32, 32) uint8
    y_train: np.ndarray  # (N_train,) int64, values 0..9
    x_test: np.ndarray   # (N_test, 3, 32, 32) uint8
    y_test: np.ndarray   # (N_test,) int64
    classes: list        # 10 names, classes[y] names label y


# ----- reading the files ---------------------------------------------------------------
def read_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """One binary file -> images (n, 3, 32, 32) uint8, labels (n,) int64.

    n comes from the file size, which must be a positive multiple of 3073; every label
    must be 0..9. Anything else raises a one-line ValueError naming the file.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, expected a CIFAR-10 binary batch file")
    size = path.stat().st_size
    if size == 0:
        raise ValueError(f"{path}: empty file, expected whole {RECORD_BYTES}-byte records "
                         f"(1 label byte + 3072 pixel bytes per image)")
    if size % RECORD_BYTES != 0:
        raise ValueError(f"{path}: size {size} bytes is not a multiple of {RECORD_BYTES} "
                         f"(1 label byte + 3072 pixel bytes per image); the file is "
                         f"truncated or not in the CIFAR-10 binary format")
    records = np.fromfile(path, dtype=np.uint8).reshape(-1, RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    bad = np.flatnonzero(labels >= len(CLASSES))
    if bad.size:
        raise ValueError(f"{path}: record {bad[0]} has label {labels[bad[0]]}, expected 0..9 "
                         f"({bad.size} bad labels in all)")
    images = records[:, 1:].reshape(-1, *IMAGE_SHAPE)  # (n, 3072) -> (n, C, H, W)
    return images, labels


def read_classes(folder: str | os.PathLike) -> list[str]:
    """Class names from batches.meta.txt, one per line; the standard names if it is absent."""
    path = Path(folder) / META_FILE
    if not path.exists():
        return list(CLASSES)
    expected = f"expected the {len(CLASSES)} class names as text, one per line"
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not a text file (byte {err.start} is not UTF-8); "
                         f"{expected}") from err
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(names) != len(CLASSES):
        raise ValueError(f"{path}: {expected}, got {len(names)} names")
    unprintable = [name for name in names if not name.isprintable()]
    if unprintable:
        raise ValueError(f"{path}: class name {unprintable[0]!r} holds control characters; "
                         f"{expected}")
    return names


# ----- finding (or fetching) the folder ---------------------------------------------------
def cache_dir() -> Path:
    """$NUMPY_RESNET_CACHE, else ~/.cache/numpy_resnet."""
    return Path(os.environ.get("NUMPY_RESNET_CACHE") or "~/.cache/numpy_resnet").expanduser()


def _candidates(root: Path) -> list[Path]:
    """`root` may be the cifar-10-batches-bin folder itself or the folder that holds it."""
    return [root] if root.name == FOLDER else [root, root / FOLDER]


def _missing(folder: Path) -> list[str]:
    return [name for name in (*TRAIN_FILES, TEST_FILE) if not (folder / name).is_file()]


def find_data_dir(data_dir: str | os.PathLike | None = None,
                  download: bool | None = None) -> Path:
    """The `cifar-10-batches-bin` folder to read from.

    Where to look, first match wins: the `data_dir` argument, then $NUMPY_RESNET_DATA, then
    the cache folder (see `cache_dir`). Each may name the batches folder or its parent, and
    the first place given is the only one looked at. If it lacks the files:
      download=None (default)  fetch them into the cache, but never into a place the user
                               gave: a mistyped path raises FileNotFoundError instead
      download=True            fetch them into whichever place was chosen
      download=False           never fetch: FileNotFoundError
    The error names the missing files, the folders looked in and how to get the data;
    nothing is created on the way.
    """
    if data_dir is not None:
        root, source = data_dir, "data_dir / --data-dir"
    elif os.environ.get("NUMPY_RESNET_DATA"):
        root, source = os.environ["NUMPY_RESNET_DATA"], "$NUMPY_RESNET_DATA"
    else:
        root, source = cache_dir(), None
    root = Path(root).expanduser()
    for folder in _candidates(root):
        if not _missing(folder):
            return folder
    if not root.is_file() and (download or (download is None and source is None)):
        return download_cifar10(root.parent if root.name == FOLDER else root)
    raise _not_found(root, source)


def _not_found(root: Path, source: str | None) -> OSError:
    """The one-line error for a place that lacks the data: what, where, and how to get it."""
    if source is None:
        source = "the cache folder"
        how = (f"call without download=False to download it there (170 MB), or point "
               f"$NUMPY_RESNET_DATA or --data-dir at a {FOLDER} folder that holds it")
    else:
        how = (f"point $NUMPY_RESNET_DATA or --data-dir at a {FOLDER} folder that holds "
               f"the files, or set neither to download CIFAR-10 (170 MB) once into "
               f"{cache_dir()}")
    if root.is_file():
        return NotADirectoryError(f"CIFAR-10 not found: {root} is a file, expected a {FOLDER} "
                                  f"folder (from {source}); {how}")
    if not root.exists():
        return FileNotFoundError(f"CIFAR-10 not found: {root} does not exist (from {source}); "
                                 f"{how}")
    folders = _candidates(root)
    looked = " and ".join(str(folder) for folder in folders)
    missing = min((_missing(folder) for folder in folders), key=len)
    return FileNotFoundError(f"CIFAR-10 not found: missing {', '.join(missing)} (looked in "
                             f"{looked}, from {source}); {how}")


def download_cifar10(root: str | os.PathLike) -> Path:
    """Fetch and unpack the binary archive into root/cifar-10-batches-bin; returns it.

    The archive is checked against CIFAR10_MD5 and unpacked into a staging folder first,
    so an interrupted run never leaves a half-written batches folder behind.
    """
    root = Path(root).expanduser()
    archive = root / "cifar-10-binary.tar.gz"
    if not (archive.exists() and md5sum(archive) == CIFAR10_MD5):
        try:
            download_url(CIFAR10_URL, archive, md5=CIFAR10_MD5)
        except OSError as err:  # offline, refused, HTTP errors, a full disk
            raise OSError(f"{err}; try again when online, or set $NUMPY_RESNET_DATA to a "
                          f"{FOLDER} folder that holds the files") from err
    staging = root / (FOLDER + ".extracting")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        safe_extract(archive, staging)
        extracted = staging / FOLDER
        if _missing(extracted):
            raise ValueError(f"{archive} does not hold {FOLDER}/ with the six batch files "
                             f"(missing {', '.join(_missing(extracted))})")
        folder = root / FOLDER
        folder.mkdir(exist_ok=True)
        for file in extracted.iterdir():
            os.replace(file, folder / file.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    archive.unlink()
    return folder


# ----- balanced subsets ---------------------------------------------------------------------
def class_quotas(available: np.ndarray, size: int) -> np.ndarray:
    """How many images to take from each class so that `size` are taken in all.

    Deal them out round robin, one per class per round in label order, skipping classes
    that have run out. When every class has enough, each gets size // 10 and the first
    size % 10 classes (lowest labels) get one more.  available: (K,) -> quotas: (K,)
    """
    available = np.asarray(available)
    if not 0 <= size <= available.sum():
        raise ValueError(f"asked for {size} images, but only {available.sum()} are available")
    level = 0  # full rounds dealt: every class holds min(available, level)
    while level < available.max() and np.minimum(available, level + 1).sum() <= size:
        level += 1
    quotas = np.minimum(available, level)
    left = size - quotas.sum()  # the last, partial round
    still_have = np.flatnonzero(available > level)
    quotas[still_have[:left]] += 1
    return quotas


def balanced_subset(labels: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """Indices of `size` images, as equal per class as possible (see `class_quotas`).

    Which images of a class are taken is random, fixed by `seed`; the indices come back
    sorted, i.e. in file order.  labels: (N,) -> indices: (size,) int64
    """
    rng = np.random.default_rng(seed)
    quotas = class_quotas(np.bincount(labels, minlength=len(CLASSES)), size)
    chosen = [rng.permutation(np.flatnonzero(labels == k))[:quota]
              for k, quota in enumerate(quotas)]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


# ----- the whole data set ------------------------------------------------------------------
def load_cifar10(data_dir: str | os.PathLike | None = None, train_size: int | None = None,
                 test_size: int | None = None, seed: int = 0,
                 download: bool | None = None) -> CIFAR10:
    """Read CIFAR-10 (see `find_data_dir` for where from and when it downloads) into uint8 arrays.

    train_size / test_size: keep a class-balanced random subset of that many images
    (`balanced_subset`, seeded by `seed`); None keeps everything. Asking for more images
    than the files hold raises ValueError.
    """
    folder = find_data_dir(data_dir, download=download)
    parts = [read_batch(folder / name) for name in TRAIN_FILES]
    x_train = np.concatenate([x for x, _ in parts])
    y_train = np.concatenate([y for _, y in parts])
    x_test, y_test = read_batch(folder / TEST_FILE)
    if train_size is not None:
        keep = _subset(y_train, train_size, seed, "train")
        x_train, y_train = x_train[keep], y_train[keep]
    if test_size is not None:
        keep = _subset(y_test, test_size, seed + 1, "test")
        x_test, y_test = x_test[keep], y_test[keep]
    return CIFAR10(x_train, y_train, x_test, y_test, read_classes(folder))


def _subset(labels: np.ndarray, size: int, seed: int, split: str) -> np.ndarray:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"load_cifar10: {split}_size must be a whole number of images "
                         f"from 1 to {labels.size}, got {size!r}")
    if size > labels.size:
        raise ValueError(f"load_cifar10: {split}_size={size}, but the {split} files hold "
                         f"only {labels.size} images")
    return balanced_subset(labels, size, seed)
