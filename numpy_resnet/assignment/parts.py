"""The parts of the assignment: what a student writes, where, and how many points it is worth.

Each part owns the solution regions marked with its name in the files listed here, and is graded by
grading_tests/grade_<name>.py. To add a part: mark its regions, add a row, write the grader.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Part:
    name: str
    points: int
    files: tuple[str, ...]          # paths inside numpy_resnet/ holding the part's regions
    description: str


PARTS: dict[str, Part] = {p.name: p for p in [
    Part("conv", 20, ("nn/conv.py", "kernels/im2col_numpy.py"),
         "im2col and col2im (NumPy), Conv2d forward and backward"),
    Part("batchnorm", 15, ("nn/batchnorm.py",),
         "BatchNorm2d forward (train and eval), running statistics, backward"),
    Part("activations", 5, ("nn/activation.py",), "ReLU forward and backward"),
    Part("pooling", 10, ("nn/pooling.py",), "MaxPool2d, AvgPool2d and AdaptiveAvgPool2d backward"),
    Part("linear", 10, ("nn/linear.py",), "Linear forward and backward"),
    Part("loss", 10, ("nn/loss.py",), "CrossEntropyLoss (with label smoothing) forward and backward"),
    Part("residual", 10, ("blocks.py",), "BasicBlock and Bottleneck forward and backward"),
    Part("optim", 10, ("optim/sgd.py",), "the SGD step: weight decay, momentum, dampening, Nesterov"),
    Part("gradcheck", 10, ("gradcheck.py",), "the finite differences of the gradient checker"),
]}


def parse_parts(text: str | None) -> list[str]:
    """"conv,linear" -> ["conv", "linear"] in table order; None or "all" -> every part."""
    if text is None or text.strip() in ("", "all"):
        return list(PARTS)
    wanted = [w.strip() for w in text.split(",") if w.strip()]
    unknown = [w for w in wanted if w not in PARTS]
    if unknown:
        raise ValueError(f"assignment: unknown part(s) {unknown}; choose from {list(PARTS)}")
    return [name for name in PARTS if name in wanted]
