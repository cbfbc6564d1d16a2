"""Layers that follow each other, computed in fewer passes over memory: conv -> BatchNorm -> ReLU.

Every block of a ResNet runs relu(bn(conv(x))). Layer by layer, that is three passes over
the activations, each reading one array and writing the next. Fused, the layers give the
same numbers, bit for bit, and leave the same caches, so each layer's own backward works:

    eval   the BatchNorm (its statistics are constants) and the ReLU run on each chunk of the
           conv's output as soon as the GEMM has written it, while it is in the cache:
               z[rows] = max(γ · ((y[rows] - μ) · inv_std) + β, 0)
    train  the batch statistics need all of y first; then one pass writes z = max(bn(y), 0),
           and BatchNorm's output, which nothing needs once ReLU has z, is never written
    sum    a residual block's last BatchNorm, its sum with the shortcut s and the ReLU after
           it, z = max(bn(y) + s, 0), are that same pass (eval or train) with s read in: the
           sum's two passes (read two arrays, write one; then ReLU's) are not made
    back   dL/dy = dL/dz · [z > 0] is formed inside BatchNorm's backward loops instead of in
           a ReLU pass of its own (bn_relu_backward)

Measured on ResNet-18 (CIFAR stem, width 16, batch 128, 2 threads, 25 interleaved runs):
the training step 1.5% faster, inference 6% faster (`numpy-resnet bench` on the layers
alone shows why no more: BatchNorm and ReLU are memory-bound passes at 40-50 GB/s). The
sum, measured the same way (40 interleaved passes): inference 5-8% faster, training 1-2%.

The readable layers in nn/ stay the definition: with the "numpy" backend, or when any of
the layers is a subclass, a wrapped instance (diagnostics.GradientRecorder) or in another
mode, these functions call the layers one after the other.
"""

from __future__ import annotations

import numpy as np

from . import fast_path

# the Numba kernels are imported inside the functions that run them: `import numpy_resnet`
# stays free of Numba until a fast layer runs


ENABLED = True         # False: always the layers one after the other (tests compare the two)
# The blocks fold their sum into the last BatchNorm's pass (blocks.py), except in an assignment
# copy whose student writes the blocks' forward: there the student's sum must be what runs.
# WHEN STUBBED residual: SUM = False
SUM = True


def fusable(conv, bn, relu=None) -> bool:
    """Can conv -> bn (-> relu) run fused? Fast-path layers, unwrapped, matching, one mode."""
    from ..nn import BatchNorm2d, Conv2d, ReLU
    if not ENABLED:
        return False
    layers = [(conv, Conv2d), (bn, BatchNorm2d)] + ([(relu, ReLU)] if relu is not None else [])
    return (all(fast_path(m, base) and not {"forward", "backward"} & m.__dict__.keys()
                for m, base in layers)
            and conv.groups == 1 and conv.out_channels == bn.num_features
            and len({m.training for m, _ in layers}) == 1)


def conv_bn_relu(conv, bn, relu, x: np.ndarray, residual: np.ndarray | None = None) -> np.ndarray:
    """relu(bn(conv(x))), or bn(conv(x)) if relu is None: x (N, C_in, H, W) -> (N, C_out, H', W').

    residual: a residual block's shortcut, shaped like the output: relu(bn(conv(x)) + residual),
    the block's sum computed in BatchNorm's pass (blocks.py checks the shapes first, with
    its own message; the check here keeps the kernels from reading past the residual).
    """
    if residual is not None:
        expected = (x.shape[0], conv.out_channels, *conv._output_size(x))
        if residual.shape != expected:
            raise ValueError(f"conv_bn_relu: {conv!r} gives {expected}, but the residual "
                             f"added to it is {residual.shape}")
    if not fusable(conv, bn, relu) or (residual is not None and residual.dtype != x.dtype):
        y = bn(conv(x))
        if residual is not None:
            y = y + residual
        return y if relu is None else relu(y)
    if bn.training:
        from .batchnorm_nhwc import normalize
        y = conv(x)
        mu, inv_std = bn._fast_statistics(y)                # batch statistics, running ones updated
        z = normalize(y, mu, inv_std, bn.weight.data, bn.bias.data, relu=relu is not None,
                      residual=residual)
    else:
        y, z = _conv_with_bn_relu(conv, bn, relu is not None, x, residual)
    if relu is not None:
        relu.mask, relu.output = None, z                    # what ReLU's fast forward keeps
    return z


def _conv_with_bn_relu(conv, bn, relu: bool, x: np.ndarray, residual: np.ndarray | None):
    """Eval: the conv with BatchNorm (and the sum, and ReLU) as its epilogue -> (conv's y, z)."""
    from .batchnorm_nhwc import _normalize, _rows
    from .conv_nhwc import conv2d_forward, from_nhwc
    H_out, W_out = conv._output_size(x)                     # checks x as conv's forward does
    mu, inv_std = bn._mu_inv_std(bn.running_mean, bn.running_var, x.dtype)
    gamma, beta = bn.weight.data, bn.bias.data
    z_nhwc = np.empty((x.shape[0], H_out, W_out, conv.out_channels), x.dtype)
    z_rows = z_nhwc.reshape(-1, conv.out_channels)
    s_rows = None if residual is None else _rows(residual)

    def bn_relu(y_chunk, a, b):                             # z[rows] = relu(bn(y[rows]) + s[rows])
        s_chunk = None if s_rows is None else s_rows[a:b]
        _normalize(y_chunk, mu, inv_std, gamma, beta, 0, b - a, z_rows[a:b], relu, s_chunk)

    bias = None if conv.bias is None else conv.bias.data
    y = conv2d_forward(x, conv.weight.data, bias, conv.stride, conv.padding, epilogue=bn_relu)
    conv.cache = (conv._FAST, x)                            # what each layer's forward keeps
    bn.cache = (bn._FAST, y, mu, inv_std, False)
    return y, from_nhwc(z_nhwc)


def bn_relu_backward(bn, relu, grad_output: np.ndarray) -> np.ndarray:
    """bn.backward(relu.backward(dL/dz)), with ReLU's mask applied inside BatchNorm's loops."""
    from ..nn import BatchNorm2d, ReLU
    cache = bn.__dict__.get("cache")
    if (not ENABLED or relu.output is None or cache is None or cache[0] is not bn._FAST
            or not all(fast_path(m, base) and "backward" not in m.__dict__
                       for m, base in ((bn, BatchNorm2d), (relu, ReLU)))):
        return bn.backward(relu.backward(grad_output))
    return bn._backward_fast(grad_output, relu_output=relu.output)
