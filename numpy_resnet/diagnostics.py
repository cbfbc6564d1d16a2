"""Gradient flow: how big the gradient is at every layer, and which path it took.

He et al. (2016) built residual nets because deep plain nets train badly. One batch shows
why. Backprop multiplies dL/dy by one Jacobian per layer, so in a plain net of depth L

    dL/dx_0 = J_1ᵀ J_2ᵀ ... J_Lᵀ dL/dy_L

and the weight gradient of a conv near the input can differ from one near the output by
orders of magnitude. A residual block adds the identity, dL/dx = F'ᵀ d + d, so every
block passes d down unchanged besides what its branch makes of it.

    with GradientRecorder(model) as recorder:       # hooks on every layer and block
        loss = criterion(model(x), y)
        model.backward(criterion.backward())
    report = recorder.report(loss=loss)             # the hooks are gone again

    report = gradient_flow(model, x, y)             # the same in one call, model left as found
    print(report.table());  report.first_last_ratio()

What is recorded, per forward/backward, by Module hooks (forward hooks and full backward
hooks, as in PyTorch; see nn/module.py), so that no layer's code changes:
    layers  (every leaf module, in the order forward ran it)
            output mean, std, zero fraction (after a ReLU: the dead units),
            |dL/dy| at its output, |dL/dx| at its input, |ΔdL/dW| this backward added
    blocks  (BasicBlock and Bottleneck of blocks.py, PreActBasicBlock and PreActBottleneck
            of preact.py, subclasses included)
            |dL/dy|, |dL/dx|, and the split dL/dx = dx_residual + dx_shortcut, read off
            the block's own layers (see block_paths): dx_residual is what F's first layer
            hands back, dx_shortcut what the downsample hands back, or with the identity the
            gradient at the sum, zero in a plain block
    stages  the identity-mapping measurement. Within a stage whose blocks keep the shape, a
            pre-activation net has x_L = x_l + Σ_{i=l}^{L-1} F(x_i), so
                dL/dx_l = dL/dx_L + (the rest, through the branches):
            the direct term dL/dx_L (x_L: the stage's last block output) arrives exactly. In
            the original blocks each ReLU after a sum masks it on the way. For every block
            from the stage's first shape-preserving one on: |dL/dx_L|, |dL/dx_l − dL/dx_L|
            and cos(dL/dx_l, dL/dx_L)
All norms are Frobenius norms over the whole batch: |a| = sqrt(Σ a²).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .blocks import BasicBlock, Bottleneck
from .data import normalize
from .nn import Conv2d, CrossEntropyLoss, Module
from .nn.module import RemovableHandle
from .preact import PreActBasicBlock, PreActBottleneck


def norm(a: np.ndarray) -> float:
    """|a| = sqrt(Σ a²), summed in float64."""
    return float(np.sqrt(np.sum(np.square(a, dtype=np.float64))))


@dataclass
class LayerRecord:
    """One leaf module. shape: its output's shape. None: not recorded (e.g. no backward yet)."""
    name: str
    kind: str
    shape: tuple
    mean: float
    std: float
    zero_fraction: float                    # fraction of outputs exactly 0 (dead ReLUs)
    grad_output_norm: float | None = None   # |dL/dy|
    grad_input_norm: float | None = None    # |dL/dx|
    weight_grad_norm: float | None = None   # |dL/dW| added by this backward (layers with a weight)
    kernel_size: tuple | None = None        # convolutions only

    @property
    def is_conv(self) -> bool:
        return self.kind == "Conv2d"

    @property
    def on_shortcut(self) -> bool:
        """Off the main path: inside a block's `downsample` (a projection shortcut) or its
        `gate` (gated.py's 1x1 conv that weighs the two paths)."""
        return bool({"downsample", "gate"} & set(self.name.split(".")))


