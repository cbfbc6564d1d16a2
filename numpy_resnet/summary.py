"""A model summary: every layer's output shape, parameters and multiply-accumulates (MACs).

`summary(model, (3, 224, 224))` runs one forward pass on a batch of one (in eval mode, so
no running statistic moves) and records what each leaf layer (a module with no children)
saw and produced. The costs, counted as torchvision counts its "GFLOPS" (which are MACs):

    Conv2d   C_out · H_out · W_out · (C_in / groups) · k · k
    Linear   in_features · out_features
    BatchNorm, ReLU, pooling and the residual additions: not counted

so ResNet-18 at 224x224 comes to 1.814 GMACs and ResNet-50 to 4.089.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .nn import Conv2d, Linear, Module


@dataclass
class LayerRow:
    """One leaf layer: its dotted name, type, output shape (batch of 1), parameters, MACs."""
    name: str
    type: str
    output_shape: tuple
    params: int
    macs: int


@dataclass
class SummaryResult:
    model: str
    input_shape: tuple
    rows: list[LayerRow] = field(default_factory=list)
    total_params: int = 0
    trainable_params: int = 0

    @property
    def total_macs(self) -> int:
        return sum(row.macs for row in self.rows)

    def __str__(self) -> str:
        header = f"{'layer':<32} {'type':<18} {'output shape':<20} {'params':>12} {'MACs':>15}"
        lines = [f"{self.model}, input {self.input_shape}", header, "-" * len(header)]
        for r in self.rows:
            shape = str(tuple(r.output_shape))
            lines.append(f"{r.name:<32} {r.type:<18} {shape:<20} {r.params:>12,} {r.macs:>15,}")
        lines.append("-" * len(header))
        lines.append(f"total params:     {self.total_params:>15,}")
        lines.append(f"trainable params: {self.trainable_params:>15,}")
        lines.append(f"total MACs:       {self.total_macs:>15,}  ({self.total_macs / 1e9:.3f} G)")
        return "\n".join(lines)


def layer_macs(module: Module, output_shape: tuple) -> int:
    """Multiply-accumulates of one leaf layer for one image, from its output shape."""
    if isinstance(module, Conv2d):
        _, c_out, h_out, w_out = output_shape
        k = module.kernel_size
        return c_out * h_out * w_out * (module.in_channels // module.groups) * k * k
    if isinstance(module, Linear):
        return module.in_features * module.out_features
    return 0


def _leaves(model: Module) -> list[tuple[str, Module]]:
    return [(name, m) for name, m in model.named_modules() if not m._modules]


def _record_outputs(leaves: list[tuple[str, Module]], shapes: dict) -> None:
    """Wrap each leaf's forward (on the instance) so that it notes its output shape."""
    for name, module in leaves:
        def recorded(x, _forward=module.forward, _name=name):
            y = _forward(x)
            # a layer with several outputs (res2net.Split) gives one shape per output
            shapes[_name] = y.shape if isinstance(y, np.ndarray) else tuple(p.shape for p in y)
            return y
        module.forward = recorded


def summary(model: Module, input_shape: tuple = (3, 224, 224)) -> SummaryResult:
    """Run one forward on zeros of shape (1, *input_shape) and tabulate every leaf layer.

    The model's train/eval flags are restored afterwards; the layers' caches then hold this
    forward's values, so call it between training steps, not between forward and backward.
    Rows come in the order the forward ran them.
    """
    leaves = _leaves(model)
    modes = {name: m.training for name, m in model.named_modules()}
    shapes = {}
    _record_outputs(leaves, shapes)
    try:
        model.eval()
        model(np.zeros((1, *input_shape), dtype=model.dtype))
    finally:
        for _, module in leaves:
            del module.forward                          # back to the class's forward
        for name, m in model.named_modules():
            object.__setattr__(m, "training", modes[name])

    result = SummaryResult(type(model).__name__, tuple(input_shape))
    modules = dict(leaves)
    for name, shape in shapes.items():                  # in the order the forward ran
        module = modules[name]
        params = sum(p.data.size for p in module._parameters.values())
        result.rows.append(LayerRow(name, type(module).__name__, shape, params,
                                    layer_macs(module, shape)))
    result.total_params = sum(p.data.size for p in model.parameters())
    result.trainable_params = sum(p.data.size for p in model.parameters() if p.requires_grad)
    return result
