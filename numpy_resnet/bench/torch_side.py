"""The PyTorch side of `numpy-resnet bench --vs-torch`: the same ResNet-18, the same step.

The only module of numpy_resnet that imports torch; the bench runs `probe` in a fresh process
(`python -c`), so torch is never loaded next to our kernels. torchvision is not needed: the
network is written out below with torchvision's attribute names, so its state_dict keys and
shapes are those of `get_model("resnet18", num_classes=10, stem="cifar", width=w)`.

    step       optimizer.zero_grad(); CrossEntropyLoss(model(x), y).backward(); SGD step
               (lr 0.01, momentum 0.9, weight decay 5e-4), as timing.make_training_step
    inference  model.eval() under torch.inference_mode()
    malloc     as installed, or (same_malloc=True, `bench --torch-same-malloc`) with the glibc
               thresholds our fast engine sets for itself (kernels/memory.py). As installed, glibc
               hands the large freed activations back to the system and faults them in again
               on the next pass, which slows PyTorch's step and, in a process that only runs
               inference, its forward pass (by how much: docs/performance.md)
    memory     process.peak_rss_of around the first full-size step, after a warm-up on 2 images
    serve      the step and inference timed on request, for the rounds that alternate with ours
    layers     each distinct (conv, batchnorm, relu, linear; input shape) of the network alone,
               forward, and backward as autograd.grad for the input and the parameters,
               labelled as timing.layer_label labels ours so that the report can pair them
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch
from torch import nn

from ..kernels.memory import keep_freed_memory
from .process import peak_rss_of
from .timing import IMAGE, NUM_CLASSES, architecture, median_time, run_times


class BasicBlock(nn.Module):
    """y = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)); the shortcut is option B."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.downsample = None
        if stride != 1 or inplanes != planes:               # 1x1 conv + BN projection
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu2(out + shortcut)


class ResNet18Cifar(nn.Module):
    """x: (N, 3, 32, 32) -> (N, num_classes). 3x3 stem, no max pool, stages of width·1, 2, 4, 8."""

    def __init__(self, width: int = 16, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        inplanes = width
        for i in range(4):                                  # layer1 ... layer4, two blocks each
            planes, stride = width * 2 ** i, 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", nn.Sequential(BasicBlock(inplanes, planes, stride),
                                                         BasicBlock(planes, planes)))
            inplanes = planes
        self.fc = nn.Linear(inplanes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


def layer_label(m: nn.Module) -> str | None:
    """timing.layer_label's name for the same layer, or None for a layer not timed alone."""
    if isinstance(m, nn.Conv2d):
        k, s = m.kernel_size[0], m.stride[0]
        return f"conv{k}x{k} {m.in_channels}->{m.out_channels}" + (f" s{s}" if s != 1 else "")
    if isinstance(m, nn.BatchNorm2d):
        return f"batchnorm {m.num_features}"
    if isinstance(m, nn.ReLU):
        return "relu"
    if isinstance(m, nn.Linear):
        return f"linear {m.in_features}->{m.out_features}"
    return None


def layer_times(model: nn.Module, x: torch.Tensor, steps: int, warmup: int, train: bool) -> list:
    """[{"layer", "input", "forward_ms", "backward_ms"}] for each distinct layer and input shape."""
    seen = {}

    def record(module, inputs, output):
        label = layer_label(module)
        if label is not None:
            seen.setdefault((label, tuple(inputs[0].shape)), module)

    hooks = [m.register_forward_hook(record) for m in model.modules()]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    return [_time_one_layer(label, shape, module, steps, warmup, train)
            for (label, shape), module in seen.items()]


def _time_one_layer(label: str, shape: tuple, module: nn.Module, steps: int, warmup: int,
                    train: bool) -> dict:
    inp = torch.randn(shape, requires_grad=train)
    with torch.set_grad_enabled(train):
        forward = median_time(lambda: module(inp), steps, warmup)
        row = {"layer": label, "input": list(shape), "forward_ms": 1e3 * forward, "backward_ms": None}
        if train:
            out = module(inp)
            dy = torch.randn_like(out)
            wrt = [inp, *module.parameters()]
            backward = median_time(lambda: torch.autograd.grad(out, wrt, dy, retain_graph=True),
                                   steps, warmup)
            row["backward_ms"] = 1e3 * backward
    return row


def _setup(width: int, batch_size: int, threads: int, same_malloc: bool):
    """The torch ResNet-18, its training step and inference, a batch of 2 and a full batch."""
    if same_malloc:
        keep_freed_memory()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = ResNet18Cifar(width)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    rng = np.random.default_rng(0)

    def batch(n: int):
        x = torch.from_numpy(rng.standard_normal((n, *IMAGE)).astype(np.float32))
        return x, torch.from_numpy(rng.integers(0, NUM_CLASSES, n))

    def train_step(x: torch.Tensor, y: torch.Tensor) -> None:
        optimizer.zero_grad()
        criterion(model(x), y).backward()
        optimizer.step()

    def inference(x: torch.Tensor) -> None:
        with torch.inference_mode():
            model(x)

    return model, train_step, inference, batch(2), batch(batch_size)


def probe(width: int, batch_size: int, steps: int, warmup: int, threads: int,
          train: bool = True, same_malloc: bool = False) -> None:
    """Print as JSON: PyTorch's peak step memory, training step and inference (ms, images/s)."""
    model, train_step, inference, small, full = _setup(width, batch_size, threads, same_malloc)
    if train:
        train_step(*small)                                  # warm-up, momentum buffers made
        memory = peak_rss_of(lambda: train_step(*full))
    else:
        model.eval()
        inference(small[0])
        memory = peak_rss_of(lambda: inference(full[0]))
    result = {"torch": torch.__version__, "threads": torch.get_num_threads(), "memory": memory,
              "same_malloc": same_malloc,
              "architecture": architecture({k: v.shape for k, v in model.state_dict().items()})}
    if train:
        model.train()
        seconds = median_time(lambda: train_step(*full), steps, warmup)
        result["train"] = {"ms": 1e3 * seconds, "images_per_s": batch_size / seconds}
    model.eval()
    seconds = median_time(lambda: inference(full[0]), steps, warmup)
    result["inference"] = {"ms": 1e3 * seconds, "images_per_s": batch_size / seconds}
    model.train(train)
    result["layers"] = layer_times(model, full[0], steps, warmup, train)
    print(json.dumps(result))


def serve(width: int, batch_size: int, threads: int, same_malloc: bool = False) -> None:
    """Time on request, for bench's alternating rounds: read "train S W" or "eval S W" lines,
    answer each with the JSON list of S step times in seconds (after W warm-up steps)."""
    model, train_step, inference, _, (x, y) = _setup(width, batch_size, threads, same_malloc)
    runs = {"train": lambda: train_step(x, y), "eval": lambda: inference(x)}
    print("ready", flush=True)
    for line in sys.stdin:                              # until "quit" or the end of the input
        if line.strip() == "quit":
            break
        what, steps, warmup = line.split()
        model.train(what == "train")
        print(json.dumps(run_times(runs[what], int(steps), int(warmup))), flush=True)
