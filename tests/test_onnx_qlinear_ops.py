"""ONNX Runtime's float32 QLinear ops imported bit for bit: QLinearSigmoid, QLinearLeakyRelu,
QLinearConcat, QLinearMul, QLinearAdd (broadcast, constant operand), QLinearSoftmax,
QLinearAveragePool, in QOperator form and (fused by ONNX Runtime) in QDQ form, u8 and s8.

How each op is checked: a one-op model with constant scales (as quantize_static writes them) is
imported; its node runs (`execute_node`) on arbitrary codes and is compared with ONNX Runtime
running the same op on the same codes. Scales are tie-heavy: about half the cases use
power-of-two ratios, so that many outputs land exactly on a .5 rounding boundary before
rounding (the tests count them and print the figures). Table ops are also checked on thousands
of scale sets against ORT with scales fed at run time (the same table code in ORT). The fast
kernels equal their scalar references. Nearest Resize on codes is checked for every coordinate
transformation and nearest mode. Last, a small CNN with a squeeze-excite block, a concat, a
LeakyReLU, an average pool, a nearest upsample and a softmax, exported with symbolic N, H, W and
quantized by ``quantize_static`` (after ``quant_pre_process``) in QOperator (u8, s8) and QDQ
(u8) forms, verifies end to end with 0 mismatches (H and W resolved from the inputs).

Default run: about 20 s on an idle machine; the ``slow`` variants sweep 4-10x more scale sets.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnx", reason="onnx is in the 'onnx' extra; install hwsim[test]")
pytest.importorskip("onnxruntime", reason="onnxruntime is in the 'onnx' extra; install hwsim[test]")

import onnxruntime as ort  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from hwsim import execute  # noqa: E402
from hwsim.executor import execute_node  # noqa: E402
from hwsim.kernels import activation_table  # noqa: E402
from hwsim.kernels.fma import fma_f32  # noqa: E402
from hwsim.kernels.mlas_float import dequantize_f32, leaky_relu_f32, logistic_f32  # noqa: E402
from hwsim.onnx import load_onnx_program, quantize_input, verify_onnx  # noqa: E402
from hwsim.workloads.program import uncosted_ops  # noqa: E402
from tests._onnx_helpers import MS, elem as _elem, model_bytes  # noqa: E402
from tests._onnx_helpers import quantize_forms, session as _session  # noqa: E402

F32 = np.float32
DTYPES = [np.uint8, np.int8]


# ------------------------------------------------------------------------------------------------
# Models and sessions


def _model(nodes, inputs, output: str, out_dtype, inits: dict) -> bytes:
    return model_bytes(nodes, inputs, [helper.make_tensor_value_info(output, _elem(out_dtype), None)],
                       inits)



class OneOp:
    """One QLinear op in two models: `importable` (float input x -> QuantizeLinear -> "a"
    [-> QLinearGlobalAveragePool -> "g"] -> op -> "y" -> DequantizeLinear), imported by hwsim,
    and `codes` (the op on integer graph inputs), run by ORT. ``slots`` lists the op's inputs:
    ("act", i) for activation operand i, anything else a constant."""

    def __init__(self, op: str, slots: list, dtype, act_shapes: list, out_q: tuple,
                 gap: bool = False, domain: str = MS, **attrs) -> None:
        self.dtype, self.act_shapes = np.dtype(dtype), act_shapes
        consts, imp_ins, code_ins = {}, [], []
        for k, slot in enumerate(slots):
            if isinstance(slot, tuple) and slot and slot[0] == "act":
                imp_ins.append("g" if gap and slot[1] == 1 else "a")
                code_ins.append(f"in{slot[1]}")
            else:
                consts[f"c{k}"] = slot
                imp_ins.append(f"c{k}")
                code_ins.append(f"c{k}")
        ys, yz = out_q
        consts.update(ys=F32(ys), yz=np.asarray(yz, dtype), xs=F32(0.05), xz=np.asarray(0, dtype))
        imp_nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["a"])]
        if gap:
            imp_nodes.append(helper.make_node("QLinearGlobalAveragePool",
                                              ["a", "xs", "xz", "xs", "xz"], ["g"], domain=MS))
        imp_nodes += [helper.make_node(op, imp_ins, ["y"], domain=domain, **attrs),
                      helper.make_node("DequantizeLinear", ["y", "ys", "yz"], ["out"])]
        x_shape = ["N"] + list(act_shapes[0][1:])
        self.importable = _model(imp_nodes, [helper.make_tensor_value_info(
            "x", TensorProto.FLOAT, x_shape)], "out", np.float32, consts)
        code_inputs = [helper.make_tensor_value_info(f"in{i}", _elem(dtype), list(s))
                       for i, s in enumerate(act_shapes)]
        self.codes_model = _model([helper.make_node(op, code_ins, ["y"], domain=domain, **attrs)],
                                  code_inputs, "y", dtype, consts)

    def node(self):
        program = load_onnx_program(self.importable)
        return program.node("y")

    def compare(self, codes: list[np.ndarray]):
        """(hwsim's codes, ORT's codes) of the op on ``codes`` (one array per operand)."""
        ours, _ = execute_node(self.node(), codes)
        theirs = _session(self.codes_model).run(None, {f"in{i}": c for i, c in enumerate(codes)})[0]
        return ours, theirs

    def reference_equals_fast(self, codes: list[np.ndarray]) -> bool:
        """The node's int64/float32 reference gives the fast path's codes."""
        node = self.node()
        fast, _ = execute_node(node, codes)
        return np.array_equal(execute_node(node, codes, backend="reference")[0], fast)


def _codes(rng, dtype, shape) -> np.ndarray:
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, size=shape).astype(dtype)


def _zp(rng, dtype) -> int:
    info = np.iinfo(dtype)
    return int(rng.integers(info.min, info.max + 1))


def _ties(v: np.ndarray, lo: float, hi: float, within: float = 0.0) -> int:
    """How many values lie halfway between two integers inside [lo, hi] (exactly, or within
    ``within`` of it)."""
    v = np.asarray(v, dtype=np.float64)
    return int(np.count_nonzero((np.abs(v - np.floor(v) - 0.5) <= within) & (v > lo) & (v < hi)))


class Tally:
    def __init__(self, what: str, near: str | None = "exactly on") -> None:
        self.what, self.near, self.outputs, self.mismatches, self.ties = what, near, 0, 0, 0

    def add(self, ours, theirs, ties: int = 0) -> None:
        assert ours.shape == theirs.shape
        self.outputs += ours.size
        self.mismatches += int(np.count_nonzero(ours.astype(np.int64) != theirs.astype(np.int64)))
        self.ties += ties

    def report(self, min_outputs: int, min_tie_share: float = 0.0) -> None:
        share = f"{100 * self.ties / max(self.outputs, 1):.2f}%"
        ties = f"; {self.ties} ({share}) {self.near} a .5 rounding boundary" if self.near else ""
        print(f"\n{self.what}: {self.outputs} outputs compared with ONNX Runtime, "
              f"{self.mismatches} mismatches{ties}")
        assert self.mismatches == 0
        assert self.outputs >= min_outputs
        assert self.ties >= min_tie_share * self.outputs


# ------------------------------------------------------------------------------------------------
# Fast kernels equal their scalar references (no ONNX Runtime needed)

@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2 ** 31), signed=st.booleans(),
       shapes=st.sampled_from([((3, 5), (3, 5)), ((2, 3, 4), (3, 1)), ((2, 3, 1), (2, 1, 4)),
                               ((4,), ()), ((), (2, 4)), ((1, 3, 1, 1), (2, 3, 2, 2))]))
def test_eltwise_kernels_equal_their_references(seed, signed, shapes):
    from hwsim import kernels as k

    rng = np.random.default_rng(seed)
    dtype = np.int8 if signed else np.uint8
    info = np.iinfo(dtype)
    a, b = (_codes(rng, dtype, s) for s in shapes)
    za, zb, zc = (_zp(rng, dtype) for _ in range(3))
    ra, rb = (F32(rng.choice([rng.uniform(0.01, 3.0), 0.5, 2.0 ** -3])) for _ in range(2))
    lo, hi = int(info.min), int(info.max)
    assert np.array_equal(k.qlinear_add(a, za, ra, b, zb, rb, zc, lo, hi),
                          k.qlinear_add_reference(a, za, ra, b, zb, rb, zc, lo, hi))
    assert np.array_equal(k.qlinear_mul(a, za, b, zb, ra, zc, lo, hi),
                          k.qlinear_mul_reference(a, za, b, zb, ra, zc, lo, hi))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2 ** 31), signed=st.booleans(),
       fn=st.sampled_from(["sigmoid", "leaky_relu", "identity"]))
def test_tables_equal_their_references(seed, signed, fn):
    from hwsim import kernels as k

    rng = np.random.default_rng(seed)
    dtype = np.int8 if signed else np.uint8
    info = np.iinfo(dtype)
    params = dict(x_scale=F32(rng.uniform(0.001, 0.5)), x_zero_point=_zp(rng, dtype),
                  y_scale=F32(rng.uniform(0.001, 0.5)), y_zero_point=_zp(rng, dtype),
                  qmin=int(info.min), qmax=int(info.max), alpha=F32(rng.uniform(0, 1)))
    codes = np.arange(info.min, info.max + 1)
    assert np.array_equal(k.activation_table(fn, **params),
                          k.activation_lut_reference(codes, fn, **params))


# ------------------------------------------------------------------------------------------------
# Table ops: QLinearSigmoid, QLinearLeakyRelu (256-entry tables built in float32)

def _activation_scales(rng, fn: str, case: int):
    if fn == "sigmoid":  # outputs in [0, 1]: quantize_static's 1/255 or 1/256 make 0.5 a tie
        sy = F32(rng.choice([1 / 255, 1 / 256, 2 / 255, 1 / 128, 1 / 254])) if case % 2 else \
            F32(rng.uniform(0.5, 2.0) / 255)
        sx = F32(2.0 ** -int(rng.integers(2, 7))) if case % 2 else F32(rng.uniform(0.01, 0.2))
        return sx, sy
    if case % 2:
        sx = F32(2.0 ** -int(rng.integers(2, 8)))
        return sx, F32(sx * float(rng.choice([0.5, 1.0, 2.0, 4.0])))
    return F32(rng.uniform(0.001, 0.2)), F32(rng.uniform(0.001, 0.2))


def _activation_ties(fn: str, alpha, codes, sx, zx, sy, zy, lo, hi) -> int:
    x = dequantize_f32(codes, sx, zx)
    y = logistic_f32(x) if fn == "sigmoid" else leaky_relu_f32(x, alpha)
    # a sigmoid value is (nearly) never exactly halfway: count those within 1e-3 of it
    return _ties((y / F32(sy)).astype(F32), lo - zy, hi - zy, 1e-3 if fn == "sigmoid" else 0.0)


def _near(fn: str) -> str:
    return "within 1e-3 of" if fn == "sigmoid" else "exactly on"


FNS = [("sigmoid", None, "QLinearSigmoid"), ("leaky_relu", 0.01, "QLinearLeakyRelu"),
       ("leaky_relu", 0.25, "QLinearLeakyRelu"), ("leaky_relu", 0.1, "QLinearLeakyRelu")]


def _dynamic_table_session(op: str, dtype, alpha):
    e = _elem(dtype)
    attrs = {} if alpha is None else {"alpha": alpha}
    ins = [helper.make_tensor_value_info("x", e, [256]),
           helper.make_tensor_value_info("sx", TensorProto.FLOAT, []),
           helper.make_tensor_value_info("zx", e, []),
           helper.make_tensor_value_info("sy", TensorProto.FLOAT, []),
           helper.make_tensor_value_info("zy", e, [])]
    node = helper.make_node(op, ["x", "sx", "zx", "sy", "zy"], ["y"], domain=MS, **attrs)
    return _session(_model([node], ins, "y", dtype, {}))


def _table_sets(fn, alpha, op, dtype, sets: int, seed: int) -> Tally:
    """activation_table (what the imported node looks codes up in) against ORT's table, over
    `sets` scale / zero-point sets fed at run time: 256 outputs each."""
    rng, info = np.random.default_rng(seed), np.iinfo(dtype)
    sess, codes = _dynamic_table_session(op, dtype, alpha), np.arange(info.min, info.max + 1)
    tally = Tally(f"{op} alpha={alpha} {np.dtype(dtype)} tables", _near(fn))
    for case in range(sets):
        sx, sy = _activation_scales(rng, fn, case)
        zx, zy = _zp(rng, dtype), (_zp(rng, dtype) if fn != "sigmoid" or case % 3 else int(info.min))
        theirs = sess.run(None, {"x": codes.astype(dtype), "sx": np.array(sx), "zx": np.array(zx, dtype),
                                 "sy": np.array(sy), "zy": np.array(zy, dtype)})[0]
        ours = activation_table(fn, x_scale=sx, x_zero_point=zx, y_scale=sy, y_zero_point=zy,
                                qmin=int(info.min), qmax=int(info.max),
                                alpha=0.0 if alpha is None else F32(alpha))
        tally.add(ours, theirs, _activation_ties(fn, alpha, codes, sx, zx, sy, zy, info.min, info.max))
    return tally


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fn,alpha,op", FNS)
def test_activation_tables_equal_ort(fn, alpha, op, dtype):
    """4096 scale sets x 256 codes = 1,048,576 outputs per (op, alpha, dtype)."""
    _table_sets(fn, alpha, op, dtype, 4096, seed=len(op) + int(100 * (alpha or 0))).report(
        2 ** 20, 0.001)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fn,alpha,op", FNS)
def test_activation_tables_equal_ort_many_scale_sets(fn, alpha, op, dtype):
    _table_sets(fn, alpha, op, dtype, 32768, seed=4000 + len(op)).report(2 ** 23, 0.001)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fn,alpha,op", FNS[:2])
def test_imported_activation_nodes_equal_ort(fn, alpha, op, dtype):
    """The importer's node (constant scales, as quantize_static writes them): 24 models."""
    rng, info = np.random.default_rng(7), np.iinfo(dtype)
    tally = Tally(f"imported {op} {np.dtype(dtype)}", _near(fn))
    shape = (4, 8, 16, 16)
    for case in range(24):
        sx, sy = _activation_scales(rng, fn, case)
        zx, zy = _zp(rng, dtype), _zp(rng, dtype)
        attrs = {} if alpha is None else {"alpha": alpha}
        one = OneOp(op, [("act", 0), F32(sx), np.asarray(zx, dtype), F32(sy), np.asarray(zy, dtype)],
                    dtype, [shape], (sy, zy), **attrs)
        x = _codes(rng, dtype, shape)
        ours, theirs = one.compare([x])
        tally.add(ours, theirs, _activation_ties(fn, alpha, x, sx, zx, sy, zy, info.min, info.max))
        if case < 2:
            assert one.reference_equals_fast([x[:1, :2]])
    tally.report(24 * 4 * 8 * 256)