@dataclass
class BlockRecord:
    """One residual (or plain) block.   dL/dx = dx_residual + dx_shortcut."""
    name: str
    residual: bool
    zero_fraction: float                    # of the block's output (its last ReLU)
    grad_output_norm: float                 # |dL/dy|
    grad_input_norm: float                  # |dL/dx|
    residual_norm: float                    # |F'ᵀ d|,  d = dL/d(F(x) + shortcut(x))
    shortcut_norm: float                    # |d| (identity) or |downsample'ᵀ d|; 0 in a plain block
    split_error: float                      # |dx_residual + dx_shortcut - total| / |total|,
                                            # total = dL/dx, or dL/dpre where a pre-activation
                                            # projection block's two paths part (block_paths)
    # the identity mapping: x_L is the output of the stage's last block; None where the
    # block changes the shape (the direct term is defined between equal shapes only)
    direct_norm: float | None = None        # |dL/dx_L|, the direct term
    rest_norm: float | None = None          # |dL/dx_l - dL/dx_L|, through the branches
    direct_cosine: float | None = None      # cos(dL/dx_l, dL/dx_L)

    @property
    def direct_share(self) -> float | None:
        """|dL/dx_L| / |dL/dx_l|: 1 and cosine 1 when the direct term is all that arrives."""
        if self.direct_norm is None:
            return None
        return self.direct_norm / max(self.grad_input_norm, 1e-300)


@dataclass
class GradFlowReport:
    """Everything one forward/backward recorded, in depth order."""
    model: str
    loss: float
    layers: list[LayerRecord] = field(default_factory=list)
    blocks: list[BlockRecord] = field(default_factory=list)

    def convs(self, main_path: bool = True) -> list[LayerRecord]:
        """Conv layers in depth order; main_path=True leaves out the shortcuts and the gates."""
        return [r for r in self.layers if r.is_conv and not (main_path and r.on_shortcut)]

    def conv_grad_norms(self) -> np.ndarray:
        """|dL/dW| of each main-path conv, input to output: (n_convs,)."""
        return np.array([r.weight_grad_norm for r in self.convs()], dtype=np.float64)

    def first_last_ratio(self) -> float:
        """|dL/dW| of the first conv over that of the last (main path, depth order).

        About 1 when the gradient reaches every layer alike; in a deep plain net at
        initialisation it can be thousands or millions.
        """
        norms = self.conv_grad_norms()
        if len(norms) < 2:
            raise ValueError(f"first_last_ratio: {self.model} has {len(norms)} conv layers, need 2")
        return float(norms[0] / norms[-1])

    def table(self) -> str:
        """Two text tables: the conv layers, then the blocks and their gradient split."""
        lines = [f"{self.model}: loss {self.loss:.4f}, first/last conv |dL/dW| = "
                 f"{self.first_last_ratio():.4g}", "", _conv_table(self.convs(main_path=False))]
        if self.blocks:
            lines += ["", _block_table(self.blocks)]
        if any(b.direct_norm is not None for b in self.blocks):
            lines += ["", _identity_table(self.blocks)]
        return "\n".join(lines)

    def direct_cosines(self) -> np.ndarray:
        """cos(dL/dx_l, dL/dx_L) of every block that has it, in depth order."""
        return np.array([b.direct_cosine for b in self.blocks if b.direct_cosine is not None],
                        dtype=np.float64)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> GradFlowReport:
        layers = [_layer_from_json(r) for r in data["layers"]]
        return cls(data["model"], data["loss"], layers, [BlockRecord(**b) for b in data["blocks"]])


def _layer_from_json(fields: dict) -> LayerRecord:
    """JSON turns tuples into lists; turn them back."""
    record = LayerRecord(**fields)
    record.shape = tuple(record.shape)
    if record.kernel_size is not None:
        record.kernel_size = tuple(record.kernel_size)
    return record


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3e}"


def _conv_table(convs: list[LayerRecord]) -> str:
    header = (f"{'#':>3} {'conv':<24} {'kernel':>6} {'output':>16} {'mean':>8} {'std':>7} "
              f"{'|dL/dW|':>10} {'|dL/dy|':>10} {'|dL/dx|':>10}")
    rows = [header, "-" * len(header)]
    depth = 0                                   # numbered along the main path only
    for r in convs:
        if not r.on_shortcut:
            depth += 1
        kernel = "x".join(str(k) for k in r.kernel_size)
        rows.append(f"{'' if r.on_shortcut else depth:>3} {r.name:<24} {kernel:>6} "
                    f"{'x'.join(map(str, r.shape[1:])):>16} {r.mean:>8.3f} {r.std:>7.3f} "
                    f"{_fmt(r.weight_grad_norm):>10} {_fmt(r.grad_output_norm):>10} "
                    f"{_fmt(r.grad_input_norm):>10}")
    return "\n".join(rows)


