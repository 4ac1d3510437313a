"""hwsim.engines.pytorch against PyTorch's quantized engines themselves (qnnpack, onednn, fbgemm):
quantized::linear and quantized::conv2d, 0 mismatches over >= 10^6 outputs per engine and op,
tie-heavy scales included (s_y = s_x s_w / r with power-of-two scales and small weights, so the
engines round many exact .5 values), per-tensor and per-channel weights, with and without bias,
strided / padded / dilated / grouped / depthwise convs, full 8-bit activations.

torch runs only in subprocesses, one per engine, with one intra-op thread, ONEDNN_MAX_CPU_ISA=AVX2
and, for fbgemm, FBGEMM_ENABLE_INSTRUCTIONS=AVX2 (set before torch loads: the kernels established
here are the AVX2 ones without VNNI); hwsim.engines never imports torch.
An engine missing from torch.backends.quantized.supported_engines makes its tests skip.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.engines import EngineError, torch_quantized_conv2d, torch_quantized_linear
from hwsim.engines import _pytorch_acc as acc_mod
from hwsim.engines import _pytorch_requant as rq
from hwsim.engines.pytorch import PYTORCH_ENGINES, conv2d_outputs, linear_outputs

TIE_RATIOS = (0.5, 0.25, 0.75, 0.125, 1.5, 2.5)
MIN_OUTPUTS = 10**6
I16_MAX = (1 << 15) - 1


# ------------------------------------------------------------------------------------------
# Cases

@dataclass(frozen=True)
class Case:
    """One quantized layer: codes and torch-style quantization parameters (scales as doubles)."""

    label: str
    x: np.ndarray  # uint8 (M, K) or (N, C, H, W)
    x_scale: float
    x_zp: int
    w: np.ndarray  # int8 (N, K) or (K, C/groups, R, S)
    w_scale: float | np.ndarray  # per-tensor float or per-channel float64 (K,)
    w_zp: int | np.ndarray
    bias: np.ndarray | None  # float32 (K,)
    y_scale: float
    y_zp: int
    geometry: tuple | None = None  # conv: (stride, padding, dilation, groups), each (h, w) but groups
    tie: bool = False  # tie-heavy: power-of-two scales, small weights, codes near the zero point

    def hwsim(self, engine: str, int16_pairs: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(codes, values before rounding) from hwsim.engines.pytorch."""
        common = (self.x, self.x_scale, self.x_zp, self.w, self.w_scale, self.w_zp, self.bias, self.y_scale, self.y_zp)
        if self.geometry is None:
            return linear_outputs(*common, engine=engine, int16_pairs=int16_pairs)
        return conv2d_outputs(*common, *self.geometry, engine=engine, int16_pairs=int16_pairs)


def _weight_params(rng, engine: str, tie: bool, per_channel: bool, k: int, reduction: int, zp_nonzero: bool):
    """(x_scale, w_scale, w_zp, y_scale), scales as doubles. Tie-heavy: powers of two, y_scale =
    x_scale max(w_scale) / r, so every multiplier is dyadic and acc * multiplier often ends in .5."""
    if tie:
        sx = 2.0 ** -int(rng.integers(4, 9))
        sw = 2.0 ** -rng.integers(5, 10, size=k).astype(np.float64) if per_channel else 2.0 ** -int(rng.integers(5, 10))
        sy = sx * float(np.max(sw)) / float(rng.choice(TIE_RATIOS))
    else:
        sx = float(rng.uniform(0.005, 0.05))
        sw = rng.uniform(0.002, 0.02, size=k) if per_channel else float(rng.uniform(0.002, 0.02))
        acc_std = np.sqrt(reduction) * 74.0 * 74.0  # full-range codes: ~uniform around the zero points
        sy = sx * float(np.max(sw)) * acc_std / 60.0 * float(rng.uniform(0.5, 2.0))
    wzp: int | np.ndarray = 0
    if zp_nonzero and engine != "onednn":  # onednn requires symmetric weights
        wzp = rng.integers(-3, 4, size=k) if per_channel else int(rng.integers(-3, 4))
    return sx, sw, wzp, sy


def _activations(rng, shape, tie: bool, x_max: int = 255) -> tuple[np.ndarray, int]:
    """Codes and zero point; tie-heavy codes stay within +-6 of the zero point (small accumulators)."""
    if tie:
        x_zp = int(rng.integers(8, x_max - 7))
        return (x_zp + rng.integers(-6, 7, size=shape)).astype(np.uint8), x_zp
    return rng.integers(0, x_max + 1, size=shape).astype(np.uint8), int(rng.integers(0, x_max + 1))


