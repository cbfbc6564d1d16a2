"""Kernels: array in, array out. They know nothing of layers.

    im2col_numpy.py   im2col / col2im in readable NumPy: the definition of the unfold, and
                      what the textbook's Conv2d and pooling layers call (as kernels.im2col
                      and kernels.col2im)
    conv_naive.py     the convolution as its six loops, to test the others against
    im2col_numba.py   the same unfold, compiled, on every core
    conv_nhwc.py      the fast convolution: channels-last memory, cache-sized chunks of cols
    winograd.py       Winograd's F(2x2, 3x3) for 3x3 stride-1 convolutions
    batchnorm_nhwc.py BatchNorm's statistics, normalisation and backward as one-pass loops
    elementwise.py    ReLU and its backward as loops
    threads.py        the worker threads; blas.py and memory.py set up OpenBLAS and malloc

The fast ones are imported on first use (by numpy_resnet.engine), so that `import
numpy_resnet` stays free of Numba until a fast layer runs.
"""

from __future__ import annotations

from .conv_naive import conv2d_naive
from .im2col_numpy import col2im_numpy, conv_output_size, im2col_numpy

im2col = im2col_numpy
col2im = col2im_numpy

__all__ = ["conv2d_naive", "im2col", "col2im", "im2col_numpy", "col2im_numpy", "conv_output_size"]
