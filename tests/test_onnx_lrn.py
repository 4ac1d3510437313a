"""LRN in float islands (hwsim.kernels.lrn_f32) against ONNX Runtime 1.32, bit for bit.

- the float kernel against ONNX Runtime's float LRN on the same float32 inputs: every bit of
  over 10^6 outputs, shapes whose element counts leave 0..3 values after the last whole
  4-float packet (those take the C library's powf, the others Eigen's packet pow);
- Eigen's packet pow (`pow_f32`) against its value-by-value reference on any positive float32
  (subnormals and huge values too) and exponents (hypothesis);
- islands on codes: x -> Q -> DQ -> LRN [-> MaxPool] -> Q -> y imported and run by hwsim
  against ONNX Runtime on the same codes (u8 and s8, over 10^6 outputs each, half the scale
  sets powers of two so outputs land on .5 rounding boundaries; 0 mismatches);
- fast island = element-by-element reference; integer beta refused at import naming the node.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("onnx", reason="onnx is in the 'onnx' extra; install hwsim[test]")
pytest.importorskip("onnxruntime", reason="onnxruntime is in the 'onnx' extra; install hwsim[test]")

from onnx import TensorProto, helper  # noqa: E402

from hwsim.kernels.float_island_errors import FloatIslandError  # noqa: E402
from hwsim.kernels.lrn_f32 import (onnx_lrn, onnx_lrn_reference, pow_f32,  # noqa: E402
                                   pow_f32_reference)
from hwsim.onnx import OnnxImportError, load_onnx_program  # noqa: E402
from tests._onnx_helpers import model_bytes, session  # noqa: E402
from tests.test_onnx_float_islands import Island, Tally, _n, _scales, _ties  # noqa: E402

F32 = np.float32
DTYPES = [np.uint8, np.int8]
ALEXNET = {"size": 5, "alpha": 1e-4, "beta": 0.75, "bias": 1.0}
# (size, alpha, beta, bias): AlexNet / ZFNet / GoogLeNet's, strong normalizations, odd betas,
# and tiny alphas whose small inputs leave the scale at exactly a bias of 1, 16 or 4, where
# pow(bias, -beta) = 1, 1/8, 1/2 is exact (with power-of-two scales: outputs on .5 boundaries)
PARAMS = [(5, 1e-4, 0.75, 1.0), (3, 0.5, 0.75, 2.0), (5, 0.01, 0.6, 1.0), (1, 2.0, 1.5, 0.5),
          (7, 1e-7, 0.75, 1.0), (3, 0.1, 0.3, 1e-3), (5, 1.0, 2.5, 1.0),
          (5, 1e-9, 0.75, 16.0), (3, 1e-9, 0.5, 4.0)]


def _float_model(size, alpha, beta, bias) -> bytes:
    node = helper.make_node("LRN", ["x"], ["y"], size=size, alpha=alpha, beta=beta, bias=bias)
    return model_bytes([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], {}, 13)


def _bits_differ(a, b) -> int:
    both_nan = np.isnan(a) & np.isnan(b)
    return int(np.count_nonzero((a.view(np.uint32) != b.view(np.uint32)) & ~both_nan))


def test_float_lrn_equals_ort_bit_for_bit():
    rng = np.random.default_rng(3)
    outputs = bad = tails = 0
    for k, (size, alpha, beta, bias) in enumerate(PARAMS * 6):
        sess = session(_float_model(size, alpha, beta, bias))
        shape = (int(rng.integers(1, 4)), int(rng.integers(size, 48)), int(rng.integers(5, 48)),
                 int(rng.integers(5, 48)))
        scale = F32(rng.choice([2.0 ** -5, 0.0371, 0.37, 1.7, 9.0]))
        x = ((rng.integers(0, 256, shape) - 128).astype(F32) * scale).astype(F32)
        if k % 2:
            x[rng.random(shape) < 0.3] = 0  # whole zero windows: scale == bias
        theirs = sess.run(None, {"x": x})[0]
        ours = onnx_lrn([x], {"size": size, "alpha": alpha, "beta": beta, "bias": bias})
        bad += _bits_differ(ours, theirs)
        outputs += x.size
        tails += x.size % 4
    print(f"\nfloat LRN: {outputs} outputs ({tails} through powf) vs ONNX Runtime, "
          f"{bad} mismatches")
    assert bad == 0 and outputs >= 10 ** 6 and tails > 0


@pytest.mark.parametrize("count", [1, 2, 3, 5, 6, 7, 9])
def test_last_values_after_the_packets_take_powf(count):
    """The same scale gives Eigen's packet pow or powf by position: both match ONNX Runtime."""
    rng = np.random.default_rng(count)
    x = (rng.integers(-128, 128, (1, 1, 1, 4000 + count)).astype(F32) * F32(0.37)).astype(F32)
    attrs = {"size": 1, "alpha": 0.5, "beta": 0.75, "bias": 1.0}
    theirs = session(_float_model(**attrs)).run(None, {"x": x})[0]
    assert _bits_differ(onnx_lrn([x], attrs), theirs) == 0