def _block_table(blocks: list[BlockRecord]) -> str:
    header = (f"{'block':<12} {'dead':>5} {'|dL/dy|':>10} {'|dL/dx|':>10} {'|via F|':>10} "
              f"{'|via skip|':>10} {'skip share':>10} {'split err':>9}")
    rows = [header, "-" * len(header)]
    for b in blocks:
        total = b.residual_norm + b.shortcut_norm
        skip = _fmt(b.shortcut_norm) if b.residual else "-"
        share = f"{b.shortcut_norm / total:.3f}" if b.residual and total > 0 else "-"
        rows.append(f"{b.name:<12} {b.zero_fraction:>5.2f} {b.grad_output_norm:>10.3e} "
                    f"{b.grad_input_norm:>10.3e} {b.residual_norm:>10.3e} {skip:>10} "
                    f"{share:>10} {b.split_error:>9.1e}")
    return "\n".join(rows)


def _identity_table(blocks: list[BlockRecord]) -> str:
    header = (f"{'block':<12} {'|dL/dx_l|':>10} {'|dL/dx_L|':>10} {'|rest|':>10} "
              f"{'direct/all':>10} {'cos(l, L)':>9}")
    rows = ["identity mapping: dL/dx_l = dL/dx_L (direct) + rest; x_L = the stage's output",
            header, "-" * len(header)]
    for b in blocks:
        if b.direct_norm is not None:
            rows.append(f"{b.name:<12} {b.grad_input_norm:>10.3e} {b.direct_norm:>10.3e} "
                        f"{b.rest_norm:>10.3e} {b.direct_share:>10.3f} {b.direct_cosine:>9.4f}")
    return "\n".join(rows)


PREACT_BLOCKS = (PreActBasicBlock, PreActBottleneck)


def is_block(module: Module) -> bool:
    """A block of blocks.py, y = relu(F(x) [+ shortcut(x)]), or of preact.py, y = F(x) [+ shortcut]."""
    return isinstance(module, (BasicBlock, Bottleneck) + PREACT_BLOCKS)


def block_paths(block: Module) -> dict[str, tuple[Module, str]]:
    """Where a block's split is read: part -> (module, "input" or "output"), the gradient
    that module's backward hands back (input) or receives (output).

        residual   F'ᵀ d: what F's first layer hands back
        shortcut   what the shortcut hands back (absent in a plain block)
        total      what the two add up to, where that is not the block's dL/dx

    Original block: F starts at conv1; the identity hands on the gradient at the sum, which
    is what the ReLU after the sum hands back. Pre-activation block with the identity: F
    starts at bn1 and nothing follows the sum, so the identity hands on dL/dy itself. With a
    projection both paths read pre = relu1(bn1(x)) and part there: the split is of dL/dpre
    (what relu1 receives), F's part from conv1, the shortcut's from the downsample.
    """
    if isinstance(block, PREACT_BLOCKS):
        if block.residual and block.downsample is not None:
            return {"residual": (block.conv1, "input"), "shortcut": (block.downsample, "input"),
                    "total": (block.relu1, "output")}
        paths = {"residual": (block.bn1, "input")}
        if block.residual:
            paths["shortcut"] = (block, "output")
        return paths
    last_relu = block.relu3 if isinstance(block, Bottleneck) else block.relu2
    paths = {"residual": (block.conv1, "input")}
    if block.residual:
        paths["shortcut"] = (last_relu if block.downsample is None else block.downsample, "input")
    return paths


def _stages(model: Module) -> dict[str, list[str]]:
    """Blocks grouped by the module that holds them (a stage: layer1, layer2, ...), in order."""
    stages: dict[str, list[str]] = {}
    for name, module in model.named_modules():
        if is_block(module):
            stages.setdefault(name.rpartition(".")[0], []).append(name)
    return stages


