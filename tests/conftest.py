"""Fixtures shared by the test files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The real-image CIFAR-10 subset kept beside the repository (<clone>/../shared/...).
SHARED = Path(__file__).resolve().parents[2] / "shared"
CIFAR_SUBSET = SHARED / "data" / "cifar10-subset" / "cifar-10-batches-bin"


@pytest.fixture(scope="session")
def cifar_dir() -> Path:
    """The cifar-10-batches-bin folder: $NUMPY_RESNET_DATA, else the shared subset."""
    candidates = [CIFAR_SUBSET]
    if os.environ.get("NUMPY_RESNET_DATA"):
        candidates.insert(0, Path(os.environ["NUMPY_RESNET_DATA"]))
    for path in candidates:
        for folder in (path, path / "cifar-10-batches-bin"):
            if (folder / "data_batch_1.bin").is_file():
                return folder
    pytest.skip(f"CIFAR-10 binary files not found in {[str(p) for p in candidates]}; "
                f"set NUMPY_RESNET_DATA to a cifar-10-batches-bin folder")


@pytest.fixture(autouse=True)
def fast_engine_unless_asked():
    """Every test starts on the fast engine, the library's default, and leaves no other behind.

    A student's handout defaults to the reference engine (assignment/make.py); starting here
    lets its copy of these tests run the same way.
    """
    from numpy_resnet import use_engine
    with use_engine("fast"):
        yield


@pytest.fixture(params=["reference", "fast"])
def engine(request) -> str:
    """Run the test on each engine: the textbook's own code, then the fast twins."""
    from numpy_resnet import use_engine
    with use_engine(request.param):
        yield request.param
