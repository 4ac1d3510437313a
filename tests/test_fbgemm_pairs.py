"""hwsim.engines.fbgemm_linear against PyTorch's fbgemm engine on its AVX2 path (no VNNI): full-range
u8 activations make vpmaddubsw saturate adjacent product pairs to int16, so exact integer math
mismatches many outputs while the pair-saturation model reproduces fbgemm bit for bit.

torch runs only in a subprocess (FBGEMM_ENABLE_INSTRUCTIONS must be set before torch loads);
hwsim.analysis itself never imports torch.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.engines import EngineError, fbgemm_accumulators, fbgemm_linear
from hwsim.kernels.fma import fma_f32

TIE_RATIOS = (0.5, 0.25, 0.75, 0.125, 1.5, 2.5)


# ------------------------------------------------------------------------------------------
# The model against pure-Python definitions

def _round_f32(v: Fraction) -> np.float32:
    """Round a rational to the nearest float32, ties to even: the definition, by comparison."""
    f = np.float32(float(v))
    cands = [f, np.nextafter(f, np.float32(np.inf)), np.nextafter(f, np.float32(-np.inf))]
    cands = [c for c in cands if np.isfinite(c)]
    best = min(abs(Fraction(float(c)) - v) for c in cands)
    near = [c for c in cands if abs(Fraction(float(c)) - v) == best]
    return min(near, key=lambda c: int(np.array(c).view(np.uint32)) & 1)


finite_f32 = st.floats(-1e6, 1e6, width=32, allow_nan=False, allow_infinity=False)


@settings(max_examples=300)
@given(finite_f32, finite_f32, finite_f32)
def test_fma_f32_rounds_once_like_the_exact_rational(a, b, c):
    got = fma_f32(np.float32(a), np.float32(b), np.float32(c))
    want = _round_f32(Fraction(a) * Fraction(b) + Fraction(c))
    assert got == want


def test_fma_f32_handles_a_float64_sum_that_lands_on_a_float32_midpoint():
    # a*b = 64 - 2^-40; c = 2^30 + 128: the float64 sum rounds to the float32 midpoint
    # 2^30 + 192, and a second rounding (half even) would give 2^30 + 256; the true value is below.
    a, b, c = np.float32(64 * (1 + 2.0**-23)), np.float32(1 - 2.0**-23), np.float32(2.0**30 + 128)
    assert np.float32(np.float64(a) * np.float64(b) + np.float64(c)) == np.float32(2.0**30 + 256)
    assert fma_f32(a, b, c) == np.float32(2.0**30 + 128)
    assert fma_f32(-a, b, -c) == np.float32(-(2.0**30 + 128))


def _accumulators_reference(x, x_zp, w, w_zp, pairs) -> np.ndarray:
    """Python ints: raw pair sums (int16-saturated or not), zero-point correction, int32 wrap."""
    m, k = x.shape
    n = w.shape[0]
    out = np.zeros((m, n), dtype=np.int64)
    for i in range(m):
        xi = [int(v) for v in x[i]] + [0]
        for j in range(n):
            wj = [int(v) for v in w[j]] + [0]
            raw = 0
            for t in range(0, k, 2):
                p = xi[t] * wj[t] + xi[t + 1] * wj[t + 1]
                raw += min(max(p, -32768), 32767) if pairs else p
            v = raw - x_zp * sum(wj) - w_zp * sum(xi) + k * x_zp * w_zp
            out[i, j] = (v + (1 << 31)) % (1 << 32) - (1 << 31)
    return out


@settings(max_examples=40)
@given(m=st.integers(1, 4), k=st.integers(1, 9), n=st.integers(1, 4), x_zp=st.integers(0, 255),
       w_zp=st.integers(-128, 127), pairs=st.booleans(), seed=st.integers(0, 2**31))
def test_fbgemm_accumulators_match_the_int_reference(m, k, n, x_zp, w_zp, pairs, seed):
    rng = np.random.default_rng(seed)
    x = rng.choice([0, 1, 128, 254, 255], (m, k)).astype(np.uint8) if seed % 2 else \
        rng.integers(0, 256, (m, k)).astype(np.uint8)
    w = rng.choice([-128, -127, -1, 0, 1, 127], (n, k)).astype(np.int8) if seed % 3 else \
        rng.integers(-128, 128, (n, k)).astype(np.int8)
    got = fbgemm_accumulators(x, x_zp, w, w_zp, int16_pairs=pairs)
    np.testing.assert_array_equal(got, _accumulators_reference(x, x_zp, w, w_zp, pairs))


def test_bad_operands_name_the_field():
    x = np.zeros((2, 4), np.uint8)
    w = np.zeros((3, 4), np.int8)
    with pytest.raises(EngineError, match="x must be uint8"):
        fbgemm_linear(x.astype(np.int8), 0.1, 0, w, 0.1, 0, None, 0.1, 0)
    with pytest.raises(EngineError, match=r"w must be int8 codes \(N, K=4\)"):
        fbgemm_linear(x, 0.1, 0, w[:, :3], 0.1, 0, None, 0.1, 0)
    with pytest.raises(EngineError, match="w_scale must be one positive"):
        fbgemm_linear(x, 0.1, 0, w, np.ones(3) * 0.1, 0, None, 0.1, 0)
    with pytest.raises(EngineError, match=r"x_zp must be one integer in \[0, 255\]"):
        fbgemm_linear(x, 0.1, 300, w, 0.1, 0, None, 0.1, 0)
    with pytest.raises(EngineError, match=r"bias must have 3 entries"):
        fbgemm_linear(x, 0.1, 0, w, 0.1, 0, np.zeros(2), 0.1, 0)


# ------------------------------------------------------------------------------------------
# Against torch's fbgemm, AVX2 path, in a fresh process

_TORCH_SCRIPT = textwrap.dedent("""
    import sys, warnings
    import numpy as np, torch
    warnings.filterwarnings("ignore")
    torch.backends.quantized.engine = "fbgemm"
    cases = np.load(sys.argv[1])
    out = {}
    for i in range(int(cases["count"])):
        x, w = cases[f"x{i}"], cases[f"w{i}"]
        sx, zx, sw, zw, sy, zy = cases[f"p{i}"]
        xq = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x), float(sx), int(zx))
        wq = torch._make_per_tensor_quantized_tensor(torch.from_numpy(w), float(sw), int(zw))
        b = torch.from_numpy(cases[f"b{i}"]) if f"b{i}" in cases else None
        packed = torch.ops.quantized.linear_prepack(wq, b)
        out[f"y{i}"] = torch.ops.quantized.linear(xq, packed, float(sy), int(zy)).int_repr().numpy()
    np.savez(sys.argv[2], **out)
