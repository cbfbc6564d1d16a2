"""Layers that follow each other, computed in fewer passes over memory: conv -> BatchNorm -> ReLU.

Every block of a ResNet runs relu(bn(conv(x))). Layer by layer, that is three passes over
the activations, each reading one array and writing the next. Fused, the layers give the
same numbers, bit for bit, and leave the same records as their twins, so each layer's
backward works as after its own forward:

    eval   the BatchNorm (its statistics are constants) and the ReLU run on each chunk of the
           conv's output as soon as the GEMM has written it, while it is in the cache:
               z[rows] = max(γ · ((y[rows] - μ) · inv_std) + β, 0)
    train  the batch statistics need all of y first; then one pass writes z = max(bn(y), 0),
           and BatchNorm's output, which nothing needs once ReLU has z, is never written
    sum    a residual block's last BatchNorm, its sum with the shortcut s and the ReLU after
           it, z = max(bn(y) + s, 0), are that same pass (eval or train) with s read in
    back   dL/dy = dL/dz · [z > 0] is formed inside BatchNorm's backward loops instead of in
           a ReLU pass of its own (bn_relu_backward)

BatchNorm and ReLU are memory-bound passes, so this saves a few per cent of a training step
and more of inference (docs/performance.md). When the layers cannot run fused (another
engine, a subclass, a hook, a grouped conv), these functions call them one after the other.
"""

from __future__ import annotations

import numpy as np

from .dispatch import fusable, records
from .layers import BatchNormTwin, bn_statistics, mu_inv_std

ENABLED = True         # False: always the layers one after the other (tests compare the two)


def can_fuse(conv, bn, relu=None) -> bool:
    """Can conv -> bn (-> relu) run as one? Twins as written, no hooks, matching, one mode."""
    layers = [conv, bn] + ([relu] if relu is not None else [])
    return (ENABLED and fusable(*layers) and conv.groups == 1
            and conv.out_channels == bn.num_features and len({m.training for m in layers}) == 1)


def conv_bn_relu(conv, bn, relu, x: np.ndarray, residual: np.ndarray | None = None) -> np.ndarray:
    """relu(bn(conv(x))), or bn(conv(x)) if relu is None: x (N, C_in, H, W) -> (N, C_out, H', W').

    residual: a residual block's shortcut, shaped like the output: relu(bn(conv(x)) + residual),
    the block's sum computed in BatchNorm's pass (the kernels read it without bounds checks,
    so its shape is checked first).
    """
    if residual is not None:
        expected = (x.shape[0], conv.out_channels, *conv._output_size(x))
        if residual.shape != expected:
            raise ValueError(f"conv_bn_relu: {conv!r} gives {expected}, but the residual "
                             f"added to it is {residual.shape}")
    if not can_fuse(conv, bn, relu) or (residual is not None and residual.dtype != x.dtype):
        y = bn(conv(x))
        if residual is not None:
            y = y + residual
        return y if relu is None else relu(y)
    if bn.training:
        from ..kernels.batchnorm_nhwc import normalize
        y = conv(x)
        mu, inv_std = bn_statistics(bn, y)                  # batch statistics, running ones updated
        z = normalize(y, mu, inv_std, bn.weight.data, bn.bias.data, relu=relu is not None,
                      residual=residual)
    else:
        z = _conv_with_bn_relu(conv, bn, relu is not None, x, residual)
    if relu is not None:
        records[relu] = z                                   # what ReLU's twin keeps: y
    return z


def _conv_with_bn_relu(conv, bn, relu: bool, x: np.ndarray, residual: np.ndarray | None):
    """Eval: the conv with BatchNorm (and the sum, and ReLU) as its epilogue -> z."""
    from ..kernels.batchnorm_nhwc import _normalize, _rows
    from ..kernels.conv_nhwc import conv2d_forward, from_nhwc
    H_out, W_out = conv._output_size(x)                     # checks x as conv's forward does
    mu, inv_std = mu_inv_std(bn, bn.running_mean, bn.running_var, x.dtype)
    gamma, beta = bn.weight.data, bn.bias.data
    z_nhwc = np.empty((x.shape[0], H_out, W_out, conv.out_channels), x.dtype)
    z_rows = z_nhwc.reshape(-1, conv.out_channels)
    s_rows = None if residual is None else _rows(residual)

    def bn_relu(y_chunk, a, b):                             # z[rows] = relu(bn(y[rows]) + s[rows])
        s_chunk = None if s_rows is None else s_rows[a:b]
        _normalize(y_chunk, mu, inv_std, gamma, beta, 0, b - a, z_rows[a:b], relu, s_chunk)

    bias = None if conv.bias is None else conv.bias.data
    y = conv2d_forward(x, conv.weight.data, bias, conv.stride, conv.padding, epilogue=bn_relu)
    records[conv] = ("nhwc", x, y.shape)                    # what each twin's forward keeps
    records[bn] = (y, mu, inv_std, False)
    return from_nhwc(z_nhwc)


def bn_relu_backward(bn, relu, grad_output: np.ndarray) -> np.ndarray:
    """bn.backward(relu.backward(dL/dz)), with ReLU's mask applied inside BatchNorm's loops."""
    if not (ENABLED and fusable(bn, relu) and bn in records and relu in records):
        return bn.backward(relu.backward(grad_output))
    z = records[relu]
    if grad_output.shape != z.shape:
        raise ValueError(f"{relu!r}: backward expected a gradient shaped like the forward's "
                         f"output, {z.shape}, got {grad_output.shape}")
    return BatchNormTwin.backward(bn, grad_output, relu_output=z)
