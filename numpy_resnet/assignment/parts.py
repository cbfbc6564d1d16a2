"""The parts of the assignment: what a student writes, where, and how many points it is worth.

Each part lists its stubs: the functions of the library whose bodies a student writes, named by
file (inside numpy_resnet/) and qualified name ("Class.method" or a module-level function).
`keep` is how many leading statements of the body (after the docstring) stay in the handout,
such as a forward's input check or a backward's unpacking of its cache and its gradient check;
the rest of the body becomes the hint and a `raise NotImplementedError("<part>: <hint>")`. The
library itself carries no marker: this table is the whole spec, and make.py stops if a stub no
longer matches the code.
Each part is graded by grading_tests/grade_<name>.py. To add a part: add a row with its stubs,
write the grader.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stub:
    file: str                       # path inside numpy_resnet/, e.g. "nn/conv.py"
    function: str                   # "Conv2d.forward", or "im2col_numpy" at module level
    hint: str                       # what to write, shown in the stub
    keep: int = 0                   # leading statements of the body (after the docstring) kept


@dataclass(frozen=True)
class Part:
    name: str
    points: int
    description: str
    stubs: tuple[Stub, ...]

    @property
    def files(self) -> tuple[str, ...]:
        """The files holding the part's stubs, in the order they are listed."""
        return tuple(dict.fromkeys(stub.file for stub in self.stubs))


