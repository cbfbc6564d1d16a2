"""The fast twins of Conv2d, BatchNorm2d and ReLU: the textbook's equations, computed fast.

Each computes what the layer in nn/ computes (tests/test_engine.py checks them against it in
float32 and float64) and keeps what its backward needs in `dispatch.records`:

    Conv2d       channels-last im2col in cache-sized chunks, one GEMM per chunk, on every
                 core (kernels/conv_nhwc.py); 3x3 stride-1 with 16+ channels by Winograd's
                 F(2x2, 3x3) (kernels/winograd.py); grouped convs by the compiled im2col
    BatchNorm2d  statistics, normalisation and backward as one-pass loops over channels-last
                 memory (kernels/batchnorm_nhwc.py); it keeps x rather than x̂
    ReLU         one loop (kernels/elementwise.py); it keeps y rather than a mask: y > 0
                 exactly where x > 0

The outputs of the first three are channels-last (PyTorch's `channels_last`: the same shape,
the C values of a pixel side by side in memory), so the next layer reads them without a copy.
The kernels check nothing and read raw memory, so every backward here checks the gradient's
shape against the forward's output first.
"""

from __future__ import annotations

import numpy as np

from ..nn import BatchNorm2d, Conv2d, ReLU
from ..nn import module as nn_module
from ..nn.module import check_input
from .dispatch import records, twin


def check_grad(module, grad_output: np.ndarray, shape: tuple, dtype) -> np.ndarray:
    """grad_output as the kernels need it: checked as the layer's backward checks it (a float
    array shaped like the forward's output), in the layer's dtype."""
    nn_module.check_grad(module, grad_output, tuple(shape))
    return np.asarray(grad_output, dtype=dtype)


# ----- Conv2d --------------------------------------------------------------------------------
@twin(Conv2d)
class ConvTwin:
    @staticmethod
    def forward(conv: Conv2d, x: np.ndarray) -> np.ndarray:
        """x: (N, C_in, H, W), any layout -> y: (N, C_out, H_out, W_out), channels-last."""
        H_out, W_out = conv._output_size(x)                 # checks x as the layer does
        if conv.groups != 1:
            return _grouped_forward(conv, x, H_out, W_out)
        from ..kernels.conv_nhwc import conv2d_forward  # imports Numba on first use
        bias = None if conv.bias is None else conv.bias.data
        y = conv2d_forward(x, conv.weight.data, bias, conv.stride, conv.padding)
        records[conv] = ("nhwc", x, y.shape)
        return y

    @staticmethod
    def backward(conv: Conv2d, grad_output: np.ndarray, need_input_grad: bool = True):
        """dY -> dx (or None); dW and db add into .grad, as the layer's backward does."""
        kind, saved, y_shape = records[conv]
        dtype = conv.weight.data.dtype
        grad_output = check_grad(conv, grad_output, y_shape, dtype)
        if kind == "grouped":
            return _grouped_backward(conv, saved, grad_output, need_input_grad)
        from ..kernels.conv_nhwc import conv2d_backward
        dx, dW, db = conv2d_backward(saved, conv.weight.data, grad_output, conv.stride,
                                     conv.padding, need_bias=conv.bias is not None,
                                     need_input_grad=need_input_grad)
        conv.weight.grad += dW
        if conv.bias is not None:
            conv.bias.grad += db
        return dx


def _grouped_forward(conv: Conv2d, x: np.ndarray, H_out: int, W_out: int) -> np.ndarray:
    """nn/conv.py's forward, with the compiled im2col (one GEMM per group)."""
    from ..kernels.im2col_numba import im2col_numba
    k, s, p, N = conv.kernel_size, conv.stride, conv.padding, x.shape[0]
    W_g = conv._weight_by_group()
    cols_g = im2col_numba(x, k, k, s, p).reshape(conv.groups, W_g.shape[2], -1)
    y = np.matmul(W_g, cols_g).reshape(conv.out_channels, N, H_out, W_out).transpose(1, 0, 2, 3)
    if conv.bias is not None:
        y = y + conv.bias.data[None, :, None, None]
    y = np.ascontiguousarray(y)
    records[conv] = ("grouped", (cols_g, x.shape), y.shape)
    return y