def _weights(rng, shape, tie: bool) -> np.ndarray:
    return (rng.integers(-2, 3, size=shape) if tie else rng.integers(-128, 128, size=shape)).astype(np.int8)


def _bias(rng, tie: bool, sx: float, sw, k: int, reduction: int) -> np.ndarray:
    """Tie-heavy: integer multiples of s_x s_w[k] (exact in float32); else ~ the accumulator spread."""
    sw_k = np.broadcast_to(np.asarray(sw, dtype=np.float64), (k,))
    if tie:
        return (rng.integers(-20, 21, size=k) * sx * sw_k).astype(np.float32)
    return (rng.standard_normal(k) * np.sqrt(reduction) * 74.0 * 74.0 * sx * sw_k).astype(np.float32)


LINEAR_SHAPES = [  # (M, K, N): K around oneDNN's GEMM K blocks (256, 768) and odd K
    (2048, 24, 96), (1024, 64, 128), (600, 257, 96), (256, 300, 128), (400, 513, 64),
    (128, 800, 96), (1024, 63, 100), (64, 1153, 64), (1500, 40, 50), (512, 128, 130),
]


def linear_cases(engine: str, seed: int) -> list[Case]:
    rng = np.random.default_rng(seed)
    cases = []
    for i, (m, kk, n) in enumerate(LINEAR_SHAPES * 2):
        tie, per_channel, with_bias = i < len(LINEAR_SHAPES), bool(i % 2), bool((i // 2) % 2)
        sx, sw, wzp, sy = _weight_params(rng, engine, tie, per_channel, n, kk, zp_nonzero=i % 3 == 0)
        x, x_zp = _activations(rng, (m, kk), tie)
        bias = _bias(rng, tie, sx, sw, n, kk) if with_bias else None
        y_zp = int(rng.integers(100, 157)) if tie else int(rng.integers(0, 256))
        label = f"linear {m}x{kk}x{n} tie={tie} per_channel={per_channel} bias={with_bias}"
        cases.append(Case(label, x, sx, x_zp, _weights(rng, (n, kk), tie), sw, wzp, bias, sy, y_zp, tie=tie))
    for per_channel in (False, True):  # multipliers ~1e6: most |values| >= 2^31, where engines differ
        sx, sw, wzp, sy = _weight_params(rng, engine, False, per_channel, 64, 96, zp_nonzero=False)
        x, x_zp = _activations(rng, (128, 96), False)
        label = f"linear overflow per_channel={per_channel}"
        cases.append(Case(label, x, sx, x_zp, _weights(rng, (64, 96), False), sw, wzp, None, sy * 1e-9, 128))
    return cases


CONV_SHAPES = [  # (N, C, H, W, K, R, S, stride, padding, dilation, groups)
    (4, 16, 32, 32, 32, 3, 3, (1, 1), (1, 1), (1, 1), 1),
    (4, 32, 32, 32, 32, 3, 3, (1, 1), (1, 1), (1, 1), 32),    # depthwise 3x3
    (2, 24, 33, 31, 48, 1, 1, (1, 1), (0, 0), (1, 1), 1),     # pointwise
    (2, 32, 35, 30, 64, 3, 3, (2, 2), (1, 0), (1, 1), 4),     # grouped, strided
    (2, 24, 30, 30, 48, 3, 3, (1, 2), (2, 2), (2, 2), 1),     # dilated
    (2, 48, 30, 30, 48, 5, 5, (2, 2), (2, 2), (1, 1), 48),    # depthwise 5x5 stride 2
    (4, 3, 64, 64, 16, 3, 3, (2, 2), (1, 1), (1, 1), 1),      # 3 input channels (odd)
    (2, 12, 30, 30, 24, 3, 3, (1, 1), (1, 1), (1, 3), 3),     # grouped 4 in / 8 out per group
    (2, 32, 20, 20, 64, 3, 3, (2, 2), (1, 1), (1, 1), 32),    # depthwise, channel multiplier 2
    (2, 10, 24, 24, 10, 3, 3, (1, 1), (1, 1), (1, 1), 2),     # grouped, 5 channels per group
    (2, 64, 16, 16, 64, 3, 3, (1, 1), (1, 1), (1, 1), 1),
    (2, 33, 18, 18, 40, 7, 7, (2, 1), (3, 3), (1, 1), 1),
]


def conv_cases(engine: str, seed: int, shapes=CONV_SHAPES, *, ties=(True, False), x_max: int = 255) -> list[Case]:
    rng = np.random.default_rng(seed)
    cases = []
    i = 0
    for tie in ties:
        for n, c, h, w_, k, r, s, stride, padding, dilation, g in shapes:
            per_channel, with_bias = bool(i % 2), bool((i // 2) % 2)
            red = r * s * (c // g)
            sx, sw, wzp, sy = _weight_params(rng, engine, tie, per_channel, k, red, zp_nonzero=i % 3 == 0)
            x, x_zp = _activations(rng, (n, c, h, w_), tie, x_max)
            bias = _bias(rng, tie, sx, sw, k, red) if with_bias else None
            y_zp = int(rng.integers(100, 157)) if tie else int(rng.integers(0, 256))
            label = (f"conv x{(n, c, h, w_)} w{(k, c // g, r, s)} stride={stride} pad={padding} dil={dilation} "
                     f"groups={g} tie={tie} per_channel={per_channel} bias={with_bias} x_max={x_max}")
            cases.append(Case(label, x, sx, x_zp, _weights(rng, (k, c // g, r, s), tie), sw, wzp, bias, sy, y_zp,
                              (stride, padding, dilation, g), tie))
            i += 1
    return cases


DEPTHWISE_SHAPES = [  # fbgemm's depthwise kernels: 3x3 and 5x5, stride 1 and 2
    (2, 64, 28, 28, 64, 3, 3, (1, 1), (1, 1), (1, 1), 64),
    (2, 64, 29, 29, 64, 3, 3, (2, 2), (1, 1), (1, 1), 64),
    (1, 96, 24, 24, 96, 5, 5, (1, 1), (2, 2), (1, 1), 96),
    (1, 96, 25, 25, 96, 5, 5, (2, 2), (2, 2), (1, 1), 96),
]


def depthwise_cases(bits: int) -> list[Case]:
    return conv_cases("fbgemm", 100 + bits, DEPTHWISE_SHAPES, ties=(False,), x_max=(1 << bits) - 1)


ODD_MANTISSAS = (7 / 8, 7 / 16, 13 / 16, 15 / 16, 13 / 32, 15 / 32)  # f32(1 / f32(1 / q)) != q


def chain_cases(engine: str, seed: int, op: str) -> list[Case]:
    """Scales on which plausible float32 operation orders round differently and one order meets
    exact .5 values, so the order of each engine is pinned (an alternative order mismatched
    hundreds to tens of thousands of these outputs when it was established):
    qnnpack/fbgemm: random doubles, s_y = f32(f32(s_x) f32(s_w)) / r (scales rounded to float32
    before multiplying, not their double product); onednn: odd-mantissa weight scales (a reciprocal
    round trip for linear, none for conv) or y_scale = s_x s_w / q (the dst multiplier's round trip)."""
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(4):
        per_channel, with_bias = bool(i % 2), i >= 2
        k = 64
        if engine != "onednn":
            sx = float(rng.uniform(0.001, 0.1))
            sw = rng.uniform(0.001, 0.05, size=k) if per_channel else float(rng.uniform(0.001, 0.05))
            sy = float(np.float32(np.float32(sx) * np.float32(np.max(sw)))) / float(rng.choice(TIE_RATIOS))
            spread = 127
        else:
            sx = 2.0 ** -int(rng.integers(4, 9))
            if i < 2:  # odd weight mantissas, dyadic dst multiplier
                sw = (rng.choice(ODD_MANTISSAS, size=k) if per_channel else float(rng.choice(ODD_MANTISSAS))) * 2.0 ** -6
                r = float(rng.choice((0.5, 0.25, 0.125)))
            else:  # power-of-two weights, odd-mantissa dst multiplier
                sw = np.full(k, 2.0 ** -6) if per_channel else 2.0 ** -6
                r = float(rng.choice(ODD_MANTISSAS))
            sy = sx * 2.0 ** -6 / r
            spread = 20
        x_zp = int(rng.integers(spread, 256 - spread)) if spread < 127 else int(rng.integers(0, 256))
        y_zp = int(rng.integers(100, 157))
        shape, w_shape = ((1000, 8), (k, 8)) if op == "linear" else ((4, 16, 20, 20), (k, 16, 3, 3))
        x = np.clip(x_zp + rng.integers(-spread, spread + 1, size=shape), 0, 255).astype(np.uint8)
        w = rng.integers(-3, 4, size=w_shape).astype(np.int8)
        bias = _bias(rng, True, sx, sw, k, 8) if with_bias else None
        geometry = None if op == "linear" else ((1, 1), (1, 1), (1, 1), 1)
        label = f"{op} scale-order case {i} per_channel={per_channel} bias={with_bias}"
        cases.append(Case(label, x, sx, x_zp, w, sw, 0, bias, sy, y_zp, geometry, tie=True))
    return cases


# ------------------------------------------------------------------------------------------
# torch, in a subprocess per engine

_TORCH_SCRIPT = textwrap.dedent("""
    import sys, warnings
    import numpy as np, torch
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    engine, src, dst = sys.argv[1:4]
    if engine not in torch.backends.quantized.supported_engines:
        np.savez(dst, unsupported=np.array(str(torch.backends.quantized.supported_engines)))
        sys.exit(0)
    torch.backends.quantized.engine = engine
    cases = np.load(src)
    out = {}
    for i in range(int(cases["count"])):
        sx, zx, sy, zy = cases[f"p{i}"]
        xq = torch._make_per_tensor_quantized_tensor(torch.from_numpy(cases[f"x{i}"]), float(sx), int(zx))
        w, sw, zw = torch.from_numpy(cases[f"w{i}"]), cases[f"sw{i}"], cases[f"zw{i}"]
        if sw.ndim == 0:
            wq = torch._make_per_tensor_quantized_tensor(w, float(sw), int(zw))
        else:
            wq = torch._make_per_channel_quantized_tensor(w, torch.from_numpy(sw), torch.from_numpy(zw), 0)
        b = torch.from_numpy(cases[f"b{i}"]) if f"b{i}" in cases else None
        if f"g{i}" in cases:
            g = cases[f"g{i}"].tolist()
            packed = torch.ops.quantized.conv2d_prepack(wq, b, g[0:2], g[2:4], g[4:6], g[6])
            y = torch.ops.quantized.conv2d(xq, packed, float(sy), int(zy))
        else:
            packed = torch.ops.quantized.linear_prepack(wq, b)
            y = torch.ops.quantized.linear(xq, packed, float(sy), int(zy))
        out[f"y{i}"] = y.int_repr().numpy()
    np.savez(dst, **out)
""")


def _run_torch(engine: str, cases: list[Case]) -> list[np.ndarray] | str:
    """torch's output codes per case, or the reason the engine is unavailable."""
    pytest.importorskip("torch", reason="torch runs the engines themselves")
    arrays = {"count": np.array(len(cases))}
    for i, c in enumerate(cases):
        sw = np.asarray(c.w_scale, dtype=np.float64)
        zw = np.asarray(c.w_zp, dtype=np.int64)
        if sw.ndim == 1:  # torch's per-channel tensors take one zero point per channel
            zw = np.broadcast_to(zw, sw.shape).copy()
        arrays.update({f"x{i}": c.x, f"w{i}": c.w, f"sw{i}": sw, f"zw{i}": zw,
                       f"p{i}": np.array([c.x_scale, c.x_zp, c.y_scale, c.y_zp], dtype=np.float64)})
        if c.bias is not None:
            arrays[f"b{i}"] = c.bias
        if c.geometry is not None:
            stride, padding, dilation, groups = c.geometry
            arrays[f"g{i}"] = np.array([*stride, *padding, *dilation, groups], dtype=np.int64)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst, script = (os.path.join(tmp, f) for f in ("cases.npz", "out.npz", "run_engine.py"))
        np.savez(src, **arrays)
        with open(script, "w") as f:
            f.write(_TORCH_SCRIPT)
        # Pin the kernels established here (AVX2 without VNNI) on CPUs that have more.
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", ONEDNN_MAX_CPU_ISA="AVX2")
        if engine == "fbgemm":
            env["FBGEMM_ENABLE_INSTRUCTIONS"] = "AVX2"
        proc = subprocess.run([sys.executable, script, engine, src, dst], env=env, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        out = np.load(dst)
        if "unsupported" in out:
            return f"engine {engine!r} is not in torch.backends.quantized.supported_engines {out['unsupported']}"
        return [out[f"y{i}"] for i in range(len(cases))]


@functools.lru_cache(maxsize=None)
def engine_run(engine: str) -> dict:
    """All cases of one engine with torch's outputs: {"linear": [...], "conv": [...], "dw7": [...],
    "dw8": [...]} of (case, torch codes), or {"skip": reason}."""
    groups = {"linear": linear_cases(engine, 1) + chain_cases(engine, 3, "linear"),
              "conv": conv_cases(engine, 2) + chain_cases(engine, 4, "conv")}
    if engine == "fbgemm":
        groups.update(dw7=depthwise_cases(7), dw8=depthwise_cases(8))
    flat = [c for cs in groups.values() for c in cs]
    outs = _run_torch(engine, flat)
    if isinstance(outs, str):
        return {"skip": outs}
    result, i = {}, 0
    for name, cs in groups.items():
        result[name] = list(zip(cs, outs[i:i + len(cs)]))
        i += len(cs)
    return result


def _engine_cases(engine: str, group: str) -> list[tuple[Case, np.ndarray]]:
    run = engine_run(engine)
    if "skip" in run:
        pytest.skip(run["skip"])
    return run[group]


def _first_mismatch(case: Case, got: np.ndarray, want: np.ndarray) -> str:
    bad = np.argwhere(got != want)
    i = tuple(bad[0])
    return f"{case.label}: {len(bad)} of {want.size} differ; first at {i}: hwsim {got[i]} vs torch {want[i]}"


# ------------------------------------------------------------------------------------------
# Bit-exactness against torch

@pytest.mark.parametrize("engine", PYTORCH_ENGINES)
@pytest.mark.parametrize("op", ["linear", "conv"])
def test_hwsim_reproduces_torch_engine(engine, op):
    total = halves = 0
    for case, want in _engine_cases(engine, op):
        got, values = case.hwsim(engine)
        assert got.dtype == want.dtype == np.uint8 and got.shape == want.shape, case.label
        assert np.array_equal(got, want), _first_mismatch(case, got, want)
        total += want.size
        halves += rq.exact_halves(engine, values, case.y_zp)
    print(f"\n{engine} {op}: {total} outputs, 0 mismatches, {halves} exact .5 cases")
    assert total >= MIN_OUTPUTS
    assert halves >= 10_000  # round half to even decides thousands of outputs


@pytest.mark.parametrize("engine", ["fbgemm", "onednn"])
@pytest.mark.parametrize("op", ["linear", "conv"])
def test_exact_int32_math_mismatches_where_the_engine_saturates_int16_pairs(engine, op):
    """The pair model is not vacuous: on full-range u8 codes, exact accumulation differs from torch."""
    total = exact_mism = 0
    for case, want in _engine_cases(engine, op):
        if case.tie:
            continue
        exact, _ = case.hwsim(engine, int16_pairs=False)
        exact_mism += int(np.count_nonzero(exact != want))
        total += want.size
    print(f"\n{engine} {op}, exact int32 accumulation: {exact_mism} of {total} full-range outputs differ")
    assert exact_mism > total // 100


def test_onednn_linear_pairs_restart_at_gemm_k_blocks():
    """For 256 < K, pairing all of K from 0 (fbgemm's layout) mismatches oneDNN's GEMM."""
    mism = total = 0
    for case, want in _engine_cases("onednn", "linear"):
        kk = case.x.shape[1]
        if case.tie or all(k0 % 2 == 0 for k0, _ in acc_mod.onednn_gemm_k_blocks(kk)):
            continue
        wzp = np.broadcast_to(np.asarray(case.w_zp, dtype=np.int64), (case.w.shape[0],))
        acc = acc_mod.linear_accumulators(case.x, case.x_zp, case.w, wzp, "natural")
        sw = np.broadcast_to(np.asarray(case.w_scale, dtype=np.float64), (case.w.shape[0],))
        codes, _ = rq.onednn(acc, case.bias, case.x_scale, sw, np.ndim(case.w_scale) == 1, case.y_scale,
                             case.y_zp, 1, "linear")
        mism += int(np.count_nonzero(codes != want))
        total += want.size
    print(f"\nonednn linear, K pairs without the GEMM's K blocks: {mism} of {total} outputs differ")
    assert total > 0 and mism > total // 100


def test_fbgemm_depthwise_seven_bit_activations_match_exact_and_pair_models():
    """reduce_range: 2 * 127 * 128 < 2^15, no pair saturates; exact math is then fbgemm's."""
    total = 0
    for case, want in _engine_cases("fbgemm", "dw7"):
        assert case.x.max() <= 127
        for pairs in (True, False):
            got, _ = case.hwsim("fbgemm", int16_pairs=pairs)
            assert np.array_equal(got, want), _first_mismatch(case, got, want)
        total += want.size
    print(f"\nfbgemm depthwise, 7-bit activations: {total} outputs, 0 mismatches (pairs or exact)")


def test_fbgemm_depthwise_eight_bit_activations_need_tap_pairs():
    """fbgemm's 8-bit depthwise convs: its depthwise kernels saturate adjacent taps in int16;
    with that modelled, 8-bit depthwise is exact too; exact int32 math is what differs."""
    total = exact_mism = 0
    for case, want in _engine_cases("fbgemm", "dw8"):
        got, _ = case.hwsim("fbgemm")
        assert np.array_equal(got, want), _first_mismatch(case, got, want)
        exact, _ = case.hwsim("fbgemm", int16_pairs=False)
        exact_mism += int(np.count_nonzero(exact != want))
        total += want.size
    print(f"\nfbgemm depthwise, 8-bit activations: {total} outputs; tap-pair model 0 mismatches, "
          f"exact int32 math {exact_mism} mismatches ({100 * exact_mism / total:.1f}%)")
    assert exact_mism > total // 100


# ------------------------------------------------------------------------------------------
# Properties of the model, against slow definitions (no torch)

def _sat16(v: int) -> int:
    return min(max(v, -(1 << 15)), I16_MAX)


def _conv_reference(x, x_zp, w, w_zp, stride, padding, dilation, groups, pairing) -> np.ndarray:
    """Python ints: exact conv sums plus the pair excess of ``pairing`` for every output, from the
    reduction order as a list of (x code or None for padding, w code) per output."""
    n_n, c_n, h_n, w_n = x.shape
    k_n, c_g, r_n, s_n = w.shape
    oh = (h_n + 2 * padding[0] - dilation[0] * (r_n - 1) - 1) // stride[0] + 1
    ow = (w_n + 2 * padding[1] - dilation[1] * (s_n - 1) - 1) // stride[1] + 1
    out = np.zeros((n_n, k_n, oh, ow), dtype=np.int64)
    k_g = k_n // groups
    for n, k, i, j in np.ndindex(n_n, k_n, oh, ow):
        g = k // k_g
        taps = []
        for r in range(r_n):
            for s in range(s_n):
                ih, iw = i * stride[0] - padding[0] + r * dilation[0], j * stride[1] - padding[1] + s * dilation[1]
                inside = 0 <= ih < h_n and 0 <= iw < w_n
                taps.append([(int(x[n, g * c_g + c, ih, iw]) if inside else None, int(w[k, c, r, s]))
                             for c in range(c_g)])
        exact = sum(((xv if xv is not None else x_zp) - x_zp) * (wv - int(w_zp[k])) for tap in taps for xv, wv in tap)
        if pairing == "fbgemm":  # one flat (r, s, c) list, padding holds the code x_zp
            seqs = [[(x_zp if xv is None else xv, wv) for tap in taps for xv, wv in tap]]
        elif pairing == "onednn":  # pairs inside a tap, padded taps skipped, odd channel count padded by 0
            seqs = [tap + [(0, 0)] * (len(tap) % 2) for tap in taps if tap[0][0] is not None]
        else:
            seqs = []
        excess = 0
        for seq in seqs:
            seq = seq + [(0, 0)] * (len(seq) % 2)
            for t in range(0, len(seq), 2):
                p = seq[t][0] * seq[t][1] + seq[t + 1][0] * seq[t + 1][1]
                excess += _sat16(p) - p
        out[n, k, i, j] = exact + excess
    return out


@settings(max_examples=30)
@given(c_g=st.integers(1, 5), k_g=st.integers(1, 3), groups=st.integers(1, 2), r=st.integers(1, 3),
       stride=st.integers(1, 2), pad=st.integers(0, 2), dil=st.integers(1, 2), x_zp=st.integers(0, 255),
       pairing=st.sampled_from(acc_mod.PAIRINGS_CONV), seed=st.integers(0, 2**31))
def test_conv_accumulators_match_the_python_definition(c_g, k_g, groups, r, stride, pad, dil, x_zp, pairing, seed):
    rng = np.random.default_rng(seed)
    size = (r - 1) * dil + 1 + int(rng.integers(0, 3))
    x = rng.choice([0, 1, 127, 200, 254, 255], size=(1, c_g * groups, size, size)).astype(np.uint8)
    w = rng.choice([-128, -127, -1, 0, 1, 126, 127], size=(k_g * groups, c_g, r, r)).astype(np.int8)
    w_zp = rng.integers(-3, 4, size=k_g * groups).astype(np.int64)
    geom = ((stride, stride), (pad, pad), (dil, dil))
    oh = (size + 2 * pad - dil * (r - 1) - 1) // stride + 1
    got = acc_mod.conv_accumulators(x, x_zp, w, w_zp, *geom, groups, (oh, oh), pairing)
    np.testing.assert_array_equal(got, _conv_reference(x, x_zp, w, w_zp, *geom, groups, pairing))


def _linear_reference(x, x_zp, w, w_zp, blocks) -> np.ndarray:
    """Python ints: exact sums plus int16 pair excess, pairs restarting at every [k0, k1) block."""
    out = np.zeros((x.shape[0], w.shape[0]), dtype=np.int64)
    for m, n in np.ndindex(*out.shape):
        xs, ws = [int(v) for v in x[m]], [int(v) for v in w[n]]
        total = sum((a - x_zp) * (b - int(w_zp[n])) for a, b in zip(xs, ws))
        for k0, k1 in blocks:
            for t in range(k0, k1, 2):
                p = xs[t] * ws[t] + (xs[t + 1] * ws[t + 1] if t + 1 < k1 else 0)
                total += _sat16(p) - p
        out[m, n] = total
    return out


@settings(max_examples=25)
@given(m=st.integers(1, 3), n=st.integers(1, 3), kk=st.sampled_from([1, 2, 7, 255, 256, 257, 258, 767, 768, 1001]),
       x_zp=st.integers(0, 255), pairing=st.sampled_from(acc_mod.PAIRINGS_LINEAR), seed=st.integers(0, 2**31))
def test_linear_accumulators_match_the_python_definition(m, n, kk, x_zp, pairing, seed):
    rng = np.random.default_rng(seed)
    x = rng.choice([0, 128, 254, 255], size=(m, kk)).astype(np.uint8)
    w = rng.choice([-128, -1, 0, 1, 127], size=(n, kk)).astype(np.int8)
    w_zp = rng.integers(-3, 4, size=n).astype(np.int64)
    blocks = {"none": [], "natural": [(0, kk)], "onednn_gemm": acc_mod.onednn_gemm_k_blocks(kk)}[pairing]
    got = acc_mod.linear_accumulators(x, x_zp, w, w_zp, pairing)
    np.testing.assert_array_equal(got, _linear_reference(x, x_zp, w, w_zp, blocks))


@pytest.mark.parametrize("k, starts", [(1, [0]), (256, [0]), (257, [0, 129]), (258, [0, 129]), (767, [0, 384]),
                                        (768, [0, 384]), (1000, [0, 384, 768])])
def test_onednn_gemm_k_blocks_cover_k_as_the_driver_blocks_it(k, starts):
    blocks = acc_mod.onednn_gemm_k_blocks(k)
    assert [b[0] for b in blocks] == starts
    assert blocks[-1][1] == k and all(b[1] == nb[0] for b, nb in zip(blocks, blocks[1:]))


@settings(max_examples=25)
@given(engine=st.sampled_from(PYTORCH_ENGINES), per_channel=st.booleans(), with_bias=st.booleans(),
       seed=st.integers(0, 2**31))
def test_seven_bit_activations_make_pair_saturation_irrelevant(engine, per_channel, with_bias, seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 9))
    x = rng.integers(0, 128, size=(2, 4, 6, 6)).astype(np.uint8)
    w = rng.integers(-128, 128, size=(k, 4, 3, 3)).astype(np.int8)
    sw = rng.uniform(0.001, 0.02, size=k) if per_channel else 0.01
    bias = rng.standard_normal(k).astype(np.float32) if with_bias else None
    args = (x, 0.02, int(rng.integers(0, 128)), w, sw, 0, bias, 0.7, int(rng.integers(0, 256)), 1, 1, 1, 1)
    with_pairs = torch_quantized_conv2d(*args, engine=engine)
    np.testing.assert_array_equal(with_pairs, torch_quantized_conv2d(*args, engine=engine, int16_pairs=False))
    xl = x.reshape(-1, 36)[:, :36]
    wl = rng.integers(-128, 128, size=(k, 36)).astype(np.int8)
    largs = (xl, 0.02, 3, wl, sw, 0, bias, 0.7, 9)
    np.testing.assert_array_equal(torch_quantized_linear(*largs, engine=engine),
                                  torch_quantized_linear(*largs, engine=engine, int16_pairs=False))


@settings(max_examples=25)
@given(engine=st.sampled_from(["qnnpack", "fbgemm"]), per_channel=st.booleans(), with_bias=st.booleans(),
       seed=st.integers(0, 2**31))
def test_pointwise_conv_is_linear_over_pixels(engine, per_channel, with_bias, seed):
    """qnnpack and fbgemm run a 1x1 conv as the GEMM of their linear, pixels as rows."""
    rng = np.random.default_rng(seed)
    c, k = int(rng.integers(1, 40)), int(rng.integers(1, 9))
    x = rng.integers(0, 256, size=(2, c, 3, 5)).astype(np.uint8)
    w = rng.integers(-128, 128, size=(k, c, 1, 1)).astype(np.int8)
    sw = rng.uniform(0.001, 0.02, size=k) if per_channel else 0.01
    w_zp = rng.integers(-3, 4, size=k) if per_channel else 2
    bias = (rng.standard_normal(k) * 3).astype(np.float32) if with_bias else None
    common = (0.03, int(rng.integers(0, 256)))
    conv = torch_quantized_conv2d(x, *common, w, sw, w_zp, bias, 0.9, 77, engine=engine)
    lin = torch_quantized_linear(x.transpose(0, 2, 3, 1).reshape(-1, c), *common, w[:, :, 0, 0], sw, w_zp, bias,
                                 0.9, 77, engine=engine)
    np.testing.assert_array_equal(conv, lin.reshape(2, 3, 5, k).transpose(0, 3, 1, 2))


def test_qnnpack_and_fbgemm_turn_overflowing_values_into_code_zero_onednn_clamps():
    """cvtps2dq gives INT32_MIN for |v| >= 2^31: code 0 even for huge positive values."""
    x = np.full((1, 16), 200, dtype=np.uint8)
    w = np.full((2, 16), 5, dtype=np.int8)
    w[1] = -5
    for engine, want in (("qnnpack", [0, 0]), ("fbgemm", [0, 0]), ("onednn", [255, 0])):
        got = torch_quantized_linear(x, 1.0, 0, w, 1.0, 0, None, 1e-6, 7, engine=engine)
        assert got.tolist() == [want], engine
        assert torch_quantized_linear(x, 1.0, 0, w, 1.0, 0, None, 1.0, 7, engine=engine).tolist() == [[255, 0]]


# ------------------------------------------------------------------------------------------
# Errors

def _linear_args(**over):
    a = dict(x=np.zeros((2, 4), np.uint8), x_scale=0.1, x_zp=0, w=np.zeros((3, 4), np.int8), w_scale=0.1, w_zp=0,
             bias_f32=None, y_scale=0.1, y_zp=0)
    a.update(over)
    return a


@pytest.mark.parametrize("over, match", [
    (dict(engine="x86"), "'engine' must be one of"),
    (dict(x=np.zeros((2, 4), np.int8)), "'x' must be a numpy uint8"),
    (dict(x=np.zeros(4, np.uint8)), "'x' must have at least 2 dimensions"),
    (dict(w=np.zeros((3, 4), np.uint8)), "'w' must be a numpy int8"),
    (dict(w=np.zeros((3, 5), np.int8)), "'x' has K=4 input features but 'w' has 5"),
    (dict(x_scale=0.0), "'x_scale' must be one positive finite number"),
    (dict(y_scale=np.inf), "'y_scale' must be one positive finite number"),
    (dict(x_zp=256), r"'x_zp' must be one integer in \[0, 255\]"),
    (dict(y_zp=-1), r"'y_zp' must be one integer in \[0, 255\]"),
    (dict(w_zp=128), r"'w_zp' must be one integer in \[-128, 127\]"),
    (dict(w_scale=np.ones(2)), "per-channel 'w_scale' must be a 1-D float array of 3 entries"),
    (dict(w_zp=np.zeros(3, np.int64)), "'w_zp' must be one integer when 'w_scale' is per-tensor"),
    (dict(w_scale=np.ones(3), w_zp=np.zeros(2, np.int64)), "per-channel 'w_zp' must be a 1-D integer array of 3"),
    (dict(bias_f32=np.zeros(2, np.float32)), r"'bias_f32' must be None or a float array of shape \(3,\)"),
    (dict(bias_f32=np.zeros(3, np.int32)), "'bias_f32' must be None or a float array"),
    (dict(w_zp=1, engine="onednn"), "engine 'onednn' supports only symmetric weights"),
    (dict(y_scale=1e38, engine="qnnpack"), "engine 'qnnpack' needs a normal positive float32 requantization"),
])
def test_linear_rejects_bad_operands_naming_the_argument(over, match):
    engine = over.pop("engine", "fbgemm")
    with pytest.raises(EngineError, match=match):
        torch_quantized_linear(**_linear_args(**over), engine=engine)


@pytest.mark.parametrize("over, match", [
    (dict(x=np.zeros((1, 4, 5), np.uint8)), "'x' must have 4 dimensions"),
    (dict(groups=3), r"groups=3 needs x with 6 channels"),
    (dict(groups=0), "'groups' must be an int >= 1"),
    (dict(stride=0), "'stride' entries must be >= 1"),
    (dict(padding=(1, -1)), "'padding' entries must be >= 0"),
    (dict(dilation=(1, 2, 3)), "'dilation' must be an int or a pair of ints"),
    (dict(w=np.zeros((4, 2, 9, 3), np.int8)), "does not fit input"),
])
def test_conv_rejects_bad_operands_naming_the_argument(over, match):
    a = dict(x=np.zeros((1, 4, 5, 5), np.uint8), x_scale=0.1, x_zp=0, w=np.zeros((4, 2, 3, 3), np.int8),
             w_scale=0.1, w_zp=0, bias_f32=None, y_scale=0.1, y_zp=0, stride=1, padding=0, dilation=1, groups=2)
    a.update(over)
    with pytest.raises(EngineError, match=match):
        torch_quantized_conv2d(**a, engine="qnnpack")


def test_hwsim_engines_pytorch_never_imports_torch():
    code = "import sys, hwsim.engines.pytorch; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