# ------------------------------------------------------------------------------------------------
# QLinearConcat: each input requantized through a float32 table (copied when parameters agree)

@pytest.mark.parametrize("dtype", DTYPES)
def test_qlinear_concat_equals_ort(dtype):
    """32 models, three inputs (one with the output's own parameters: copied)."""
    rng, info = np.random.default_rng(11), np.iinfo(dtype)
    tally = Tally(f"QLinearConcat {np.dtype(dtype)}")
    shapes = [(2, 8, 32, 32), (2, 4, 32, 32), (2, 4, 32, 32)]
    for case in range(32):
        sy = F32(2.0 ** -int(rng.integers(3, 7))) if case % 2 else F32(rng.uniform(0.01, 0.2))
        zy = _zp(rng, dtype)
        params = [(F32(sy * float(rng.choice([0.5, 1.5, 2.5, 3.0]))) if case % 2
                   else F32(rng.uniform(0.01, 0.2)), _zp(rng, dtype)) for _ in range(2)]
        params.append((sy, zy))
        slots = [F32(sy), np.asarray(zy, dtype)]
        for i, (s, z) in enumerate(params):
            slots += [("act", i), F32(s), np.asarray(z, dtype)]
        one = OneOp("QLinearConcat", slots, dtype, shapes, (sy, zy), axis=1)
        xs = [_codes(rng, dtype, s) for s in shapes]
        ours, theirs = one.compare(xs)
        ties = sum(_ties((dequantize_f32(x, s, z) / sy).astype(F32), info.min - zy, info.max - zy)
                   for x, (s, z) in zip(xs[:2], params))
        tally.add(ours, theirs, ties)
        if case < 2:
            small = [x[:1, :, :2] for x in xs]
            assert one.reference_equals_fast(small)
    tally.report(10 ** 6, 0.01)