PARTS: dict[str, Part] = {p.name: p for p in [
    Part("conv", 20, "im2col and col2im (NumPy), Conv2d forward and backward", (
        Stub("nn/conv.py", "Conv2d.forward", keep=1,
             hint="cols = kernels.im2col(x, k, k, s, p); Y = W·cols for each group (see _weight_by_group) "
                  "+ b; save (cols, x.shape) in self.cache; return y as (N, C_out, H_out, W_out)"),
        Stub("nn/conv.py", "Conv2d.backward", keep=2,
             hint="per group: dW = dY·colsᵀ (add into self.weight.grad), db = Σ dY over (N, H, W), "
                  "dcols = Wᵀ·dY; return kernels.col2im(dcols, x_shape, k, k, s, p)"),
        Stub("kernels/im2col_numpy.py", "im2col_numpy",
             hint="pad x, then cols[(c, i, j), (n, h_o, w_o)] = x_pad[n, c, h_o·s + i, w_o·s + j]; "
                  "loops over (i, j) with strided slices are fine"),
        Stub("kernels/im2col_numpy.py", "col2im_numpy",
             hint="the adjoint of im2col: add each column entry back into a zero padded dx at the place "
                  "im2col read it from (overlapping windows add up), then crop the padding"),
    )),
    Part("batchnorm", 15, "BatchNorm2d forward (train and eval), running statistics, backward", (
        Stub("nn/batchnorm.py", "BatchNorm2d.forward", keep=1,
             hint="train: μ, σ² (biased) per channel over (N, H, W), update the running stats; eval: use "
                  "running_mean/var; x̂ = (x - μ)/√(σ² + ε); cache (x̂, 1/√(σ² + ε), self.training); "
                  "y = γ x̂ + β"),
        Stub("nn/batchnorm.py", "BatchNorm2d._update_running_stats",
             hint="count the batch in num_batches_tracked; m = momentum (or 1/num_batches_tracked if "
                  "None); running ← (1 - m) running + m new, with the unbiased variance σ² M/(M-1)"),
        Stub("nn/batchnorm.py", "BatchNorm2d.backward", keep=2,
             hint="dβ = Σ dy, dγ = Σ dy x̂ (add into .grad); eval: dx = γ dy/√(var + ε); train: "
                  "dx = γ/√(σ² + ε) · (dy - mean(dy) - x̂ · mean(dy x̂))"),
    )),
    Part("activations", 5, "ReLU forward and backward", (
        Stub("nn/activation.py", "ReLU.forward", keep=1,
             hint="remember where x > 0 in self.mask, return max(x, 0)"),
        Stub("nn/activation.py", "ReLU.backward", keep=2,
             hint="the gradient passes where x > 0 and is 0 elsewhere (also at x == 0)"),
    )),
    Part("pooling", 10, "MaxPool2d, AvgPool2d and AdaptiveAvgPool2d backward", (
        Stub("nn/pooling.py", "MaxPool2d.backward", keep=2,
             hint="dcols: zeros (k·k, windows); put each dy at its window's argmax row; "
                  "return self._fold(dcols, x_pad_shape, x_shape)"),
        Stub("nn/pooling.py", "AvgPool2d.backward", keep=2,
             hint="every row of a window gets dy / count; build dcols (k·k, windows) and "
                  "return self._fold(dcols, x_pad_shape, x_shape)"),
        Stub("nn/pooling.py", "AdaptiveAvgPool2d.backward", keep=2,
             hint="y is the mean over H·W positions, so dx = dy / (H·W) at every position, "
                  "shape (N, C, H, W)"),
    )),
    Part("linear", 10, "Linear forward and backward", (
        Stub("nn/linear.py", "Linear.forward",
             hint="save x for backward; y = x Wᵀ + b (no bias when self.bias is None)"),
        Stub("nn/linear.py", "Linear.backward", keep=2,
             hint="add dW = dyᵀ x and db = Σ_n dy into the .grad arrays (+=), return dx = dy W"),
    )),
    Part("loss", 10, "CrossEntropyLoss (with label smoothing) forward and backward", (
        Stub("nn/loss.py", "CrossEntropyLoss.forward", keep=1,
             hint="stable log-softmax (subtract the row max), q = (1-ε) onehot + ε/K, "
                  "loss = -Σ q log p (/N for mean); cache (p, q, scale); return a float"),
        Stub("nn/loss.py", "CrossEntropyLoss.backward", keep=2,
             hint="dL/dz = (p - q) · scale · grad_output"),
    )),
    Part("residual", 10, "BasicBlock and Bottleneck forward and backward", (
        Stub("blocks.py", "BasicBlock.forward",
             hint="F(x) = bn2(conv2(relu1(bn1(conv1(x))))); if self.residual add "
                  "shortcut(self, x, out.shape); return self.relu2(...)"),
        Stub("blocks.py", "BasicBlock.backward",
             hint="back through relu2, then through F (bn2, conv2, relu1, bn1, conv1) and, if residual, "
                  "through the shortcut (shortcut_backward); x fed both paths, so add"),
        Stub("blocks.py", "Bottleneck.forward",
             hint="F(x) = bn3(conv3(relu2(bn2(conv2(relu1(bn1(conv1(x)))))))); if self.residual add "
                  "shortcut(self, x, out.shape); return self.relu3(...)"),
        Stub("blocks.py", "Bottleneck.backward",
             hint="back through relu3, then through F (bn3, conv3, relu2, bn2, conv2, relu1, bn1, conv1) "
                  "and, if residual, through the shortcut (shortcut_backward); x fed both paths, so add"),
    )),
    Part("optim", 10, "the SGD step: weight decay, momentum, dampening, Nesterov", (
        Stub("optim/sgd.py", "SGD.update",
             hint="g = ∇L + λ·p; momentum buffer b = g on the first step, else b = μ·b + (1 − τ)·g "
                  "(in place, in state['momentum_buffer']); g = g + μ·b if nesterov else b; "
                  "p.data -= lr·g"),
    )),
    Part("gradcheck", 10, "the finite differences of the gradient checker", (
        Stub("gradcheck.py", "_numeric_entry",
             hint="set values[index] to original ± h and ± 2h, evaluate probe(x) each time, put the "
                  "original back; return (central h, central 2h, left one-sided, right one-sided) "
                  "differences of Σ g ⊙ y"),
    )),
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
