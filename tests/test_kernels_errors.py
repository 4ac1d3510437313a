"""Bad operands raise KernelError naming the operand and what was expected."""

from __future__ import annotations

import numpy as np
import pytest

from hwsim.errors import HwsimError, KernelError
from hwsim.kernels import (
    AccumulatorSpec,
    add_requantize_dyadic,
    add_requantize_float32,
    conv2d_int,
    dyadic_multiplier,
    dyadic_multiplier_pair,
    linear_int,
    max_pool2d,
    requantize_dyadic,
    requantize_float32,
    sum_pool2d,
)

X = np.zeros((1, 4, 5, 5), dtype=np.uint8)
W = np.zeros((6, 2, 3, 3), dtype=np.int8)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(x=X.astype(np.float32)), r"conv2d: x must hold integer codes.*float32"),
        (dict(x=X[0]), r"conv2d: x must have shape \(N, C, H, W\).*got shape \(4, 5, 5\)"),
        (dict(x_zp=256), r"conv2d: x_zp must lie in \[0, 255\].*uint8.*got 256"),
        (dict(x_zp=1.5), r"conv2d: x_zp must be an integer scalar"),
        (dict(groups=3), r"groups must be >= 1 and divide both C=4 and K=6; got 3"),
        (dict(groups=1), r"w must have shape \(K, C/groups, R, S\) = \(6, 4, R, S\)"),
        (dict(w_zp=np.zeros(5, dtype=np.int8)), r"w_zp must be a scalar or have shape \(6,\)"),
        (dict(w_zp=200), r"w_zp must lie in \[-128, 127\]"),
        (dict(bias=np.zeros(6, dtype=np.float32)), r"bias must be None or a numpy integer array of shape \(6,\)"),
        (dict(stride=0), r"conv2d: stride must be an int >= 1"),
        (dict(padding=(1, 2, 3)), r"conv2d: padding must be an int >= 0, \(h, w\) or \(top, left, bottom, right\)"),
        (dict(dilation=4), r"conv2d \(height\): the padded input .* smaller than the kernel extent 9"),
        (dict(acc="int32"), r"acc must be an AccumulatorSpec"),
    ],
)
def test_conv_operand_errors(kwargs, match):
    args = dict(x=X, x_zp=0, w=W, w_zp=None, bias=None, groups=2)
    args.update(kwargs)
    with pytest.raises(KernelError, match=match):
        conv2d_int(**args)


def test_accumulator_spec_errors():
    with pytest.raises(KernelError, match=r"AccumulatorSpec.bits must be an int in \[8, 64\]. Got 7"):
        AccumulatorSpec(bits=7)
    with pytest.raises(KernelError, match=r"AccumulatorSpec.mode must be one of .*'wrap', 'saturate'.*'clip'"):
        AccumulatorSpec(mode="clip")
    assert issubclass(KernelError, HwsimError)


def test_linear_errors():
    x = np.zeros((2, 5), dtype=np.int8)
    with pytest.raises(KernelError, match=r"linear: x has 5 input features but w has shape \(3, 4\)"):
        linear_int(x, 0, np.zeros((3, 4), dtype=np.int8))
    with pytest.raises(KernelError, match=r"linear: w must have shape \(out, in\)"):
        linear_int(x, 0, np.zeros((3, 5, 1), dtype=np.int8))


def test_fast_kernel_refuses_operands_beyond_int64():
    x = np.full((1, 2**3), 2**31 - 1, dtype=np.int64)
    w = np.full((1, 2**3), 2**31 - 1, dtype=np.int64)
    with pytest.raises(KernelError, match=r"may exceed int64"):
        linear_int(x, -(2**31), w, -(2**31))


def test_requantize_errors():
    acc = np.zeros((2, 3), dtype=np.int64)
    with pytest.raises(KernelError, match=r"requantize_dyadic: m must lie in \[0, 2\^31\)"):
        requantize_dyadic(acc, 2**31, 31, 0, 0, 255)
    with pytest.raises(KernelError, match=r"requantize_dyadic: shift must lie in \[0, 63\]"):
        requantize_dyadic(acc, 2**30, 64, 0, 0, 255)
    with pytest.raises(KernelError, match=r"per-channel m has 2 entries but acc has 3 channels along axis 1"):
        requantize_dyadic(acc, np.array([1, 2]), 31, 0, 0, 255)
    with pytest.raises(KernelError, match=r"qmin must be <= qmax; got qmin=10, qmax=5"):
        requantize_dyadic(acc, 2**30, 31, 0, 10, 5)
    with pytest.raises(KernelError, match=r"acc \* m cannot be formed exactly in int64"):
        requantize_dyadic(np.array([2**50], dtype=np.int64), 2**30, 10, 0, 0, 255, axis=0)
    with pytest.raises(KernelError, match=r"requantize_float32: scale_f32 must be float32 \(compute it with ort_output_scale\); got dtype float64"):
        requantize_float32(acc, np.float64(0.1), 0, 0, 255)
    with pytest.raises(KernelError, match=r"acc must be a numpy integer array"):
        requantize_float32(acc.astype(np.float32), np.float32(0.1), 0, 0, 255)


def test_multiplier_errors():
    with pytest.raises(KernelError, match=r"real_multiplier must be finite and > 0"):
        dyadic_multiplier(np.array([0.5, -1.0]))
    with pytest.raises(KernelError, match=r"must lie in \[2\^-33, 2\^31\)"):
        dyadic_multiplier(2.0**32)
    with pytest.raises(KernelError, match=r"must lie in \[2\^-33, 2\^31\)"):
        dyadic_multiplier(1e-12)
    with pytest.raises(KernelError, match=r"the smaller rounds to 0 on the common shift"):
        dyadic_multiplier_pair(1.0, 1e-12)


def test_add_and_pool_errors():
    a = np.zeros((2, 3), dtype=np.uint8)
    with pytest.raises(KernelError, match=r"a and b must have the same shape; got \(2, 3\) and \(3, 2\)"):
        add_requantize_dyadic(a, 0, 2**30, a.T, 0, 2**30, 31, 0, 0, 255)
    with pytest.raises(KernelError, match=r"scale_b_f32 must be a finite float32 scalar"):
        add_requantize_float32(a, 0, np.float32(1), a, 0, 1.0, 0, 0, 255)
    with pytest.raises(KernelError, match=r"max_pool2d: pad_value must lie in \[0, 255\]"):
        max_pool2d(X, 2, pad_value=-1)
    with pytest.raises(KernelError, match=r"sum_pool2d: kernel must be an int >= 1"):
        sum_pool2d(X, 0, 0)