# ------------------------------------------------------------------------------------------------
# QLinearMul, QLinearAdd: same shapes, broadcast activations, constant operands

def _binary_params(rng, dtype, case: int, op: str):
    if case % 2:  # power-of-two ratios: many exact ties
        sa, sb = (F32(2.0 ** -int(rng.integers(2, 6))) for _ in range(2))
        k = float(rng.choice([16, 32, 64, 128])) if op == "QLinearMul" else float(rng.choice([0.5, 1, 2]))
        sc = F32(sa * sb * k) if op == "QLinearMul" else F32(max(sa, sb) * k)
    else:
        sa, sb = F32(rng.uniform(0.005, 0.3)), F32(rng.uniform(0.005, 0.3))
        sc = F32(sa * sb * rng.uniform(10, 200)) if op == "QLinearMul" else F32(rng.uniform(0.01, 0.3))
    return (sa, _zp(rng, dtype)), (sb, _zp(rng, dtype)), (sc, _zp(rng, dtype))


def _binary_ties(op, a, b, pa, pb, pc, lo, hi) -> int:
    (sa, za), (sb, zb), (sc, zc) = pa, pb, pc
    a, b = np.asarray(a).astype(np.int64), np.asarray(b).astype(np.int64)
    if op == "QLinearMul":
        r = F32(F32(sa * sb) / sc)
        v = (((a - za) * (b - zb)).astype(F32) * r).astype(F32) + F32(zc)
    else:  # the vector path is enough to count ties
        ra, rb = F32(sa / sc), F32(sb / sc)
        fixed = F32(F32(zc) - fma_f32(ra, F32(za), F32(rb * F32(zb))))
        v = fma_f32(a.astype(F32), ra, fma_f32(b.astype(F32), rb, fixed))
    return _ties(v, lo, hi)


