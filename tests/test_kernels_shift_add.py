"""Shift-add (APoT) accumulators: the fast conv2d_shift_add / linear_shift_add equal the
Python-int definition exactly (values and overflow counts) over random geometry, APoT weight
level sets, input codes and zero points, biases, adder widths and modes; and the datapath
kernel, not only the exact-sum path, is what the saturating cases exercise."""

from __future__ import annotations

from collections import Counter
from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwsim.errors import KernelError
from hwsim.kernels import AccumulatorSpec, conv2d_int_reference, linear_int_reference
from hwsim.kernels import _nb_shift_add
from hwsim.kernels import shift_add as shift_add_module
from hwsim.kernels.reference.dense import _accumulate
from hwsim.kernels.reference.shift_add import (
    conv2d_shift_add_reference,
    linear_shift_add_reference,
    weight_terms,
)
from hwsim.kernels.shift_add import conv2d_shift_add, linear_shift_add, shift_add_terms

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _sums(*parts: tuple[int, ...]) -> list[int]:
    """All a + b + c with a, b, c drawn from the parts (the APoT level construction)."""
    levels = {0}
    for part in parts:
        levels = {v + p for v in levels for p in part}
    return sorted(levels)


# Magnitude levels of APoT weights with B magnitude bits (ICLR 2020, additive powers of two).
APOT_LEVELS = {
    2: [0, 1, 2, 4],
    3: [0, 1, 2, 3, 4, 6, 8, 10],
    4: [0, 1, 2, 3, 4, 6, 8, 9, 12, 16, 18, 24, 32, 33, 36, 48],
    5: _sums((0, 64, 16, 2), (0, 32, 8, 1), (0, 4)),
    6: _sums((0, 256, 32, 4), (0, 128, 16, 2), (0, 64, 8, 1)),
}
APOT_TERMS = {2: 1, 3: 2, 4: 2, 5: 3, 6: 3}  # the most set bits of one level


@st.composite
def weights(draw, shape):
    """Signed APoT levels of B = 2..6 magnitude bits (int8, or int16 from B = 6), or now and
    then arbitrary integers |w| < 2^15 (the kernel does not require the level set)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    sign = np.where(rng.random(shape) < 0.5, -1, 1)
    b = draw(st.sampled_from([2, 3, 4, 4, 5, 6, "any"]))
    if b == "any":
        return (sign * rng.integers(0, 2**15, size=shape)).astype(np.int16)
    mag = rng.choice(np.array(APOT_LEVELS[b]), size=shape)
    return (sign * mag).astype(np.int8 if b <= 5 else np.int16)


@st.composite
def inputs(draw, shape):
    """uint8 or int8 codes of 2..8 bits, and a zero point in the codes' range."""
    signed = draw(st.booleans())
    bits = draw(st.sampled_from([2, 4, 8, 8]))
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.integers(lo, hi + 1, size=shape).astype(np.int8 if signed else np.uint8)
    return x, draw(st.integers(lo, hi))


@st.composite
def adders(draw, mode):
    """Mostly narrow adders (8..16 bits) that really overflow; sometimes wide ones."""
    bits = draw(st.sampled_from([8, 9, 10, 12, 13, 16, 16, 24, 32, 64]))
    return AccumulatorSpec(bits=bits, mode=mode)


@st.composite
def biases(draw, k, acc):
    """None, or a bias up to a quarter of the range, or (now and then) beyond the range."""
    kind = draw(st.sampled_from(["none", "none", "small", "small", "huge"]))
    if kind == "none":
        return None
    mag = (1 << (acc.bits - 3)) if kind == "small" else (1 << 63) - 1
    return np.array(draw(st.lists(st.integers(-mag, mag), min_size=k, max_size=k)), dtype=np.int64)


@st.composite
def conv_cases(draw, mode):
    n = draw(st.integers(1, 2))
    groups = draw(st.integers(1, 3))
    cg, kg = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    if draw(st.booleans()):  # depthwise: groups == C == K
        cg, kg = 1, 1
    r, s = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pads = tuple(draw(st.integers(0, 2)) for _ in range(4))  # (top, left, bottom, right)
    h = draw(st.integers(max(1, dilation[0] * (r - 1) + 1 - pads[0] - pads[2]), 8))
    w = draw(st.integers(max(1, dilation[1] * (s - 1) + 1 - pads[1] - pads[3]), 8))
    x, x_zp = draw(inputs((n, groups * cg, h, w)))
    acc = draw(adders(mode))
    return dict(x=x, x_zp=x_zp, w=draw(weights((groups * kg, cg, r, s))),
                bias=draw(biases(groups * kg, acc)), stride=stride, padding=pads,
                dilation=dilation, groups=groups, acc=acc)


