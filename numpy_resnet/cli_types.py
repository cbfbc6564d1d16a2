"""The argument types of the `numpy-resnet` command: each turns a flag's text into its value,
or refuses it at parse time with what was expected and what came, which the command prints as
one line (`numpy-resnet train: --epochs must be a positive integer, got '0'`)."""

from __future__ import annotations

import argparse
import math
import re


def subset_size(text: str):
    """A subset size for --train-size / --test-size: a positive count, or 'all'."""
    if text.lower() == "all":
        return "all"
    return _integer(text, 1, "a positive count or 'all'")


def positive_int(text: str) -> int:
    return _integer(text, 1, "a positive integer")


def nonnegative_int(text: str) -> int:
    return _integer(text, 0, "0 or a positive integer")


def _integer(text: str, smallest: int, expected: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = smallest - 1
    if value < smallest:
        raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}")
    return value


def positive_float(text: str) -> float:
    return _number(text, zero_allowed=False)


def nonnegative_float(text: str) -> float:
    return _number(text, zero_allowed=True)


def _number(text: str, zero_allowed: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and (value > 0 or zero_allowed and value == 0)):
        expected = "0 or a positive number" if zero_allowed else "a positive number"
        raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}")
    return value


def model_name(text: str) -> str:
    from .models import MODEL_NAMES

    if text not in MODEL_NAMES:
        raise argparse.ArgumentTypeError(f"{text!r} is not a model; choose from "
                                         f"{', '.join(MODEL_NAMES)}")
    return text


def image_shape(text: str) -> tuple[int, int, int]:
    """--input CxHxW, e.g. 3x224x224 -> (3, 224, 224)."""
    parts = text.lower().split("x")
    if len(parts) != 3 or not all(re.fullmatch(r"\d+", p) and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"takes CxHxW, three positive integers such as "
                                         f"3x224x224, got {text!r}")
    return tuple(int(p) for p in parts)