BINARY_LAYOUTS = {  # name: (activation shapes, constant operand position or None, gap)
    "same-shape": ([(1, 4, 256, 256), (1, 4, 256, 256)], None, False),
    "b-broadcast (SE)": ([(4, 32, 64, 64), (4, 32, 1, 1)], None, True),
    "const-scalar-b": ([(2, 16, 64, 64)], 1, False),
    "const-scalar-a": ([(2, 16, 64, 64)], 0, False),
    "const-channel-b": ([(2, 16, 64, 64)], 1, False),
}


def _binary_tally(op, layout, dtype, cases: int, seed: int) -> Tally:
    shapes, const_at, gap = BINARY_LAYOUTS[layout]
    rng, info = np.random.default_rng(seed), np.iinfo(dtype)
    tally = Tally(f"{op} {layout} {np.dtype(dtype)}")
    for case in range(cases):
        pa, pb, pc = _binary_params(rng, dtype, case, op)
        operands = []
        for i in range(2):
            if const_at == i:
                shape = (1, 16, 1, 1) if layout == "const-channel-b" else ()
                operands.append(_codes(rng, dtype, shape))
            else:
                operands.append(("act", len([o for o in operands if isinstance(o, tuple)])))
        slots = []
        for o, (s, z) in zip(operands, (pa, pb)):
            slots += [o, F32(s), np.asarray(z, dtype)]
        slots += [F32(pc[0]), np.asarray(pc[1], dtype)]
        one = OneOp(op, slots, dtype, shapes, pc, gap=gap)
        acts = [_codes(rng, dtype, s) for s in shapes]
        ours, theirs = one.compare(acts)
        vals = iter(acts)
        a, b = (o if not isinstance(o, tuple) else next(vals) for o in operands)
        tally.add(ours, theirs, _binary_ties(op, a, b, pa, pb, pc, info.min, info.max))
        if case < 2:
            assert one.reference_equals_fast([x[:1, :, :2] for x in acts])
    return tally


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", ["QLinearMul", "QLinearAdd"])
@pytest.mark.parametrize("layout", list(BINARY_LAYOUTS))
def test_qlinear_binary_equals_ort(op, layout, dtype):
    cases = 8 if BINARY_LAYOUTS[layout][1] is None else 16
    _binary_tally(op, layout, dtype, cases, seed=len(layout) + len(op)).report(10 ** 6, 0.001)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", ["QLinearMul", "QLinearAdd"])
@pytest.mark.parametrize("layout", list(BINARY_LAYOUTS))
def test_qlinear_binary_equals_ort_many_scale_sets(op, layout, dtype):
    _binary_tally(op, layout, dtype, 64, seed=1000 + len(layout)).report(8 * 10 ** 6, 0.001)


# Scale sets where QLinearAdd's result depends on which operand the kernel takes first (found
# by a random search over scales and zero points: about one set in a thousand).
SWAP_CASES = {np.uint8: (0.01797882281243801, 123, 0.03623077645897865, 203, 0.007423024158924818,
                         79, 97),
              np.int8: (0.1676907241344452, -13, 0.08406467735767365, -44, 0.29860684275627136,
                        -25, 4)}


@pytest.mark.parametrize("dtype", DTYPES)
def test_qlinear_add_constant_first_takes_ort_swapped_path(dtype):
    """QLinearAdd(constant scalar A, activation B): ORT passes (B, A) to its kernel, which
    changes the order of the fused multiply-adds. On a scale set where that order decides an
    output, hwsim follows ORT, i.e. the swapped order."""
    info = np.iinfo(dtype)
    sa, za, sb, zb, sc, zc, a = SWAP_CASES[dtype]
    b = np.arange(info.min, info.max + 1).astype(dtype).reshape(1, 256)
    one = OneOp("QLinearAdd", [np.asarray(a, dtype), F32(sa), np.asarray(za, dtype), ("act", 0),
                               F32(sb), np.asarray(zb, dtype), F32(sc), np.asarray(zc, dtype)],
                dtype, [(1, 256)], (sc, zc))
    ours, theirs = one.compare([b])
    assert np.array_equal(ours, theirs)
    swapped = _unswapped_add(b, a, sb, zb, sa, za, sc, zc, info)
    assert np.array_equal(ours, swapped)
    assert not np.array_equal(ours, _unswapped_add(a, b, sa, za, sb, zb, sc, zc, info))