@st.composite
def linear_cases(draw, mode):
    n, n_in, n_out = draw(st.integers(1, 4)), draw(st.integers(1, 64)), draw(st.integers(1, 6))
    x, x_zp = draw(inputs((n, n_in)))
    acc = draw(adders(mode))
    return dict(x=x, x_zp=x_zp, w=draw(weights((n_out, n_in))), bias=draw(biases(n_out, acc)),
                acc=acc)


def assert_same(fast, ref):
    assert fast.values.dtype == np.int64
    assert fast.values.shape == ref.values.shape
    np.testing.assert_array_equal(fast.values, ref.values)
    assert fast.overflow_count == ref.overflow_count


def _int_path_case(case: dict) -> dict:
    """The same case for conv2d_int_reference / linear_int_reference (weight zero point 0)."""
    return {**case, "w_zp": None}


def _check_all(fast_fn, ref_fn, int_ref_fn, strategy, settings_):
    """Run the property over `strategy`, recording which paths and overflows the examples hit:
    (mode, datapath kernel ran, some output overflowed) -> count."""
    seen: Counter = Counter()
    spy = patch.object(shift_add_module, "_saturate_datapath",
                       wraps=shift_add_module._saturate_datapath)

    @settings_
    @given(case=strategy)
    def prop(case):
        with spy as datapath:
            fast = fast_fn(**case)
        ref = ref_fn(**case)
        assert_same(fast, ref)
        # Tap-major order: the terms of one product share its sign, so both adders give exactly
        # what the multiply-then-add int path gives (see test_saturation_order_...).
        assert_same(fast, int_ref_fn(**_int_path_case(case)))
        seen[(case["acc"].mode, datapath.called, fast.overflow_count > 0)] += 1

    prop()
    assert sum(seen.values()) >= settings_.max_examples // 2, seen  # really ran
    return seen


def _assert_coverage(seen: Counter, mode: str) -> None:
    """The property is only meaningful if adders really overflow, in both modes, and the
    saturating datapath kernel runs (and the exact-sum path for saturate too)."""
    if mode == "wrap":
        assert seen[("wrap", False, True)] > 0, seen
        assert seen[("wrap", False, False)] > 0, seen
        assert sum(seen.values()) == seen[("wrap", False, True)] + seen[("wrap", False, False)]
    else:
        assert seen[("saturate", True, True)] > 0, seen
        assert seen[("saturate", False, False)] > 0, seen
        assert seen[("saturate", False, True)] == 0, seen  # the bound held: nothing can clip


MODES = pytest.mark.parametrize("mode", ["wrap", "saturate"])


@MODES
def test_conv2d_matches_reference(mode):
    seen = _check_all(conv2d_shift_add, conv2d_shift_add_reference, conv2d_int_reference,
                      conv_cases(mode), FAST)
    _assert_coverage(seen, mode)


@MODES
def test_linear_matches_reference(mode):
    seen = _check_all(linear_shift_add, linear_shift_add_reference, linear_int_reference,
                      linear_cases(mode), FAST)
    _assert_coverage(seen, mode)


@pytest.mark.slow
@MODES
def test_conv2d_matches_reference_many(mode):
    _assert_coverage(_check_all(conv2d_shift_add, conv2d_shift_add_reference,
                                conv2d_int_reference, conv_cases(mode), SLOW), mode)


@pytest.mark.slow
@MODES
def test_linear_matches_reference_many(mode):
    _assert_coverage(_check_all(linear_shift_add, linear_shift_add_reference,
                                linear_int_reference, linear_cases(mode), SLOW), mode)


def _apot(rng, b: int, shape) -> np.ndarray:
    mag = rng.choice(np.array(APOT_LEVELS[b]), size=shape)
    return (np.where(rng.random(shape) < 0.5, -1, 1) * mag).astype(np.int16)