_POSITIVE_F32 = st.integers(1, 0x7F7FFFFF).map(lambda b: np.uint32(b).view(F32))


@settings(max_examples=300, deadline=None)
@given(s=st.lists(_POSITIVE_F32, min_size=1, max_size=8),
       beta=st.floats(2.0 ** -10, 40.0, width=32).filter(lambda v: v != int(v)))
def test_packet_pow_equals_its_reference(s, beta):
    s = np.array(s, F32)
    fast = pow_f32(s, F32(-beta))
    ref = np.array([pow_f32_reference(float(v), -float(F32(beta))) for v in s], F32)
    assert _bits_differ(fast, ref) == 0


def test_packet_pow_special_scales():
    s = np.array([0.0, -0.0, -1.0, np.inf, np.nan, 1.0], F32)
    got = pow_f32(s, F32(-0.75))
    assert np.isposinf(got[:2]).all() and np.isnan(got[2]) and got[3] == 0
    assert np.isnan(got[4]) and got[5] == 1
    for v, g in zip(s, got):
        r = pow_f32_reference(float(v), -0.75)
        assert (np.isnan(r) and np.isnan(g)) or F32(r) == g


def _islands(size, alpha, beta, bias, pool: bool):
    nodes = [_n("LRN", ["da"], "l" if pool else "f", size=size, alpha=alpha, beta=beta, bias=bias)]
    if pool:
        nodes.append(_n("MaxPool", ["l"], kernel_shape=[3, 3], strides=[2, 2]))
    return nodes


# shapes with 0..3 values after the last whole packet
SHAPES = [(2, 32, 27, 27), (1, 47, 13, 13), (3, 15, 15, 15), (2, 21, 13, 15), (1, 64, 14, 14)]


@pytest.mark.parametrize("dtype", DTYPES)
def test_lrn_islands_on_codes_equal_ort(dtype):
    rng = np.random.default_rng(21 + (dtype == np.int8))
    tally = Tally(f"LRN islands, {np.dtype(dtype)}")
    case = 0
    for size, alpha, beta, bias in PARAMS:
        for pool in (False, True):
            for _ in range(6):
                shape = SHAPES[case % len(SHAPES)]
                qa, qb, qy = _scales(rng, case, dtype)
                island = Island(_islands(size, alpha, beta, bias, pool), {}, None, dtype, shape,
                                qa, qb, qy, 13)
                node, ordered, ours, theirs = island.compare(island.codes(rng))
                assert node.op == "float_island"
                tally.add(ours, theirs, _ties(node, ordered, qy))
                case += 1
    tally.report(10 ** 6, 0.01)


def test_fast_lrn_island_equals_its_reference():
    rng = np.random.default_rng(5)
    for dtype in DTYPES:
        qa, qb, qy = _scales(rng, 1, dtype)
        island = Island(_islands(5, 1e-4, 0.75, 1.0, True), {}, None, dtype, (1, 6, 7, 5),
                        qa, qb, qy, 13)
        assert island.fast_equals_reference(rng)


def test_integer_beta_is_refused_at_import_naming_the_node():
    island = Island([_n("LRN", ["da"], size=3, alpha=1e-4, beta=1.0, bias=1.0)], {}, None,
                    np.uint8, (1, 4, 5, 5), (0.05, 128), (0.05, 128), (0.05, 128), 13)
    with pytest.raises(OnnxImportError, match=r"\(LRN\): LRN with an integer beta \(1\) is not "
                                              "imported"):
        load_onnx_program(island.importable, input_shape=(1, 4, 5, 5))


@pytest.mark.parametrize("attrs, message", [
    ({"size": 4}, "size must be an odd int"),
    ({"size": 3, "beta": 2.0}, "integer beta"),
    ({"size": 3, "alpha": -1.0}, "alpha > 0"),
])
def test_bad_lrn_attributes_name_what_was_expected(attrs, message):
    x = np.ones((1, 3, 2, 2), F32)
    for fn in (onnx_lrn, onnx_lrn_reference):
        with pytest.raises(FloatIslandError, match=message):
            fn([x], attrs)
    with pytest.raises(FloatIslandError, match=r"\(N, C, H, W\)"):
        onnx_lrn([np.ones((3, 2, 2), F32)], ALEXNET)