class GradientRecorder:
    """Context manager: record activations and gradients of every layer of `model`.

    On entry it registers a forward hook and full backward hooks on each leaf module and
    block (and, for a block's split, on the layers block_paths names); on exit it
    removes them all, even when the `with` body raised, so no hook stays behind. A hooked
    layer is called on its own, so on the fast engine a block runs unfused, each layer
    through its fast twin; the numbers are the same on both engines.
    Each forward/backward overwrites the last record; `report()` reads it. Set
    `recorder.active = False` to pass through without recording (e.g. between snapshots).
    """

    def __init__(self, model: Module):
        self.model = model
        self.active = True
        self.layers: dict[str, dict] = {}       # name -> fields of LayerRecord, in forward order
        self.blocks: dict[str, dict] = {}       # name -> fields of BlockRecord
        self._stage_grads: dict[str, np.ndarray] = {}   # stage -> dL/dx_L, this backward
        self._handles: list[RemovableHandle] = []

    def __enter__(self) -> GradientRecorder:
        try:
            stage_of = {name: (stage, names) for stage, names in _stages(self.model).items()
                        for name in names}
            for name, module in self.model.named_modules():
                if is_block(module):
                    self._hook_block(name, module, *stage_of[name])
                elif not list(module.children()):
                    self._hook_layer(name, module)
        except BaseException:
            self._remove_hooks()                # a half-hooked model is not left behind
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._remove_hooks()

    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    # ----- layers: activation statistics, gradient norms, weight gradients ----------------
    def _hook_layer(self, name: str, layer: Module) -> None:
        weight_grad_before = []                 # dL/dW before this backward, to subtract

        def after_forward(module, args, output):
            if self.active:
                self.layers.setdefault(name, {}).update(_layer_fields(name, module, output))

        def before_backward(module, grad_output):
            weight_grad_before.clear()
            if self.active and "weight" in module._parameters:
                weight_grad_before.append(module.weight.grad.copy())

        def after_backward(module, grad_input, grad_output):
            if not self.active:
                return
            (dx,), (dy,) = grad_input, grad_output
            record = self.layers.setdefault(name, {})
            record["grad_output_norm"] = norm(dy)
            record["grad_input_norm"] = norm(dx) if dx is not None else float("nan")   # need_input_grad=False
            if weight_grad_before:                       # what this call added: ΔdL/dW
                record["weight_grad_norm"] = norm(module.weight.grad - weight_grad_before.pop())

        self._handles += [layer.register_forward_hook(after_forward),
                          layer.register_full_backward_pre_hook(before_backward),
                          layer.register_full_backward_hook(after_backward)]

    # ----- blocks: dL/dx = dx_residual + dx_shortcut, and dL/dx_l against dL/dx_L -----------
    def _hook_block(self, name: str, block: Module, stage: str, stage_blocks: list[str]) -> None:
        parts: dict[str, np.ndarray] = {}       # the gradient at each path's layer, this backward

        def after_forward(module, args, output):
            if self.active:
                self.blocks[name] = {"zero_fraction": float(np.mean(output == 0))}

        def keep(part: str, which: str):
            def after_backward(module, grad_input, grad_output):
                parts[part] = (grad_input if which == "input" else grad_output)[0]
            return after_backward

        def before_block_backward(module, grad_output):
            parts.clear()
            if self.active and name == stage_blocks[-1]:
                self._stage_grads[stage] = grad_output[0]         # dL/dx_L: backward starts here

        def after_block_backward(module, grad_input, grad_output):
            if self.active:
                fields = _block_fields(name, block, grad_output[0], grad_input[0], parts)
                fields.update(_identity_fields(grad_input[0], self._stage_grads.get(stage)))
                self.blocks.setdefault(name, {}).update(fields)
            if name == stage_blocks[0]:
                self._stage_grads.pop(stage, None)                # the stage's backward is over
            parts.clear()

        for part, (module, which) in block_paths(block).items():   # before the block's own hook
            self._handles.append(module.register_full_backward_hook(keep(part, which)))
        self._handles += [block.register_forward_hook(after_forward),
                          block.register_full_backward_pre_hook(before_block_backward),
                          block.register_full_backward_hook(after_block_backward)]

    def report(self, model: str = "", loss: float = float("nan")) -> GradFlowReport:
        """The last forward/backward as a GradFlowReport (layers in depth order)."""
        layers = [LayerRecord(**fields) for fields in self.layers.values() if "name" in fields]
        blocks = [BlockRecord(name=n, **fields) for n, fields in self.blocks.items()
                  if "split_error" in fields]
        return GradFlowReport(model or type(self.model).__name__, float(loss), layers, blocks)