def _grouped_backward(conv: Conv2d, saved: tuple, grad_output: np.ndarray, need_input_grad: bool):
    from ..kernels.im2col_numba import col2im_numba
    cols_g, x_shape = saved
    k, s, p = conv.kernel_size, conv.stride, conv.padding
    dy = grad_output.transpose(1, 0, 2, 3).reshape(conv.groups, conv.out_channels // conv.groups, -1)
    conv.weight.grad += np.matmul(dy, cols_g.transpose(0, 2, 1)).reshape(conv.weight.data.shape)
    if conv.bias is not None:
        conv.bias.grad += grad_output.sum(axis=(0, 2, 3))
    if not need_input_grad:
        return None
    dcols = np.matmul(conv._weight_by_group().transpose(0, 2, 1), dy)
    return col2im_numba(dcols.reshape(-1, dcols.shape[2]), x_shape, k, k, s, p)


# ----- BatchNorm2d ---------------------------------------------------------------------------
def mu_inv_std(bn: BatchNorm2d, mu: np.ndarray, var: np.ndarray, dtype) -> tuple[np.ndarray, np.ndarray]:
    """(μ, 1/√(σ² + ε)) in dtype, as the kernels take them."""
    return mu.astype(dtype), (1.0 / np.sqrt(var + bn.eps)).astype(dtype)


def bn_statistics(bn: BatchNorm2d, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """μ and 1/√(σ² + ε) in x's dtype: the batch's (running statistics updated) in train mode,
    the running ones in eval mode; what the backward needs is recorded."""
    from ..kernels import batchnorm_nhwc
    if bn.training:
        M = x.shape[0] * x.shape[2] * x.shape[3]
        if M < 2:
            raise ValueError(f"{bn!r}: training needs more than one value per channel, "
                             f"got input {x.shape}")
        mu, var = batchnorm_nhwc.batch_stats(x)               # float64, as the layer's
        bn._update_running_stats(mu, var, M)
    else:
        mu, var = bn.running_mean, bn.running_var
    mu, inv_std = mu_inv_std(bn, mu, var, x.dtype)
    records[bn] = (x, mu, inv_std, bn.training)
    return mu, inv_std


@twin(BatchNorm2d)
class BatchNormTwin:
    @staticmethod
    def forward(bn: BatchNorm2d, x: np.ndarray) -> np.ndarray:
        """x: (N, C, H, W) -> y, channels-last."""
        from ..kernels import batchnorm_nhwc
        check_input(bn, x, ndim=4, channels=bn.num_features)
        mu, inv_std = bn_statistics(bn, x)
        return batchnorm_nhwc.normalize(x, mu, inv_std, bn.weight.data, bn.bias.data)

    @staticmethod
    def backward(bn: BatchNorm2d, grad_output: np.ndarray, relu_output: np.ndarray | None = None):
        """relu_output z: a ReLU after this layer, folded in: its dy = dz · [z > 0] is formed
        inside the loops (fused.bn_relu_backward)."""
        from ..kernels import batchnorm_nhwc
        x, mu, inv_std, used_batch_stats = records[bn]
        grad_output = check_grad(bn, grad_output, x.shape, x.dtype)
        dx, sum_dy_xhat, sum_dy = batchnorm_nhwc.backward(grad_output, x, mu, inv_std,
                                                          bn.weight.data, used_batch_stats,
                                                          relu_output)
        bn.bias.grad += sum_dy.astype(x.dtype)                             # dβ = Σ dy
        bn.weight.grad += sum_dy_xhat.astype(x.dtype)                      # dγ = Σ dy x̂
        return dx


# ----- ReLU ----------------------------------------------------------------------------------
@twin(ReLU)
class ReLUTwin:
    @staticmethod
    def forward(relu: ReLU, x: np.ndarray):
        from ..kernels.elementwise import relu as relu_kernel
        check_input(relu, x, ndim=None)
        y = relu_kernel(x)
        if y is None:                                       # x is not contiguous: the layer's code
            return NotImplemented
        records[relu] = y
        return y

    @staticmethod
    def backward(relu: ReLU, grad_output: np.ndarray) -> np.ndarray:
        from ..kernels.elementwise import relu_backward
        y = records[relu]
        grad_output = check_grad(relu, grad_output, y.shape, y.dtype)
        return relu_backward(grad_output, y)                # dL/dy where y > 0, else 0