def _unswapped_add(a, b, sa, za, sb, zb, sc, zc, info):
    """QLinearAdd's vector formula with a as the kernel's first operand."""
    ra, rb = F32(F32(sa) / F32(sc)), F32(F32(sb) / F32(sc))
    fixed = F32(F32(zc) - fma_f32(ra, F32(za), F32(rb * F32(zb))))
    v = fma_f32(np.asarray(a, np.int64).astype(F32), ra,
                fma_f32(np.asarray(b, np.int64).astype(F32), rb, fixed))
    return np.clip(np.rint(v), info.min, info.max).astype(np.int64)


# ------------------------------------------------------------------------------------------------
# QLinearSoftmax: float32 exp table, float32 row sums, float64 ratio

SOFTMAX_LAYOUTS = {  # name: (input shape, axis, opset)
    "rows-16": ((64, 64, 16), -1, 13),
    "rows-1000": ((8, 16, 1000), 2, 13),
    "axis1-transposed": ((16, 10, 64, 8), 1, 13),
    "opset12-flatten": ((256, 8, 4, 8), 2, 12),
    "rows-2-ties": ((64, 512, 2), -1, 13),
}


def _softmax_input(rng, dtype, shape, layout: str) -> np.ndarray:
    info = np.iinfo(dtype)
    x = _codes(rng, dtype, shape)
    if layout == "rows-2-ties":  # equal pairs: ratio exactly 0.5 of an odd floor(1/s_y) -> tie
        x[..., 1] = x[..., 0]
    else:  # rows near their max, as logits are
        x[: shape[0] // 2] = (info.max - rng.integers(0, 40, size=x[: shape[0] // 2].shape))
    return x.astype(dtype)


def _softmax_ties(x, sx, sy, zy, axis, opset, lo, hi, within: float) -> int:
    from hwsim.kernels import exp_table, inverse_scale_floor
    from hwsim.kernels.softmax_table import rows

    r, _, _ = rows(np.asarray(x).astype(np.int64), axis, opset)
    e = exp_table(sx, r.shape[1])[r - r.max(axis=1, keepdims=True) + 255]
    total = np.add.accumulate(e, axis=1, dtype=F32)[:, -1:]
    v = e.astype(np.float64) * float(inverse_scale_floor(sy)) / total.astype(np.float64)
    return _ties(v, lo - zy, hi - zy, within)


def _softmax_tally(layout, dtype, cases: int, seed: int) -> Tally:
    shape, axis, opset = SOFTMAX_LAYOUTS[layout]
    rng, info = np.random.default_rng(seed), np.iinfo(dtype)
    # exp ratios are (nearly) never exactly halfway but for equal pairs: count near ties too
    within = 0.0 if layout == "rows-2-ties" else 1e-4
    tally = Tally(f"QLinearSoftmax {layout} {np.dtype(dtype)}",
                  "within 1e-4 of" if within else "exactly on")
    for case in range(cases):
        sx = F32(2.0 ** -int(rng.integers(2, 6))) if case % 2 else F32(rng.uniform(0.01, 0.3))
        sy = F32(rng.choice([1 / 255, 1 / 256, 1 / 253, 1 / 129])) if case % 2 else \
            F32(rng.uniform(0.002, 0.01))
        zy = int(info.min) if case % 3 else _zp(rng, dtype) // 4
        zx = _zp(rng, dtype)
        one = OneOp("QLinearSoftmax", [("act", 0), F32(sx), np.asarray(zx, dtype), F32(sy),
                                       np.asarray(zy, dtype)], dtype, [shape], (sy, zy),
                    axis=axis, opset=opset)
        x = _softmax_input(rng, dtype, shape, layout)
        ours, theirs = one.compare([x])
        tally.add(ours, theirs,
                  _softmax_ties(x, sx, sy, zy, axis, opset, info.min, info.max, within))
        if case < 2:
            assert one.reference_equals_fast([x[:2]])
    return tally


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", list(SOFTMAX_LAYOUTS))
def test_qlinear_softmax_equals_ort(layout, dtype):
    _softmax_tally(layout, dtype, 16, seed=len(layout)).report(
        10 ** 6, 0.05 if layout == "rows-2-ties" else 0.0)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", list(SOFTMAX_LAYOUTS))
def test_qlinear_softmax_equals_ort_many_scale_sets(layout, dtype):
    _softmax_tally(layout, dtype, 96, seed=2000 + len(layout)).report(6 * 10 ** 6)


# ------------------------------------------------------------------------------------------------
# QLinearAveragePool: dequantize, float32 window sums, divide, requantize

POOLS = {  # name: attributes
    "2x2/2": dict(kernel_shape=[2, 2], strides=[2, 2]),
    "3x3/1 pad, exclude pad": dict(kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1]),
    "3x3/2 pad, include pad": dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                                   count_include_pad=1),
    "2x3/1 asymmetric pad": dict(kernel_shape=[2, 3], strides=[1, 2], pads=[0, 1, 1, 2]),
    "same-upper 3x3/2": dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
}