@pytest.mark.parametrize("bits, bias_value, kind", [
    (11, 0, _nb_shift_add.NARROW),                  # 11-bit adder: int32 lanes
    (40, (1 << 39) - 5000, _nb_shift_add.WIDE),     # the bias leaves no headroom: int64 lanes
    (64, (1 << 63) - 5000, _nb_shift_add.SAFE),     # 64-bit adder: compare before adding
    (64, -(1 << 63) + 5000, _nb_shift_add.SAFE),
])
def test_datapath_kernel_runs_when_the_bound_fails(bits, bias_value, kind):
    rng = np.random.default_rng(bits)
    x = rng.integers(0, 256, (2, 6, 7, 6), dtype=np.uint8)
    w = _apot(rng, 4, (4, 3, 3, 2))
    bias = np.array([bias_value, -bias_value, 7, bias_value // 2], dtype=np.int64)
    case = dict(x=x, x_zp=100, w=w, bias=bias, stride=(1, 2), padding=(2, 0, 1, 1),
                dilation=(2, 1), groups=2, acc=AccumulatorSpec(bits, "saturate"))
    with patch.object(_nb_shift_add, "saturate_terms", wraps=_nb_shift_add.saturate_terms) as k:
        fast = conv2d_shift_add(**case)
    assert k.call_count == 1 and k.call_args.args[10] == kind
    ref = conv2d_shift_add_reference(**case)
    assert_same(fast, ref)
    assert ref.overflow_count > 0


@pytest.mark.parametrize("bits, kind", [(12, _nb_shift_add.NARROW), (40, _nb_shift_add.WIDE),
                                        (64, _nb_shift_add.SAFE)])
def test_datapath_clips_exactly_at_the_range_limits(bits, kind):
    """Reaching max_value / min_value exactly is no overflow; one more is (every adder kind)."""
    acc = AccumulatorSpec(bits, "saturate")
    lo, hi = acc.min_value, acc.max_value
    x = np.array([[1, 0, 1]], dtype=np.int8)  # centred inputs 1, 0, 1 (x_zp = 0)
    # The middle input is 0: its weight only defeats the bound (so the datapath runs).
    cases = [  # (bias, weights, expected value, overflowed)
        (hi - 32, [32, 5, 0], hi, 0), (hi - 32, [33, 5, 0], hi, 1), (hi - 34, [32, 5, 2], hi, 0),
        (hi - 32, [32, 5, -1], hi - 1, 0), (hi - 32, [48, 5, -16], hi - 16, 1),
        (lo + 32, [-32, 9, 0], lo, 0), (lo + 32, [-33, 9, 0], lo, 1), (lo + 16, [-16, 9, 1], lo + 1, 0),
    ]
    for bias, wv, value, overflowed in cases:
        w = np.array([wv], dtype=np.int8)
        b = np.array([bias], dtype=np.int64)
        with patch.object(_nb_shift_add, "saturate_terms", wraps=_nb_shift_add.saturate_terms) as k:
            fast = linear_shift_add(x, 0, w, b, acc)
        assert k.call_count == 1 and k.call_args.args[10] == kind
        assert fast.values.tolist() == [[value]] and fast.overflow_count == overflowed, (bias, wv)
        assert_same(fast, linear_shift_add_reference(x, 0, w, b, acc))


def test_exact_path_when_the_bound_holds():
    """Saturate with a bound proving no step can clip: no datapath kernel, no overflow."""
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (1, 8, 5, 5), dtype=np.uint8)
    w = _apot(rng, 4, (3, 8, 3, 3))  # 255 * 72 * 48 < 2^20
    case = dict(x=x, x_zp=0, w=w, padding=1, acc=AccumulatorSpec(21, "saturate"))
    with patch.object(_nb_shift_add, "saturate_terms") as k:
        fast = conv2d_shift_add(**case)
    assert not k.called
    assert_same(fast, conv2d_shift_add_reference(**case))
    assert fast.overflow_count == 0


@pytest.mark.parametrize("mode", ["wrap", "saturate"])
def test_bias_near_the_int64_limits_and_strided_views(mode):
    """bias + sum may leave int64 (the exact path then adds the bias in Python ints); inputs and
    weights may be non-contiguous views."""
    rng = np.random.default_rng(11)
    x = rng.integers(0, 256, (2, 4, 9, 7), dtype=np.uint8)[:, ::-1, ::2]
    w = _apot(rng, 5, (2, 4, 3, 3)).transpose(0, 1, 3, 2)
    bias = np.array([(1 << 63) - 3, -(1 << 63) + 2], dtype=np.int64)
    for bits in (64, 20):
        case = dict(x=x, x_zp=9, w=w, bias=bias, padding=(1, 0, 0, 2),
                    acc=AccumulatorSpec(bits, mode))
        fast = conv2d_shift_add(**case)
        assert_same(fast, conv2d_shift_add_reference(**case))
        assert fast.overflow_count > 0
    lin = dict(x=x[:, :, 0, 0], x_zp=9, w=w[:, :, 0, 0], bias=bias, acc=AccumulatorSpec(64, mode))
    assert_same(linear_shift_add(**lin), linear_shift_add_reference(**lin))


@pytest.mark.parametrize("acc", [AccumulatorSpec(8, "saturate"), AccumulatorSpec(8, "wrap"),
                                 AccumulatorSpec(32, "wrap")])
def test_empty_batch_and_empty_reduction(acc):
    """No samples, or no input channels (every output is the bias alone)."""
    bias = np.array([500, -3], np.int32)
    for x, w in [(np.zeros((0, 2, 3, 3), np.uint8), np.ones((2, 2, 1, 1), np.int8)),
                 (np.zeros((1, 0, 3, 3), np.uint8), np.ones((2, 0, 1, 1), np.int8))]:
        assert_same(conv2d_shift_add(x, 0, w, bias, acc=acc),
                    conv2d_shift_add_reference(x, 0, w, bias, acc=acc))
        xl, wl = x[:, :, 0, 0], w[:, :, 0, 0]
        assert_same(linear_shift_add(xl, 0, wl, bias, acc), linear_shift_add_reference(xl, 0, wl, bias, acc))


def test_narrow_adders_really_overflow_and_the_modes_differ():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (1, 8, 5, 5), dtype=np.uint8)
    w = _apot(rng, 4, (4, 8, 3, 3))
    for bits in (12, 16):
        wrap = conv2d_shift_add(x, 0, w, padding=1, acc=AccumulatorSpec(bits, "wrap"))
        sat = conv2d_shift_add(x, 0, w, padding=1, acc=AccumulatorSpec(bits, "saturate"))
        exact = conv2d_shift_add(x, 0, w, padding=1, acc=AccumulatorSpec(64, "wrap"))
        half = 1 << (bits - 1)
        assert wrap.overflow_count == int(((exact.values < -half) | (exact.values >= half)).sum()) > 10
        np.testing.assert_array_equal(wrap.values, ((exact.values + half) % (2 * half)) - half)
        assert sat.overflow_count >= wrap.overflow_count
        assert np.all((sat.values >= -half) & (sat.values < half))
        assert not np.array_equal(sat.values, wrap.values)
        assert_same(sat, conv2d_shift_add_reference(x, 0, w, padding=1,
                                                    acc=AccumulatorSpec(bits, "saturate")))