def _layer_fields(name: str, module: Module, out: np.ndarray) -> dict:
    """Statistics of one forward output: (N, ...) -> mean, std, fraction exactly 0."""
    fields = {"name": name, "kind": type(module).__name__, "shape": tuple(out.shape),
              "mean": float(out.mean(dtype=np.float64)), "std": float(out.std(dtype=np.float64)),
              "zero_fraction": float(np.mean(out == 0))}
    if isinstance(module, Conv2d):
        fields["kernel_size"] = tuple(module.weight.shape[2:])
    return fields


def _block_fields(name: str, block: Module, grad_output: np.ndarray, grad_input: np.ndarray,
                  parts: dict) -> dict:
    """Norms of the block's gradients and of its two paths, and how well they add up."""
    paths = block_paths(block)
    missing = [part for part in paths if part not in parts]
    if missing:
        names = {id(m): n for n, m in block.named_modules()}
        layers = ", ".join(f"{names[id(paths[p][0])] or 'block'} ({p})" for p in missing)
        raise RuntimeError(f"GradientRecorder: {name} ({type(block).__name__}) ran backward "
                           f"without calling the backward of {layers}")
    dx_residual = parts["residual"]                             # F'ᵀ d
    dx_shortcut = parts.get("shortcut", np.zeros_like(dx_residual))    # zero in a plain block
    total = parts.get("total", grad_input)                      # where the two paths part
    total_norm = norm(total)
    return {"residual": bool(block.residual),
            "grad_output_norm": norm(grad_output), "grad_input_norm": norm(grad_input),
            "residual_norm": norm(dx_residual), "shortcut_norm": norm(dx_shortcut),
            "split_error": norm(dx_residual + dx_shortcut - total) / max(total_norm, 1e-300)}


def _identity_fields(grad_input: np.ndarray, stage_grad: np.ndarray | None) -> dict:
    """dL/dx_l = dL/dx_L + rest: the norms of both terms and the cosine of dL/dx_l and dL/dx_L."""
    if stage_grad is None or stage_grad.shape != grad_input.shape:
        return {}
    dx = grad_input.astype(np.float64, copy=False)
    direct = stage_grad.astype(np.float64, copy=False)
    dx_norm, direct_norm = norm(dx), norm(direct)
    cosine = float(np.vdot(dx, direct)) / max(dx_norm * direct_norm, 1e-300)
    return {"direct_norm": direct_norm, "rest_norm": norm(dx - direct), "direct_cosine": cosine}


def gradient_flow(model: Module, x: np.ndarray, y: np.ndarray, name: str = "") -> GradFlowReport:
    """One forward/backward in train mode, recorded; the model is left as it was found.

    x: (N, 3, H, W) uint8 images (normalised here) or floats; y: (N,) labels.
    Running statistics, gradients and train/eval mode are restored afterwards.
    """
    if x.dtype == np.uint8:
        x = normalize(x)
    x = x.astype(model.dtype, copy=False)
    saved = _save_state(model)
    criterion = CrossEntropyLoss()
    try:
        model.train()
        model.zero_grad()
        with GradientRecorder(model) as recorder:
            loss = criterion(model(x), y)
            model.backward(criterion.backward())
        return recorder.report(name, loss)
    finally:
        _restore_state(model, saved)


def _save_state(model: Module) -> tuple:
    buffers = [(m, k, np.array(b, copy=True)) for m in model.modules() for k, b in m._buffers.items()]
    grads = [(p, p.grad.copy()) for p in model.parameters()]
    return model.training, buffers, grads


def _restore_state(model: Module, saved: tuple) -> None:
    training, buffers, grads = saved
    for module, key, value in buffers:
        module._buffers[key] = value
    for p, grad in grads:
        p.grad[...] = grad
    model.train(training)
