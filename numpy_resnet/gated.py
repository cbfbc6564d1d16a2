"""Gated and scaled shortcuts: what He et al. (2016, "Identity Mappings in Deep Residual
Networks", §3.1, Table 1) put on the shortcut instead of the identity, and why it hurts.

Each block keeps BasicBlock's branch F(x) = bn2(conv2(relu1(bn1(conv1(x))))), the ReLU
after the sum and the shortcut s(x) (x, or downsample(x) where the shape changes); only
the sum changes. g(x) = σ(W_g x + b_g) is a 1x1 convolution with a bias (stride and output
channels as F's, so g has F's shape) followed by a sigmoid, as in Highway Networks
(Srivastava et al., 2015: y = H(x)·T(x) + x·(1 − T(x))).

    ExclusiveGatedBlock   y = relu(g ⊙ F(x) + (1 − g) ⊙ s(x))      Table 1: b_g = −6, 8.70%
    ShortcutGatedBlock    y = relu(F(x) + (1 − g) ⊙ s(x))          b_g = −6: 6.91%; b_g = 0: 12.86%
    ScaledBlock           y = relu(λ_F F(x) + λ_s s(x))            λ_s = λ_F = 0.5: 12.35%
    (the original block, y = relu(F(x) + s(x)), has 6.61%; ResNet-110 on CIFAR-10)

b_g starts at −6, the paper's best initial value from its search over 0, −1, ..., −10, so
1 − g ≈ 0.9975 and the shortcut starts nearly the identity. The paper's other constant
scaling, λ_s = 0.5 with F unscaled, did not converge; `branch_scale=1.0` builds it.

Why it hurts: in the backward pass the gradient at the sum, d, reaches x along the shortcut
as (1 − g) ⊙ d or λ_s d instead of d itself. Over L blocks these factors multiply, so the
direct term of dL/dx_0 is scaled by Π (1 − g_i) or λ_s^L: 0.5^54 ≈ 6e-17 for ResNet-110.

The models are the CIFAR nets of models.cifar_resnet with these blocks (where the shape
changes, its option A zero-pad shortcut, gated or scaled like the identity; the gate is
computed from x with the stride of F's first conv).
"""

from __future__ import annotations

import numpy as np

from .blocks import _check_downsample, conv3x3, shortcut, shortcut_backward
from .nn import BatchNorm2d, Conv2d, Module, ReLU, Sigmoid

GATE_BIAS = -6.0        # b_g at initialisation: the best of the paper's search (Table 1)


class _ShortcutVariant(Module):
    """BasicBlock's layers, F(x) and its backward; subclasses say how F and the shortcut meet.

    x: (N, inplanes, H, W) -> y: (N, planes, H/stride, W/stride).  The arguments are
    BasicBlock's, so that models.ResNet builds these blocks as it builds BasicBlocks.
    """

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: Module | None = None, groups: int = 1, base_width: int = 64, *,
                 residual: bool = True):
        super().__init__()
        name = type(self).__name__
        if groups != 1 or base_width != 64:
            raise ValueError(f"{name} only supports groups=1 and base_width=64")
        if not residual:
            raise ValueError(f"{name}: a gated or scaled shortcut needs residual=True; the "
                             f"plain twin is BasicBlock(residual=False)")
        _check_downsample(self, downsample, residual)
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = BatchNorm2d(planes)
        self.relu1 = ReLU()
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = BatchNorm2d(planes)
        self.downsample = downsample            # None: the identity shortcut
        self.stride = stride

    def branch(self, x: np.ndarray) -> np.ndarray:
        """F(x) = bn2(conv2(relu1(bn1(conv1(x)))))"""
        return self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))

    def branch_backward(self, d_f: np.ndarray) -> np.ndarray:
        """dL/dF(x) -> dL/dx through F."""
        d = self.conv2.backward(self.bn2.backward(d_f))
        return self.conv1.backward(self.bn1.backward(self.relu1.backward(d)))


def _gate(inplanes: int, planes: int, stride: int, bias: float) -> Conv2d:
    """W_g x + b_g: a 1x1 conv with F's stride and channels; b_g = `bias` everywhere."""
    conv = Conv2d(inplanes, planes, kernel_size=1, stride=stride, bias=True)
    conv.bias.data[:] = bias
    return conv