def test_saturation_order_within_a_product_cannot_matter_across_products_it_does():
    """8-bit saturating adder, bias 100, taps (x=1, w=+33 = 32+1) then (x=1, w=-48 = -32-16).

    Tap-major shift-add (the definition): 100 +32 -> 127 (clip), +1 -> 127 (clip), -32 -> 95,
    -16 -> 79. Multiply-then-add: 100 +33 -> 127 (clip), -48 -> 79: the same, and it always is,
    because the terms of one product share its sign and clipping same-sign addends one by one
    equals clipping their sum. A bit-plane-major schedule (every tap's top bit first) interleaves
    products of opposite signs: 100 +32 -> 127, -32 -> 95, -16 -> 79, +1 -> 80: it differs."""
    acc = AccumulatorSpec(8, "saturate")
    x = np.array([[1, 1]], dtype=np.int8)
    w = np.array([[33, -48]], dtype=np.int8)
    bias = np.array([100], dtype=np.int32)
    shift_add = linear_shift_add(x, 0, w, bias, acc)
    assert shift_add.values.tolist() == [[79]] and shift_add.overflow_count == 1
    assert_same(shift_add, linear_shift_add_reference(x, 0, w, bias, acc))
    assert_same(shift_add, linear_int_reference(x, 0, w, None, bias, acc))
    assert _accumulate(100, [32, 1, -32, -16], acc) == (79, True)   # tap-major (the definition)
    assert _accumulate(100, [32, -32, -16, 1], acc) == (80, True)   # bit-plane-major
    # wrap is order-independent: the exact sum 85 wrapped (no overflow of the final sum).
    wrap = linear_shift_add(x, 0, w, bias, AccumulatorSpec(8, "wrap"))
    assert wrap.values.tolist() == [[85]] and wrap.overflow_count == 0


