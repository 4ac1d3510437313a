"""XNOR/popcount binary kernels (hwsim/kernels/binary.py) equal their int64 references
(hwsim/kernels/reference/binary.py) exactly."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hwsim.errors import HwsimError, KernelError
import hwsim.kernels as hk
from hwsim.kernels import binary as bk
from hwsim.kernels.reference import binary as rk

dims = st.integers(1, 40)
# Reduction lengths: small (< 64), exact multiples of 64, and ragged ones up to 300.
lengths = st.one_of(st.integers(1, 63), st.sampled_from([64, 128, 192, 256]), st.integers(65, 300))
seeds = st.integers(0, 2**32 - 1)


def _signs(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    return np.where(rng.random(shape) < 0.5, -1, 1).astype(np.int8)


@settings(max_examples=60)
@given(rows=st.integers(1, 12), k=lengths, seed=seeds)
def test_pack_matches_reference_and_round_trips(rows, k, seed):
    b = _signs(np.random.default_rng(seed), (rows, k))
    packed, n_bits = bk.pack_signs(b)
    ref, ref_bits = rk.pack_signs_reference(b)
    assert n_bits == ref_bits == k
    assert packed.dtype == np.uint64 and packed.shape == (rows, -(-k // 64))
    np.testing.assert_array_equal(packed, ref)
    np.testing.assert_array_equal(bk.unpack_signs(packed, n_bits), b)
    if k % 64:  # padding bits of the last word are written as zero
        assert not (packed[:, -1] >> np.uint64(k % 64)).any()


def test_pack_bit_layout_and_axis():
    b = -np.ones((2, 70), dtype=np.int8)
    b[0, 0] = b[0, 63] = b[0, 64] = b[1, 69] = 1
    packed, n = bk.pack_signs(b)
    assert n == 70
    assert packed.tolist() == [[1 | (1 << 63), 1], [0, 1 << 5]]
    # Packing along axis 0 of the transpose moves that axis last: same words.
    packed_t, n_t = bk.pack_signs(np.ascontiguousarray(b.T), axis=0)
    np.testing.assert_array_equal(packed_t, packed)
    cube = _signs(np.random.default_rng(3), (3, 130, 4))
    packed3, n3 = bk.pack_signs(cube, axis=1)
    assert packed3.shape == (3, 4, 3) and n3 == 130
    np.testing.assert_array_equal(bk.unpack_signs(packed3, n3), cube.transpose(0, 2, 1))


@settings(max_examples=80)
@given(m=dims, n=dims, k=lengths, seed=seeds)
def test_xnor_popcount_matmul_equals_reference(m, n, k, seed):
    rng = np.random.default_rng(seed)
    a, b = _signs(rng, (m, k)), _signs(rng, (n, k))
    ap, _ = bk.pack_signs(a)
    bp, _ = bk.pack_signs(b)
    out = bk.xnor_popcount_matmul(ap, bp, k)
    assert out.dtype == np.int64 and out.shape == (m, n)
    np.testing.assert_array_equal(out, rk.xnor_popcount_matmul_reference(ap, bp, k))
    np.testing.assert_array_equal(out, a.astype(np.int64) @ b.astype(np.int64).T)


@settings(max_examples=40)
@given(m=dims, n=dims, k=lengths.filter(lambda v: v % 64 != 0), seed=seeds)
def test_padding_bits_never_matter(m, n, k, seed):
    rng = np.random.default_rng(seed)
    ap, _ = bk.pack_signs(_signs(rng, (m, k)))
    bp, _ = bk.pack_signs(_signs(rng, (n, k)))
    clean = bk.xnor_popcount_matmul(ap, bp, k)
    pad = ~np.uint64((1 << (k % 64)) - 1)
    dirty_a, dirty_b = ap.copy(), bp.copy()
    # Garbage in the padding of one side only (worst case for XOR) and then of both.
    dirty_a[:, -1] |= rng.integers(0, 2**63, size=m, dtype=np.uint64) & pad | (np.uint64(1) << np.uint64(63))
    np.testing.assert_array_equal(bk.xnor_popcount_matmul(dirty_a, bp, k), clean)
    dirty_b[:, -1] |= rng.integers(0, 2**63, size=n, dtype=np.uint64) & pad
    np.testing.assert_array_equal(bk.xnor_popcount_matmul(dirty_a, dirty_b, k), clean)
    np.testing.assert_array_equal(rk.xnor_popcount_matmul_reference(dirty_a, dirty_b, k), clean)


def test_xnor_known_values():
    k = 100
    ones = np.ones((1, k), dtype=np.int8)
    a, _ = bk.pack_signs(np.concatenate([ones, -ones]))
    out = bk.xnor_popcount_matmul(a, a, k)
    assert out.tolist() == [[k, -k], [-k, k]]


@settings(max_examples=60)
@given(m=dims, n=dims, k=lengths, bits=st.integers(1, 8), seed=seeds)
def test_bitplane_matmul_equals_reference_and_matmul(m, n, k, bits, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 1 << bits, size=(m, k)).astype(np.uint8)
    x[0, 0] = (1 << bits) - 1  # the top code is always present
    w = _signs(rng, (n, k))
    out = bk.bitplane_matmul(x, w, bits)
    assert out.dtype == np.int64 and out.shape == (m, n)
    np.testing.assert_array_equal(out, rk.bitplane_matmul_reference(x, w, bits))
    np.testing.assert_array_equal(out, x.astype(np.int64) @ w.astype(np.int64).T)


def test_bitplane_wide_codes():
    rng = np.random.default_rng(7)
    x = rng.integers(0, 1 << 16, size=(5, 77)).astype(np.uint16)
    w = _signs(rng, (3, 77))
    np.testing.assert_array_equal(bk.bitplane_matmul(x, w, 16), x.astype(np.int64) @ w.astype(np.int64).T)
    # More planes than the codes need changes nothing.
    np.testing.assert_array_equal(bk.bitplane_matmul(x, w, 20), bk.bitplane_matmul(x, w, 16))


@settings(max_examples=30)
@given(m=st.integers(1, 12), n=st.integers(1, 12), k=lengths, k_a=st.integers(1, 4),
       k_w=st.integers(1, 4), seed=seeds)
def test_binary_linear_equals_reference(m, n, k, k_a, k_w, seed):
    rng = np.random.default_rng(seed)
    xp, wp = _signs(rng, (k_a, m, k)), _signs(rng, (k_w, n, k))
    xs, ws = rng.random((k_a, m)) * 2, rng.random((k_w, n)) * 0.1
    got = bk.binary_linear(xp, xs, wp, ws)
    ref = rk.binary_linear_reference(xp, xs, wp, ws)
    assert got.dots.shape == (k_a, k_w, m, n) and got.dots.dtype == np.int64
    np.testing.assert_array_equal(got.dots, ref.dots)
    np.testing.assert_array_equal(got.values, ref.values)  # same float64 order: bitwise equal
    # The scaled product is the float product of the reconstructed operands (up to rounding).
    x = np.einsum("im,imk->mk", xs, xp.astype(np.float64))
    w = np.einsum("jn,jnk->nk", ws, wp.astype(np.float64))
    np.testing.assert_allclose(got.values, x @ w.T, rtol=1e-9, atol=1e-9 * k)


def test_binary_linear_one_bit_is_scaled_xnor():
    rng = np.random.default_rng(11)
    xp, wp = _signs(rng, (1, 4, 130)), _signs(rng, (1, 5, 130))
    res = bk.binary_linear(xp, np.full((1, 4), 0.5), wp, np.full((1, 5), 4.0))
    exact = xp[0].astype(np.int64) @ wp[0].astype(np.int64).T
    np.testing.assert_array_equal(res.dots[0, 0], exact)
    np.testing.assert_array_equal(res.values, 2.0 * exact)


S8 = np.ones((3, 10), dtype=np.int8)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: bk.pack_signs(np.array([[1, 0, -1]], dtype=np.int8)),
         r"pack_signs: b must hold only -1 and \+1; got 0 at index \(0, 1\)"),
        (lambda: bk.pack_signs(np.array([[1, 2]], dtype=np.int8)), r"got 2 at index \(0, 1\)"),
        (lambda: bk.pack_signs(S8.astype(np.uint8)), r"pack_signs: b must be a signed integer array.*uint8"),
        (lambda: bk.pack_signs(S8.astype(np.float32)), r"signed integer array.*float32"),
        (lambda: bk.pack_signs([1, -1]), r"pack_signs: b must be a numpy array.*got list"),
        (lambda: bk.pack_signs(np.ones((3, 0), dtype=np.int8)), r"at least one element along axis -1"),
        (lambda: bk.pack_signs(S8, axis=2), r"axis 2 is out of range for b of shape \(3, 10\)"),
        (lambda: bk.unpack_signs(np.zeros((2, 2), dtype=np.uint64), 10),
         r"unpack_signs: packed has 2 words per row, but n_bits=10 needs ceil\(10/64\) = 1"),
        (lambda: bk.xnor_popcount_matmul(np.zeros((2, 1), np.uint64), np.zeros((2, 2), np.uint64), 64),
         r"xnor_popcount_matmul: b_packed has 2 words per row, but n_bits=64 needs .* = 1"),
        (lambda: bk.xnor_popcount_matmul(np.zeros((2, 1), np.int64), np.zeros((2, 1), np.uint64), 10),
         r"a_packed must be uint64 words from pack_signs; got dtype int64"),
        (lambda: bk.xnor_popcount_matmul(np.zeros(1, np.uint64), np.zeros((2, 1), np.uint64), 10),
         r"a_packed must have shape \(rows, words\) \(2 dims\); got shape \(1,\)"),
        (lambda: bk.xnor_popcount_matmul(np.zeros((1, 1), np.uint64), np.zeros((1, 1), np.uint64), 0),
         r"xnor_popcount_matmul: n_bits must be an int >= 1; got 0"),
        (lambda: bk.xnor_popcount_matmul(np.zeros((1, 1), np.uint64), np.zeros((1, 1), np.uint64), 1.0),
         r"n_bits must be an int; got 1.0"),
        (lambda: bk.bitplane_matmul(np.full((2, 10), 4, np.uint8), S8, 2),
         r"bitplane_matmul: x_codes must be < 2\*\*bits = 4 for bits=2; got 4 at index \(0, 0\)"),
        (lambda: bk.bitplane_matmul(np.zeros((2, 10), np.int8), S8, 2),
         r"x_codes must be an unsigned integer array.*got dtype int8"),
        (lambda: bk.bitplane_matmul(np.zeros((2, 9), np.uint8), S8, 2),
         r"need the same K >= 1; got shapes \(2, 9\) and \(3, 10\)"),
        (lambda: bk.bitplane_matmul(np.zeros((2, 10), np.uint8), S8, 0), r"bits must be an int in \[1, 32\]; got 0"),
        (lambda: bk.bitplane_matmul(np.zeros((2, 10), np.uint8), S8 * 0, 1),
         r"bitplane_matmul: w_signs must hold only -1 and \+1; got 0"),
        (lambda: bk.binary_linear(S8[None], np.ones((1, 3)), S8[None], np.ones((1, 2))),
         r"binary_linear: w_scales must be a real array of shape \(1, 3\).*got shape \(1, 2\)"),
        (lambda: bk.binary_linear(S8[None], np.full((1, 3), np.nan), S8[None], np.ones((1, 3))),
         r"binary_linear: x_scales must be finite"),
        (lambda: bk.binary_linear(S8[None], np.ones((1, 3)), S8[None, :, :5], np.ones((1, 3))),
         r"x_planes has K=10 but w_planes has K=5"),
        (lambda: bk.binary_linear(S8, np.ones((1, 3)), S8[None], np.ones((1, 3))),
         r"x_planes must have shape \(k_a, M, K\) \(3 dims\); got shape \(3, 10\)"),
    ],
)
def test_errors(call, match):
    with pytest.raises(KernelError, match=match):
        call()
    assert issubclass(KernelError, HwsimError)


def test_reference_rejects_what_the_kernel_rejects():
    with pytest.raises(KernelError, match=r"got 0 at index"):
        rk.bitplane_matmul_reference(np.zeros((1, 2), np.uint8), np.zeros((1, 2), np.int8), 1)
    with pytest.raises(KernelError, match=r"words per row"):
        rk.xnor_popcount_matmul_reference(np.zeros((1, 2), np.uint64), np.zeros((1, 1), np.uint64), 10)


@settings(max_examples=40)
@given(n=st.integers(1, 2), c=st.integers(1, 12), k=st.integers(1, 5), h=st.integers(1, 9),
       w=st.integers(1, 9), r=st.integers(1, 3), s=st.integers(1, 3), sh=st.integers(1, 3),
       sw=st.integers(1, 3), ph=st.integers(0, 2), pw=st.integers(0, 2),
       pad_value=st.sampled_from([1, -1]), seed=seeds)
def test_binary_conv2d_equals_reference(n, c, k, h, w, r, s, sh, sw, ph, pw, pad_value, seed):
    assume(h + 2 * ph >= r and w + 2 * pw >= s)  # else no output; the error path is tested below
    rng = np.random.default_rng(seed)
    x, wt = _signs(rng, (n, c, h, w)), _signs(rng, (k, c, r, s))
    out = bk.binary_conv2d(x, wt, (sh, sw), (ph, pw), pad_value)
    ref = rk.binary_conv2d_reference(x, wt, (sh, sw), (ph, pw), pad_value)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, ref)


def test_binary_conv2d_padding_contributes_pad_value():
    # All-(-1) input, all-(+1) 3x3 weights, padding 1: a corner window sees 4 inputs and 5 pads.
    x = -np.ones((1, 1, 4, 4), dtype=np.int8)
    w = np.ones((1, 1, 3, 3), dtype=np.int8)
    assert bk.binary_conv2d(x, w, padding=1)[0, 0, 0, 0] == 5 - 4
    assert bk.binary_conv2d(x, w, padding=1, pad_value=-1)[0, 0, 0, 0] == -9
    assert bk.binary_conv2d(x, w, padding=1)[0, 0, 1, 1] == -9  # interior: no padding


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(w_signs=np.ones((2, 3, 3, 3), np.int8)), r"binary_conv2d: w_signs must have shape \(K, C, R, S\) with C = 2"),
        (dict(stride=0), r"binary_conv2d: stride must be an int >= 1 or a pair"),
        (dict(padding=(1, -1)), r"binary_conv2d: padding must be an int >= 0"),
        (dict(pad_value=0), r"pad_value must be -1 or \+1.*got 0"),
        (dict(x_signs=np.ones((1, 2, 2, 2), np.int8)), r"\(height\): the padded input \(2\) is smaller than the kernel \(3\)"),
        (dict(x_signs=np.zeros((1, 2, 5, 5), np.int8)), r"binary_conv2d: x_signs must hold only -1 and \+1"),
    ],
)
def test_binary_conv2d_errors(kwargs, match):
    args = dict(x_signs=np.ones((1, 2, 5, 5), np.int8), w_signs=np.ones((4, 2, 3, 3), np.int8))
    args.update(kwargs)
    with pytest.raises(KernelError, match=match):
        bk.binary_conv2d(**args)


def test_public_names_are_exported():
    for name in ("pack_signs", "unpack_signs", "xnor_popcount_matmul", "bitplane_matmul",
                 "binary_linear", "binary_conv2d", "BinaryLinearResult"):
        assert getattr(hk, name) is getattr(bk, name) and name in hk.__all__


def test_empty_row_counts_are_allowed():
    ap, k = bk.pack_signs(np.ones((0, 70), dtype=np.int8))
    bp, _ = bk.pack_signs(np.ones((3, 70), dtype=np.int8))
    assert ap.shape == (0, 2)
    assert bk.xnor_popcount_matmul(ap, bp, k).shape == (0, 3)
    assert bk.unpack_signs(np.zeros((0,), dtype=np.uint64).reshape(0, 2), 70).shape == (0, 70)
    with pytest.raises(KernelError, match=r"unpack_signs: packed has 0 words per row"):
        bk.unpack_signs(np.zeros((0,), dtype=np.uint64), 70)