class ExclusiveGatedBlock(_ShortcutVariant):
    """y = relu(g ⊙ F(x) + (1 − g) ⊙ s(x)),  g = σ(W_g x + b_g): a highway layer with BN.

    g → 0 (b_g → −∞): y = relu(s(x)), the block is skipped.
    g → 1 (b_g → +∞): y = relu(F(x)), the plain block.
    """

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: Module | None = None, groups: int = 1, base_width: int = 64, *,
                 residual: bool = True, gate_bias: float = GATE_BIAS):
        super().__init__(inplanes, planes, stride, downsample, groups, base_width,
                         residual=residual)
        self.gate = _gate(inplanes, planes, stride, gate_bias)
        self.sigmoid = Sigmoid()
        self.relu2 = ReLU()
        self.cache = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        f = self.branch(x)                                  # F(x)
        s = shortcut(self, x, f.shape)                      # s(x)
        g = self.sigmoid(self.gate(x))                      # g(x), F's shape
        self.cache = (f, s, g)
        return self.relu2(g * f + (1 - g) * s)

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        f, s, g = self._saved("cache")
        d = self.relu2.backward(grad_output)                # dL/d(g⊙F + (1−g)⊙s)
        d_f = g * d                                         # ∂/∂F:  g
        d_s = (1 - g) * d                                   # ∂/∂s:  1 − g
        d_g = (f - s) * d                                   # ∂/∂g:  F − s
        dx_gate = self.gate.backward(self.sigmoid.backward(d_g))    # dW_g, db_g; through W_g
        dx_branch = self.branch_backward(d_f)
        dx_shortcut = shortcut_backward(self, d_s)
        return dx_branch + dx_shortcut + dx_gate            # x fed three paths: gradients add


class ShortcutGatedBlock(_ShortcutVariant):
    """y = relu(F(x) + (1 − g) ⊙ s(x)),  g = σ(W_g x + b_g): only the shortcut is gated.

    g → 0 (b_g → −∞): the original block.   g → 1 (b_g → +∞): the plain block.
    """

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: Module | None = None, groups: int = 1, base_width: int = 64, *,
                 residual: bool = True, gate_bias: float = GATE_BIAS):
        super().__init__(inplanes, planes, stride, downsample, groups, base_width,
                         residual=residual)
        self.gate = _gate(inplanes, planes, stride, gate_bias)
        self.sigmoid = Sigmoid()
        self.relu2 = ReLU()
        self.cache = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        f = self.branch(x)                                  # F(x)
        s = shortcut(self, x, f.shape)                      # s(x)
        g = self.sigmoid(self.gate(x))                      # g(x), F's shape
        self.cache = (s, g)
        return self.relu2(f + (1 - g) * s)

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        s, g = self._saved("cache")
        d = self.relu2.backward(grad_output)                # dL/d(F + (1−g)⊙s)
        d_s = (1 - g) * d                                   # ∂/∂s:  1 − g
        d_g = -s * d                                        # ∂/∂g:  −s
        dx_gate = self.gate.backward(self.sigmoid.backward(d_g))    # dW_g, db_g; through W_g
        dx_branch = self.branch_backward(d)                 # ∂/∂F:  1
        dx_shortcut = shortcut_backward(self, d_s)
        return dx_branch + dx_shortcut + dx_gate            # x fed three paths: gradients add


class ScaledBlock(_ShortcutVariant):
    """y = relu(λ_F F(x) + λ_s s(x)), constant scalars: a gate frozen at λ.

    Defaults λ_s = λ_F = 0.5, the paper's constant scaling that converged (12.35%).
    λ_s = λ_F = 1 is the original block.
    """

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: Module | None = None, groups: int = 1, base_width: int = 64, *,
                 residual: bool = True, shortcut_scale: float = 0.5, branch_scale: float = 0.5):
        super().__init__(inplanes, planes, stride, downsample, groups, base_width,
                         residual=residual)
        self.relu2 = ReLU()
        self.shortcut_scale = float(shortcut_scale)
        self.branch_scale = float(branch_scale)

    def extra_repr(self) -> str:
        return f"shortcut_scale={self.shortcut_scale}, branch_scale={self.branch_scale}"

    def forward(self, x: np.ndarray) -> np.ndarray:
        f = self.branch(x)                                  # F(x)
        s = shortcut(self, x, f.shape)                      # s(x)
        return self.relu2(self.branch_scale * f + self.shortcut_scale * s)

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        d = self.relu2.backward(grad_output)                # dL/d(λ_F F + λ_s s)
        dx_branch = self.branch_backward(self.branch_scale * d)         # ∂/∂F:  λ_F
        dx_shortcut = shortcut_backward(self, self.shortcut_scale * d)  # ∂/∂s:  λ_s
        return dx_branch + dx_shortcut


GATED_BLOCKS = {"gated": ExclusiveGatedBlock, "shortcutgated": ShortcutGatedBlock,
                "scaled": ScaledBlock}