def test_weight_terms_and_term_counts():
    assert weight_terms(-33) == [(-1, 5), (-1, 0)]
    assert weight_terms(48) == [(1, 5), (1, 4)]
    assert weight_terms(0) == []
    for b, levels in APOT_LEVELS.items():
        assert len(levels) == 2 ** b
        w = np.array(levels + [-v for v in levels], dtype=np.int16)
        assert shift_add_terms(w) == APOT_TERMS[b]
    assert shift_add_terms(np.array([32767, -1], dtype=np.int16)) == 15
    assert shift_add_terms(np.zeros((0, 3), dtype=np.int8)) == 0
    table = _nb_shift_add.term_table(np.array([[-33, 0, 6], [0, 0, 0]], dtype=np.int8), 6)
    ptr, tap, coef = (a.tolist() for a in table)
    assert ptr == [0, 4, 4] and tap == [0, 0, 2, 2] and coef == [-32, -1, 4, 2]


def test_linear_batch_of_one_and_wide_reduction_on_the_datapath():
    rng = np.random.default_rng(3)
    x = rng.integers(-128, 128, (1, 300), dtype=np.int8)
    w = _apot(rng, 6, (5, 300))
    case = dict(x=x, x_zp=-7, w=w, bias=rng.integers(-999, 999, 5), acc=AccumulatorSpec(16, "saturate"))
    fast = linear_shift_add(**case)
    assert_same(fast, linear_shift_add_reference(**case))
    assert fast.overflow_count > 0


@pytest.mark.parametrize("fn, args, match", [
    (conv2d_shift_add, (np.zeros((1, 2, 3, 3), np.uint8), 0, np.ones((2, 2, 1, 1), np.float32)),
     "conv2d_shift_add: w must hold integer codes"),
    (conv2d_shift_add, (np.zeros((1, 2, 3, 3), np.float64), 0, np.ones((2, 2, 1, 1), np.int8)),
     "conv2d_shift_add: x must hold integer codes"),
    (conv2d_shift_add, (np.zeros((1, 3, 3, 3), np.uint8), 0, np.ones((2, 2, 1, 1), np.int8)),
     r"w must have shape \(K, C/groups, R, S\)"),
    (conv2d_shift_add, (np.zeros((1, 2, 3, 3), np.uint8), 0, np.full((2, 2, 1, 1), 1 << 15, np.int32)),
     r"\|w\| < 2\^15"),
    (conv2d_shift_add, (np.zeros((1, 2, 3, 3), np.uint8), 300, np.ones((2, 2, 1, 1), np.int8)),
     "x_zp must lie in"),
    (conv2d_shift_add, (np.zeros((1, 2, 2, 2), np.uint8), 0, np.ones((2, 2, 3, 3), np.int8)),
     "smaller than the kernel extent"),
    (conv2d_shift_add_reference, (np.zeros((1, 2, 3, 3), np.uint8), 0, np.ones((2, 2, 1, 1), np.float32)),
     "conv2d_shift_add_reference: w must hold integer codes"),
    (linear_shift_add, (np.zeros((1, 4), np.uint8), 0, np.ones((2, 5), np.int8)),
     "x has 4 input features"),
    (linear_shift_add, (np.zeros((1, 4), np.uint8), 0, np.ones((2, 4), np.float64)),
     "linear_shift_add: w must hold integer codes"),
    (linear_shift_add_reference, (np.zeros((1, 4), np.uint8), 0, np.full((2, 4), -40000, np.int32)),
     r"\|w\| < 2\^15"),
])
def test_bad_operands_raise_kernel_errors(fn, args, match):
    with pytest.raises(KernelError, match=match):
        fn(*args)


def test_bad_bias_groups_and_accumulator():
    x, w = np.zeros((1, 2, 3, 3), np.uint8), np.ones((2, 2, 1, 1), np.int8)
    with pytest.raises(KernelError, match="bias must have shape"):
        conv2d_shift_add(x, 0, w, bias=np.zeros(3, np.int32))
    with pytest.raises(KernelError, match="acc must be an AccumulatorSpec"):
        conv2d_shift_add(x, 0, w, acc="saturate")
    with pytest.raises(KernelError, match="groups must be >= 1 and divide"):
        conv2d_shift_add(x, 0, w, groups=0)
    with pytest.raises(KernelError, match="groups must be >= 1 and divide"):
        conv2d_shift_add(x, 0, np.ones((3, 1, 1, 1), np.int8), groups=2)
    with pytest.raises(KernelError, match="shift_add_terms: w must be a numpy integer array"):
        shift_add_terms(np.ones(3, np.float32))