def _pool_tally(pool, dtype, cases: int, seed: int) -> Tally:
    rng = np.random.default_rng(seed)
    # a sum over 9 taps divided by 9 is rarely exactly halfway: count those within 1e-4 of it
    within = 1e-4 if POOLS[pool]["kernel_shape"] == [3, 3] else 0.0
    tally = Tally(f"QLinearAveragePool {pool} {np.dtype(dtype)}",
                  "within 1e-4 of" if within else "exactly on")
    shape = (4, 16, 64, 64)
    for case in range(cases):
        sx = F32(2.0 ** -int(rng.integers(2, 7))) if case % 2 else F32(rng.uniform(0.01, 0.2))
        # 3x3 windows: s_y = s_x k / 9 puts the average of odd sums (nearly) halfway
        ratio = float(rng.choice([2, 4])) / 9 if within else float(rng.choice([0.25, 0.5, 1.0]))
        sy = F32(sx * ratio) if case % 2 else F32(rng.uniform(0.01, 0.2))
        zx, zy = _zp(rng, dtype), _zp(rng, dtype)
        one = OneOp("QLinearAveragePool", [("act", 0), F32(sx), np.asarray(zx, dtype), F32(sy),
                                           np.asarray(zy, dtype)], dtype, [shape], (sy, zy),
                    **POOLS[pool])
        x = _codes(rng, dtype, shape)
        ours, theirs = one.compare([x])
        tally.add(ours, theirs, _pool_ties(one.node(), x, within))
        if case < 2:
            assert one.reference_equals_fast([x[:1, :2]])
    return tally


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pool", list(POOLS))
def test_qlinear_average_pool_equals_ort(pool, dtype):
    cases = 16 if POOLS[pool]["strides"] == [1, 1] else 40
    _pool_tally(pool, dtype, cases, seed=len(pool)).report(10 ** 6, 0.001)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pool", list(POOLS))
def test_qlinear_average_pool_equals_ort_many_scale_sets(pool, dtype):
    _pool_tally(pool, dtype, 160, seed=3000 + len(pool)).report(10 ** 7, 0.001)


def _pool_ties(node, x, within: float) -> int:
    """Outputs whose exact average / s_y is (within ``within`` of) halfway between two codes."""
    a, out = node.attrs, node.out
    (kh, kw), (sh, sw), (pt, pl, pb, pr) = a["kernel"], a["stride"], a["padding"]
    c = x.astype(np.int64) - a["input_zero_point"]
    n, ch, h, w = c.shape
    oh, ow = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1
    p = np.zeros((n, ch, h + pt + pb + kh, w + pl + pr + kw), dtype=np.int64)
    p[:, :, pt:pt + h, pl:pl + w] = c
    sums = sum(p[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
               for i in range(kh) for j in range(kw))
    if a["count_include_pad"]:
        count = np.full((oh, ow), kh * kw)
    else:
        rows = np.minimum(np.arange(oh) * sh - pt + kh, h) - np.maximum(np.arange(oh) * sh - pt, 0)
        cols = np.minimum(np.arange(ow) * sw - pl + kw, w) - np.maximum(np.arange(ow) * sw - pl, 0)
        count = np.outer(rows, cols)
    u = sums * float(F32(a["input_scale"])) / count / float(F32(out.scale))
    return _ties(u, out.qmin - out.zero_point, out.qmax - out.zero_point, within)


def test_full_window_average_pool_is_global_pooling():
    """ORT falls back to QLinearGlobalAveragePool's integer sum when the kernel covers the
    whole unpadded input; the importer emits that op."""
    dtype = np.uint8
    one = OneOp("QLinearAveragePool", [("act", 0), F32(0.02), np.asarray(3, dtype), F32(0.01),
                                       np.asarray(7, dtype)], dtype, [(2, 8, 7, 7)],
                (F32(0.01), 7), kernel_shape=[7, 7])
    assert one.node().op == "avgpool2d"
    x = _codes(np.random.default_rng(0), dtype, (2, 8, 7, 7))
    ours, theirs = one.compare([x])
    assert np.array_equal(ours, theirs)


# ------------------------------------------------------------------------------------------------
# Resize (nearest) on codes: a gather whose source indices must be ONNX Runtime's

RESIZES = [  # (H, W, out H, out W, by sizes)
    (8, 8, 16, 16, False), (7, 5, 13, 11, True), (9, 12, 4, 5, True), (6, 6, 15, 9, True),
    (10, 10, 30, 25, False)]


@pytest.mark.parametrize("coordinate_mode", ["half_pixel", "pytorch_half_pixel", "align_corners",
                                             "asymmetric", "tf_half_pixel_for_nn"])
@pytest.mark.parametrize("nearest_mode", ["round_prefer_floor", "round_prefer_ceil", "floor",
                                          "ceil"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_resize_nearest_equals_ort(coordinate_mode, nearest_mode, dtype):
    """(4, 192) maps of the five sizes: 1,001,472 outputs per (mode, dtype)."""
    rng = np.random.default_rng(len(coordinate_mode + nearest_mode))
    tally = Tally(f"Resize nearest {coordinate_mode} {nearest_mode} {np.dtype(dtype)}",
                  near=None)
    n, c = 4, 192
    for h, w, oh, ow, by_sizes in RESIZES:
        roi = np.array([], np.float32)
        if by_sizes:
            slots = [("act", 0), roi, np.array([], np.float32), np.array([n, c, oh, ow], np.int64)]
        else:
            slots = [("act", 0), roi, np.array([1, 1, oh / h, ow / w], np.float32)]
        one = OneOp("Resize", slots, dtype, [(n, c, h, w)], (F32(0.05), 0), domain="",
                    mode="nearest", coordinate_transformation_mode=coordinate_mode,
                    nearest_mode=nearest_mode)
        x = _codes(rng, dtype, (n, c, h, w))
        ours, theirs = one.compare([x])
        tally.add(ours, theirs)
        assert one.reference_equals_fast([x[:1, :2]])
    tally.report(10 ** 6)


# ------------------------------------------------------------------------------------------------
# The same ops in QDQ form, as ONNX Runtime fuses them

def _qdq_model(dtype, op: str, attrs: dict, second: str | None) -> bytes:
    """x -> Q -> DQ -> op -> Q -> DQ in QDQ form. The op's second operand (``second``):
    "gap" DQ of GlobalAveragePool's codes (broadcast), "const" DQ of constant codes,
    "sigmoid" DQ of a Sigmoid branch's codes (other parameters), None: no second operand."""
    info = np.iinfo(dtype)
    zx = int(info.min) + 100
    inits = {"sx": F32(0.03125), "zx": np.asarray(zx, dtype), "sy": F32(0.015625),
             "zy": np.asarray(zx + 5, dtype), "sg": F32(0.0625), "zg": np.asarray(zx, dtype),
             "sp": F32(1 / 256), "zp": np.asarray(info.min, dtype),
             "k": np.asarray(info.min + 140, dtype)}
    nodes = [helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["a"]),
             helper.make_node("DequantizeLinear", ["a", "sx", "zx"], ["da"])]
    operands = ["da"]
    if second == "gap":
        nodes += [helper.make_node("DequantizeLinear", ["a", "sx", "zx"], ["da2"]),
                  helper.make_node("GlobalAveragePool", ["da2"], ["gf"]),
                  helper.make_node("QuantizeLinear", ["gf", "sg", "zg"], ["g"]),
                  helper.make_node("DequantizeLinear", ["g", "sg", "zg"], ["dg"])]
        operands.append("dg")
    elif second == "const":
        nodes.append(helper.make_node("DequantizeLinear", ["k", "sg", "zg"], ["dk"]))
        operands.append("dk")
    elif second == "sigmoid":
        nodes += [helper.make_node("DequantizeLinear", ["a", "sx", "zx"], ["da2"]),
                  helper.make_node("Sigmoid", ["da2"], ["sf"]),
                  helper.make_node("QuantizeLinear", ["sf", "sp", "zp"], ["s"]),
                  helper.make_node("DequantizeLinear", ["s", "sp", "zp"], ["ds"])]
        operands.append("ds")
    out_s, out_z = ("sp", "zp") if op in ("Sigmoid", "Softmax") else ("sy", "zy")
    nodes += [helper.make_node(op, operands, ["f"], **attrs),
              helper.make_node("QuantizeLinear", ["f", out_s, out_z], ["y"]),
              helper.make_node("DequantizeLinear", ["y", out_s, out_z], ["out"])]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8, 12, 12])],
                  "out", np.float32, inits)


