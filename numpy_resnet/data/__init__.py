"""Data: CIFAR-10 from its binary files, normalisation, augmentation, mini-batches.

    cifar10.py      find / download / read the binary files, balanced subsets
    download.py     fetch a URL with an MD5 check, unpack a tar without trusting its paths
    transforms.py   normalize, channel_stats, random_crop, random_hflip
    loader.py       iterate_batches and Loader (epochs repeatable from (seed, epoch))
"""

from .cifar10 import (
    CIFAR10,
    CIFAR10_MD5,
    CIFAR10_URL,
    CLASSES,
    balanced_subset,
    cache_dir,
    class_quotas,
    download_cifar10,
    find_data_dir,
    load_cifar10,
    read_batch,
    read_classes,
)
from .download import download_url, md5sum, safe_extract
from .loader import Loader, iterate_batches
from .transforms import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    channel_stats,
    normalize,
    random_crop,
    random_hflip,
)

__all__ = [
    "CIFAR10",
    "CIFAR10_MD5",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR10_URL",
    "CLASSES",
    "Loader",
    "balanced_subset",
    "cache_dir",
    "channel_stats",
    "class_quotas",
    "download_cifar10",
    "download_url",
    "find_data_dir",
    "iterate_batches",
    "load_cifar10",
    "md5sum",
    "normalize",
    "random_crop",
    "random_hflip",
    "read_batch",
    "read_classes",
    "safe_extract",
]