""")


def _cases(seed: int, *, x_max: int = 255) -> list[dict]:
    rng = np.random.default_rng(seed)
    cases = []
    shapes = [(256, 256, 128), (128, 257, 96), (192, 1000, 64), (64, 63, 40)]  # odd and long K
    for i, (m, k, n) in enumerate(shapes * 2):
        tie = i >= len(shapes)
        sx = float(rng.uniform(0.005, 0.05))
        sw = float(rng.uniform(0.002, 0.02))
        wmax = 8 if tie else 128  # small weights + s_y = s_x s_w / r: exact .5 ties
        sy = sx * sw / float(rng.choice(TIE_RATIOS)) if tie else sx * sw * float(rng.uniform(200, 2000))
        case = dict(x=rng.integers(0, x_max + 1, (m, k)).astype(np.uint8),
                    w=rng.integers(-wmax, wmax, (n, k)).astype(np.int8),
                    p=np.array([sx, int(rng.integers(0, x_max + 1)), sw, int(rng.integers(-4, 5)) * (i % 2),
                                sy, int(rng.integers(0, 256))], dtype=np.float64))
        if i % 4 != 3:
            case["b"] = (rng.standard_normal(n) * 200 * sx * sw).astype(np.float32)
        cases.append(case)
    return cases


def _run_torch_fbgemm(cases: list[dict], tmp_path) -> list[np.ndarray]:
    pytest.importorskip("torch", reason="torch is needed to run fbgemm itself")
    arrays = {"count": np.array(len(cases))}
    for i, c in enumerate(cases):
        arrays.update({f"{key}{i}": v for key, v in c.items()})
    src, dst, script = tmp_path / "cases.npz", tmp_path / "out.npz", tmp_path / "run_fbgemm.py"
    np.savez(src, **arrays)
    script.write_text(_TORCH_SCRIPT)
    env = dict(os.environ, FBGEMM_ENABLE_INSTRUCTIONS="AVX2", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(script), str(src), str(dst)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = np.load(dst)
    return [out[f"y{i}"] for i in range(len(cases))]


def _hwsim(case: dict, pairs: bool) -> np.ndarray:
    sx, zx, sw, zw, sy, zy = case["p"]
    return fbgemm_linear(case["x"], sx, int(zx), case["w"], sw, int(zw), case.get("b"), sy, int(zy),
                         int16_pairs=pairs)


def test_pair_model_reproduces_fbgemm_avx2_and_exact_math_does_not(tmp_path):
    cases = _cases(0)
    torch_out = _run_torch_fbgemm(cases, tmp_path)
    total = sum(y.size for y in torch_out)
    exact_mism = sum(int((_hwsim(c, False) != y).sum()) for c, y in zip(cases, torch_out))
    pair_mism = sum(int((_hwsim(c, True) != y).sum()) for c, y in zip(cases, torch_out))
    print(f"\nfbgemm AVX2, full-range u8: {total} outputs; exact-math mismatches {exact_mism} "
          f"({100 * exact_mism / total:.1f}%), int16-pair model mismatches {pair_mism}")
    assert pair_mism == 0
    assert exact_mism > total // 10


def test_seven_bit_activations_never_saturate_so_both_models_match_fbgemm(tmp_path):
    """reduce_range: 2 * 127 * 128 < 2^15, no pair can saturate; exact math is then fbgemm's."""
    cases = _cases(1, x_max=127)
    torch_out = _run_torch_fbgemm(cases, tmp_path)
    for c, y in zip(cases, torch_out):
        np.testing.assert_array_equal(_hwsim(c, False), y)
        np.testing.assert_array_equal(_hwsim(c, True), y)


def test_hwsim_analysis_never_imports_torch():
    code = "import sys, hwsim.analysis, hwsim.engines.fbgemm_linear; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