QDQ_CASES = {  # name: (op, attrs, second operand)
    "Sigmoid": ("Sigmoid", {}, None),
    "LeakyRelu": ("LeakyRelu", {"alpha": 0.25}, None),
    "Softmax": ("Softmax", {"axis": 1}, None),
    "AveragePool": ("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, None),
    "Concat": ("Concat", {"axis": 1}, "sigmoid"),
    "Mul-broadcast": ("Mul", {}, "gap"),
    "Add-broadcast": ("Add", {}, "gap"),
    "Mul-constant": ("Mul", {}, "const"),
    "Add-constant": ("Add", {}, "const"),
}
QDQ_OPS = {"Sigmoid": "activation_lut", "LeakyRelu": "activation_lut", "Softmax": "softmax_table",
           "AveragePool": "avgpool2d_f32", "Concat": "concat_lut", "Mul": "mul",
           "Add": "add_broadcast"}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(QDQ_CASES))
def test_qdq_forms_verify_against_ort(case, dtype):
    """verify_onnx (every tensor exposed) is bit exact; so is the deployed model's output where
    ORT fuses the pattern as deployed. With int8 activations ORT on x86 first rewrites int8
    Q/DQ pairs to uint8 and then leaves a Mul or Add whose operands ended up of different types
    in float (DQ -> Mul -> Q): not the QLinear kernel hwsim models, so not compared."""
    op, attrs, second = QDQ_CASES[case]
    model = _qdq_model(np.dtype(dtype), op, attrs, second)
    x = np.random.default_rng(len(case)).uniform(-3.5, 3.5, size=(16, 8, 12, 12)).astype(F32)
    check = verify_onnx(model, x)
    assert QDQ_OPS[op] in set(check.per_layer["op"])
    assert check.summary["total_mismatches"] == 0, check.per_layer.to_string()
    if dtype == np.uint8 or op not in ("Mul", "Add"):
        _assert_plain_output_matches(model, check.program, x)


def _assert_plain_output_matches(model, program, x) -> None:
    """The model as deployed (no intermediate outputs added, so ORT fuses as it would) gives
    the same final float output as hwsim's codes dequantized the way ORT does."""
    from hwsim.onnx import ort_reference_outputs

    (plain,) = ort_reference_outputs(model, x).values()
    codes = execute(program, quantize_input(program, x)).output
    out = program.output.out
    ours = (codes.astype(F32) - F32(out.zero_point)) * F32(out.scale)
    assert np.array_equal(ours, plain)


# ------------------------------------------------------------------------------------------------
# A small CNN with a squeeze-excite block, quantized by ONNX Runtime, end to end

