"""Helpers shared by the grading tests: the grader's own finite differences and comparisons.

Inputs are drawn fresh on every run (an unseeded generator), so outputs cannot be hard-coded.
Nothing here calls numpy_resnet.gradcheck: that is a part the student writes.

Every grading test imports this module, so importing it sets up the process: it checks that
`numpy_resnet` is the student's copy, and switches it to the reference engine. The fast
engine has its own Conv2d, BatchNorm2d, ReLU and blocks, which would answer in place of the
student's code (a stubbed Conv2d would pass); the reference engine runs the student's code.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

rng = np.random.default_rng()


def check_student_package() -> None:
    """Fail loudly if `numpy_resnet` is not the student's copy the grader was pointed at."""
    import numpy_resnet
    expected = os.environ.get("NUMPY_RESNET_STUDENT_DIR")
    if expected:
        here = Path(numpy_resnet.__file__).resolve()
        if Path(expected).resolve() not in here.parents:
            raise RuntimeError(f"grader: imported numpy_resnet from {here}, expected it under {expected}")


def use_the_students_code() -> None:
    """Check the package and run its reference engine: the student's layers, never a fast twin."""
    import numpy_resnet
    check_student_package()
    numpy_resnet.use_engine("reference")


use_the_students_code()


def numeric_gradient(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """dL/dx by central differences, L = f() a scalar that reads `x` (changed in place, restored)."""
    grad = np.zeros_like(x, dtype=np.float64)
    for index in np.ndindex(x.shape):
        original = x[index]
        x[index] = original + h
        plus = f()
        x[index] = original - h
        minus = f()
        x[index] = original
        grad[index] = (plus - minus) / (2 * h)
    return grad


def assert_close(actual, expected, what: str, rtol: float = 1e-5, atol: float = 1e-7) -> None:
    actual = np.asarray(actual, dtype=np.float64) if actual is not None else None
    expected = np.asarray(expected, dtype=np.float64)
    assert actual is not None, f"{what}: got None"
    assert actual.shape == expected.shape, f"{what}: expected shape {expected.shape}, got {actual.shape}"
    error = np.abs(actual - expected)
    bound = atol + rtol * np.abs(expected)
    assert np.all(np.isfinite(actual)), f"{what}: not finite"
    assert np.all(error <= bound), (f"{what}: largest difference {error.max():.3g} "
                                    f"(at {np.unravel_index(error.argmax(), error.shape)})")