def _se_cnn_paths(tmp_path):
    torch = pytest.importorskip("torch")
    from torch import nn

    class SECNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU())
            self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(16, 4, 1), nn.ReLU(),
                                    nn.Conv2d(4, 16, 1), nn.Sigmoid())
            self.side = nn.Conv2d(16, 8, 3, padding=1)
            self.act = nn.LeakyReLU(0.1)
            self.pool = nn.AvgPool2d(2)
            self.up = nn.Upsample(scale_factor=2, mode="nearest")
            self.head = nn.Conv2d(24, 10, 1)
            self.fc = nn.Linear(10, 10)

        def forward(self, x):
            x = self.stem(x)
            x = x * self.se(x)
            x = self.up(self.pool(self.act(torch.cat([x, self.side(x)], dim=1))))
            x = torch.flatten(nn.functional.adaptive_avg_pool2d(self.head(x), 1), 1)
            return torch.softmax(self.fc(x), dim=1)

    from onnxruntime.quantization.shape_inference import quant_pre_process

    torch.manual_seed(0)
    net = SECNN().eval()
    rng = np.random.default_rng(0)
    calib = rng.normal(size=(16, 3, 32, 32)).astype(F32)
    paths = {"float": tmp_path / "se.onnx", "pre": tmp_path / "se.pre.onnx"}
    with torch.no_grad():
        torch.onnx.export(net, torch.from_numpy(calib[:1]), str(paths["float"]), opset_version=17,
                          dynamo=False, input_names=["input"], output_names=["probs"],
                          dynamic_axes={"input": {0: "N", 2: "H", 3: "W"}, "probs": {0: "N"}})
    quant_pre_process(str(paths["float"]), str(paths["pre"]))

    paths.update(quantize_forms(paths["pre"], tmp_path / "se", calib,
                                ("qoperator-u8", "qoperator-s8", "qdq-u8")))
    return paths, rng.normal(size=(32, 3, 32, 32)).astype(F32)


@pytest.fixture(scope="module")
def se_cnn(tmp_path_factory):
    import logging
    import warnings

    level = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _se_cnn_paths(tmp_path_factory.mktemp("se_cnn"))
    finally:
        logging.getLogger().setLevel(level)


@pytest.mark.parametrize("form", ["qoperator-u8", "qoperator-s8", "qdq-u8"])
def test_squeeze_excite_cnn_verifies_bit_exact(se_cnn, form):
    paths, x = se_cnn
    check = verify_onnx(paths[form], x)  # H, W are symbolic: taken from x
    ops = list(check.per_layer["op"])
    print(f"\nSE-CNN {form}: {check.summary['outputs_compared']} outputs compared, "
          f"{check.summary['total_mismatches']} mismatches; layers {check.summary['layers_bit_exact']}")
    print(check.per_layer.to_string())
    for op in ("activation_lut", "mul", "concat_lut", "avgpool2d_f32", "softmax_table", "conv2d",
               "resize_nearest"):
        assert op in ops, op
    assert ops.count("activation_lut") == 2  # the SE sigmoid and the LeakyReLU
    assert check.summary["total_mismatches"] == 0
    _assert_plain_output_matches(str(paths[form]), check.program, x)
    reasons = uncosted_ops(check.program)
    assert "vector unit" in reasons["activation_lut"] and "vector unit" in reasons["softmax_table"]


def test_symbolic_height_and_width_resolve_from_the_inputs(se_cnn):
    """The SE-CNN is exported with symbolic N, H, W: the importer takes H and W from the
    inputs' shape (verify_onnx passes it), and asks for it otherwise."""
    from hwsim.onnx import OnnxImportError

    paths, x = se_cnn
    with pytest.raises(OnnxImportError, match=r"dimension 2 is symbolic \(H\).*input_shape"):
        load_onnx_program(paths["qoperator-u8"])
    program = load_onnx_program(paths["qoperator-u8"], input_shape=(5, 3, 48, 40))
    assert program.input.out_shape == (1, 3, 48, 40)
    check = verify_onnx(paths["qdq-u8"], x[:4, :, :24, :40])
    assert check.summary["total_mismatches"] == 0 and check.summary["outputs_compared"] > 0


def test_imported_se_cnn_saves_and_loads(se_cnn, tmp_path):
    from hwsim.ir import load_program, save_program

    paths, x = se_cnn
    program = load_onnx_program(paths["qdq-u8"], input_shape=x.shape)
    loaded = load_program(save_program(program, tmp_path / "se"))
    codes = quantize_input(program, x[:2])
    assert np.array_equal(execute(loaded, codes).output, execute(program, codes).output)


def test_reference_backend_runs_the_se_cnn(se_cnn):
    paths, x = se_cnn
    program = load_onnx_program(paths["qoperator-u8"], input_shape=x.shape)
    codes = quantize_input(program, x[:1])
    fast = execute(program, codes, record=True)
    ref = execute(program, codes, record=True, backend="reference")
    assert all(np.array_equal(fast.tensors[k], ref.tensors[k]) for k in fast.tensors)


# ------------------------------------------------------------------------------------------------
# Errors name the node and what was expected

def test_unsupported_attributes_name_the_node():
    from hwsim.onnx import OnnxImportError

    dtype = np.uint8
    one = OneOp("QLinearAveragePool", [("act", 0), F32(0.02), np.asarray(3, dtype), F32(0.01),
                                       np.asarray(7, dtype)], dtype, [(1, 8, 8, 8)],
                (F32(0.01), 7), kernel_shape=[2, 2], ceil_mode=1)
    with pytest.raises(OnnxImportError, match=r"node 'y' \(com.microsoft:QLinearAveragePool\).*ceil_mode"):
        one.node()
    one = OneOp("QLinearSoftmax", [("act", 0), F32(0.02), np.asarray(3, dtype), F32(0.01),
                                   np.asarray(7, dtype)], dtype, [(1, 8, 8)], (F32(0.01), 7),
                axis=0, opset=13)
    with pytest.raises(OnnxImportError, match="non-batch axis"):
        one.node()
