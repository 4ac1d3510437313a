"""Float islands: ONNX float ops that ONNX Runtime's quantizer leaves between DequantizeLinear and
QuantizeLinear (HardSigmoid, HardSwish, Sigmoid, Tanh, Relu, Clip, Add, Sub, Mul, Div,
BatchNormalization, GlobalAveragePool, AveragePool, ReduceMean, MaxPool, Sum of N inputs, and
the shape ops Flatten, Reshape, Transpose, Split, Slice, Squeeze, Unsqueeze), imported as one
``float_island`` node that ONNX Runtime matches bit for bit.

How it is checked:
- each op's float32 order of operations (hwsim.kernels.float_island) against ONNX Runtime's
  float kernel on the same float32 inputs: every bit of every output;
- islands on codes: a model x -> Q -> [codes a, b] -> DQ -> island -> Q -> y is imported and
  the node ``y`` runs (``execute_node``) on random codes, against ONNX Runtime running
  DQ -> island -> Q on the same codes (graph optimizations on, as deployed). Half the scale
  sets are powers of two, so that many outputs sit exactly on a .5 rounding boundary (the
  tallies print how many); u8 and s8, over 10^6 outputs each, 0 mismatches required;
- the fast kernels equal the element-by-element references (exact rational fma);
- a small torch CNN with HardSwish and a squeeze-excite block gated by HardSigmoid, quantized
  by ``quantize_static`` (after ``quant_pre_process``) with only Conv / Gemm quantized, verifies
  end to end with 0 mismatches (QDQ and QOperator, u8) and shows the islands in the report;
  with s8 activations its islands are bit exact on ONNX Runtime's own input codes.

Default run: about 30 s on an idle machine; ``slow`` sweeps more scale sets.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

pytest.importorskip("onnx", reason="onnx is in the 'onnx' extra; install hwsim[test]")
pytest.importorskip("onnxruntime", reason="onnxruntime is in the 'onnx' extra; install hwsim[test]")

import onnxruntime as ort  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from hwsim import execute  # noqa: E402
from hwsim.executor import execute_node  # noqa: E402
from hwsim.kernels import float_island as fk  # noqa: E402
from hwsim.onnx import OnnxImportError, load_onnx_program, quantize_input, verify_onnx  # noqa: E402
from hwsim.ops.float_island import FLOAT_ISLAND_UNIT  # noqa: E402
from hwsim.workloads.program import uncosted_ops  # noqa: E402
from tests._onnx_helpers import MS, elem as _elem, model_bytes as _model  # noqa: E402
from tests._onnx_helpers import quantize_forms, session as _session  # noqa: E402

F32 = np.float32
DTYPES = [np.uint8, np.int8]





def _out(name, dtype):
    return helper.make_tensor_value_info(name, _elem(dtype), None)


# ------------------------------------------------------------------------------------------------
# 1. Each op's float32 order against ONNX Runtime's float kernel (every bit)

def _float_inputs(rng, shape) -> np.ndarray:
    """Half dequantized-looking values (codes times a scale), half wide normal values."""
    codes = rng.integers(-128, 128, size=shape).astype(F32) * F32(rng.uniform(0.01, 0.2))
    wide = rng.standard_normal(shape).astype(F32) * F32(5)
    return np.where(rng.random(shape) < 0.5, codes, wide).astype(F32)


FLOAT_OP_CASES = {  # name: (nodes, float inputs (name -> shape), constants, opset)
    "HardSigmoid": ([helper.make_node("HardSigmoid", ["x"], ["y"], alpha=0.2, beta=0.5)],
                    {"x": (1 << 18,)}, {}, 17),
    "HardSigmoid-1/6": ([helper.make_node("HardSigmoid", ["x"], ["y"], alpha=1 / 6, beta=0.5)],
                        {"x": (1 << 18,)}, {}, 17),
    "HardSwish": ([helper.make_node("HardSwish", ["x"], ["y"])], {"x": (1 << 18,)}, {}, 17),
    "Sigmoid": ([helper.make_node("Sigmoid", ["x"], ["y"])], {"x": (1 << 18,)}, {}, 17),
    "Tanh": ([helper.make_node("Tanh", ["x"], ["y"])], {"x": (1 << 18,)}, {}, 17),
    "Relu": ([helper.make_node("Relu", ["x"], ["y"])], {"x": (1 << 16,)}, {}, 17),
    "LeakyRelu": ([helper.make_node("LeakyRelu", ["x"], ["y"], alpha=0.1)], {"x": (1 << 16,)},
                  {}, 17),
    "Clip": ([helper.make_node("Clip", ["x", "lo", "hi"], ["y"])], {"x": (1 << 16,)},
             {"lo": F32(0), "hi": F32(6)}, 17),
    "Clip-opset6": ([helper.make_node("Clip", ["x"], ["y"], min=-1.0, max=2.5)],
                    {"x": (1 << 16,)}, {}, 6),
    "Add": ([helper.make_node("Add", ["x", "z"], ["y"])], {"x": (4, 8, 64), "z": (8, 1)}, {}, 17),
    "Sum": ([helper.make_node("Sum", ["x", "z"], ["y"])], {"x": (1 << 20,), "z": (1 << 20,)},
            {}, 13),
    "Sub": ([helper.make_node("Sub", ["c", "x"], ["y"])], {"x": (1 << 16,)}, {"c": F32(3)}, 17),
    "Mul": ([helper.make_node("Mul", ["x", "z"], ["y"])], {"x": (1 << 16,), "z": (1 << 16,)},
            {}, 17),
    "Div": ([helper.make_node("Div", ["x", "c"], ["y"])], {"x": (1 << 16,)}, {"c": F32(6)}, 17),
    "Div-tensors": ([helper.make_node("Div", ["x", "z"], ["y"])],
                    {"x": (1 << 16,), "z": (1 << 16,)}, {}, 17),
    "BatchNormalization": ([helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"],
                                             ["y"], epsilon=1e-3)],
                           {"x": (4, 512, 5, 5)}, "bn512", 17),
    "GlobalAveragePool": ([helper.make_node("Relu", ["x"], ["r"]),
                           helper.make_node("GlobalAveragePool", ["r"], ["y"])],
                          {"x": (16, 256, 7, 9)}, {}, 17),
    "GlobalAveragePool-14x14": ([helper.make_node("Relu", ["x"], ["r"]),
                                 helper.make_node("GlobalAveragePool", ["r"], ["y"])],
                                {"x": (4, 512, 14, 14)}, {}, 17),
    "AveragePool-3x3-pad": ([helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3],
                                              pads=[1, 1, 1, 1])],
                            {"x": (4, 64, 56, 56)}, {}, 13),
    "AveragePool-3x3-s2-include-pad": ([helper.make_node(
        "AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1],
        count_include_pad=1)], {"x": (8, 128, 29, 29)}, {}, 13),
    "AveragePool-2x2-s2": ([helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2],
                                             strides=[2, 2])], {"x": (4, 256, 32, 32)}, {}, 13),
    "AveragePool-7x7-global-sized": ([helper.make_node("AveragePool", ["x"], ["y"],
                                                       kernel_shape=[7, 7])],
                                     {"x": (64, 2048, 7, 7)}, {}, 13),
    "ReduceMean": ([helper.make_node("Relu", ["x"], ["r"]),
                    helper.make_node("ReduceMean", ["r"], ["y"], axes=[2, 3], keepdims=1)],
                   {"x": (16, 257, 7, 9)}, {}, 17),
    "ReduceMean-opset18": ([helper.make_node("Relu", ["x"], ["r"]),
                            helper.make_node("ReduceMean", ["r", "ax"], ["y"], keepdims=0)],
                           {"x": (5, 1231, 13)}, {"ax": np.array([-1], np.int64)}, 18),
    "ReduceMean-5x5": ([helper.make_node("Relu", ["x"], ["r"]),
                        helper.make_node("ReduceMean", ["r"], ["y"], axes=[2, 3], keepdims=0)],
                       {"x": (8, 515, 5, 5)}, {}, 17),
    "Sum-3": ([helper.make_node("Sum", ["x", "z", "w"], ["y"])],
              {"x": (1 << 18,), "z": (1 << 18,), "w": (1 << 18,)}, {}, 13),
    "Sum-5-broadcast": ([helper.make_node("Sum", ["x", "z", "w", "x", "c"], ["y"])],
                        {"x": (64, 1, 128), "z": (64, 32, 128), "w": (32, 1)},
                        {"c": F32(0.1)}, 13),
    "MaxPool-3x3-s2-pad": ([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3],
                                             strides=[2, 2], pads=[1, 1, 1, 1])],
                           {"x": (4, 64, 57, 56)}, {}, 13),
    "MaxPool-2x2-ceil": ([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2],
                                           strides=[2, 2], ceil_mode=1)],
                         {"x": (4, 64, 29, 31)}, {}, 13),
    "MaxPool-3x3-ceil-tail-pad": ([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3],
                                                    strides=[2, 2], pads=[0, 0, 2, 2],
                                                    ceil_mode=1)], {"x": (4, 32, 8, 12)}, {}, 13),
    "MaxPool-dilated-same": ([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 2],
                                               dilations=[2, 1], auto_pad="SAME_UPPER")],
                             {"x": (2, 32, 17, 15)}, {}, 13),
    "Transpose": ([helper.make_node("Transpose", ["x"], ["y"], perm=[0, 2, 3, 1])],
                  {"x": (4, 16, 9, 7)}, {}, 13),
    "Slice-steps": ([helper.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["y"])],
                    {"x": (4, 16, 9, 7)}, {"st": np.array([1, -1], np.int64),
                                           "en": np.array([100, -8], np.int64),
                                           "ax": np.array([1, 3], np.int64),
                                           "sp": np.array([3, -2], np.int64)}, 13),
    "Unsqueeze-Squeeze": ([helper.make_node("Unsqueeze", ["x", "ax"], ["u"]),
                           helper.make_node("Relu", ["u"], ["r"]),
                           helper.make_node("Squeeze", ["r", "ax"], ["y"])],
                          {"x": (4, 16, 9)}, {"ax": np.array([2], np.int64)}, 13),
}


def _bn_constants(rng, c: int) -> dict:
    return {"s": rng.standard_normal(c).astype(F32), "b": rng.standard_normal(c).astype(F32),
            "m": rng.standard_normal(c).astype(F32), "v": rng.uniform(0.01, 3, c).astype(F32)}


@pytest.mark.parametrize("case", list(FLOAT_OP_CASES))
def test_float_ops_equal_ort_bit_for_bit(case):
    nodes, shapes, consts, opset = FLOAT_OP_CASES[case]
    rng = np.random.default_rng(len(case))
    if consts == "bn512":
        consts = _bn_constants(rng, 512)
    ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in shapes.items()]
    sess = _session(_model(nodes, ins, [_out("y", np.float32)], consts, opset))
    feeds = {n: _float_inputs(rng, s) for n, s in shapes.items()}
    theirs = sess.run(None, feeds)[0]
    serialized = [{"name": n.name or n.output[0], "op": n.op_type, "inputs": list(n.input),
                   "outputs": list(n.output),
                   "attrs": {a.name: helper.get_attribute_value(a) for a in n.attribute}}
                  for n in nodes]
    with np.errstate(all="ignore"):
        ours = fk.evaluate(serialized, {**feeds, **consts}, "y")
    assert ours.shape == theirs.shape
    bad = np.count_nonzero(ours.view(np.int32) != theirs.view(np.int32))
    print(f"\n{case}: {ours.size} float32 outputs, {bad} differ in any bit")
    assert bad == 0


# ------------------------------------------------------------------------------------------------
# 2. Islands on codes, against ONNX Runtime running DQ -> island -> Q

class Island:
    """An island reading "da" (DQ of codes a) and, with ``second`` "same" / "gap", "db" (DQ of
    codes b of a's shape / of shape (N, C, 1, 1)); it computes float tensor "f".

    `importable`: float x -> QuantizeLinear -> a [-> QLinearLeakyRelu / QLinearGlobalAveragePool
    -> b] -> DQ -> island -> QuantizeLinear -> y -> DQ, imported by hwsim; `codes_model`: a [, b]
    as graph inputs -> DQ -> island -> QuantizeLinear -> y, run by ONNX Runtime."""

    def __init__(self, nodes, consts: dict, second: str | None, dtype, shape, qa, qb, qy,
                 opset: int = 17, batch="N") -> None:
        self.dtype, self.shape, self.second = np.dtype(dtype), shape, second
        (sa, za), (sb, zb), (sy, zy) = qa, qb, qy
        q = {"sa": F32(sa), "za": np.asarray(za, dtype), "sb": F32(sb), "zb": np.asarray(zb, dtype),
             "sy": F32(sy), "zy": np.asarray(zy, dtype)}
        inits = {**consts, **q}
        island = [helper.make_node("DequantizeLinear", ["a", "sa", "za"], ["da"])]
        if second:
            island.append(helper.make_node("DequantizeLinear", ["b", "sb", "zb"], ["db"]))
        island += list(nodes) + [helper.make_node("QuantizeLinear", ["f", "sy", "zy"], ["y"])]
        head = [helper.make_node("QuantizeLinear", ["x", "sa", "za"], ["a"])]
        if second == "same":
            head.append(helper.make_node("QLinearLeakyRelu", ["a", "sa", "za", "sb", "zb"], ["b"],
                                         domain=MS, alpha=0.5))
        elif second == "gap":
            head.append(helper.make_node("QLinearGlobalAveragePool", ["a", "sa", "za", "sb", "zb"],
                                         ["b"], domain=MS))
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch] + list(shape[1:]))
        self.importable = _model(head + island + [helper.make_node(
            "DequantizeLinear", ["y", "sy", "zy"], ["out"])], [x], [_out("out", np.float32)],
            inits, opset)
        code_ins = [helper.make_tensor_value_info("a", _elem(dtype), list(shape))]
        if second:
            b_shape = shape if second == "same" else shape[:2] + (1,) * (len(shape) - 2)
            code_ins.append(helper.make_tensor_value_info("b", _elem(dtype), list(b_shape)))
        self.codes_model = _model(island, code_ins, [_out("y", dtype)], inits, opset)

    def node(self):
        return load_onnx_program(self.importable, input_shape=self.shape).node("y")

    def codes(self, rng) -> list[np.ndarray]:
        info = np.iinfo(self.dtype)
        a = rng.integers(info.min, info.max + 1, size=self.shape).astype(self.dtype)
        if not self.second:
            return [a]
        b_shape = self.shape if self.second == "same" else (
            self.shape[:2] + (1,) * (len(self.shape) - 2))
        return [a, rng.integers(info.min, info.max + 1, size=b_shape).astype(self.dtype)]

    def compare(self, codes):
        """(node, codes in the node's input order, hwsim's output, ORT's output)."""
        node = self.node()
        ordered = _in_node_order(node, codes)
        ours, _ = execute_node(node, ordered)
        names = ["a", "b"][:len(codes)]
        theirs = _session(self.codes_model).run(None, dict(zip(names, codes)))[0]
        return node, ordered, ours, theirs

    def fast_equals_reference(self, rng) -> bool:
        """The imported island node's fast kernel and its reference agree on random codes."""
        node = self.node()
        codes = _in_node_order(node, self.codes(rng))
        fast, _ = execute_node(node, codes)
        ref, _ = execute_node(node, codes, backend="reference")
        return np.array_equal(fast, ref)


def _n(op, ins, out="f", **attrs):
    return helper.make_node(op, ins, [out], **attrs)


# name: (nodes, constants (a dict, or a function of (rng, channels)), second operand, opset)
ISLANDS = {
    "HardSigmoid": ([_n("HardSigmoid", ["da"], alpha=0.25, beta=0.5)], {}, None, 17),
    "HardSigmoid-relu": ([_n("HardSigmoid", ["da"], "h", alpha=0.2, beta=0.5),
                          _n("Relu", ["h"])], {}, None, 17),
    "HardSwish": ([_n("HardSwish", ["da"])], {}, None, 17),
    "HardSwish-inlined": ([_n("HardSigmoid", ["da"], "h", alpha=1 / 6, beta=0.5),
                           _n("Mul", ["da", "h"])], {}, None, 17),
    "hard-swish-by-hand": ([_n("Add", ["da", "three"], "t"), _n("Clip", ["t", "zero", "six"], "c"),
                            _n("Mul", ["da", "c"], "m"), _n("Div", ["m", "six"])],
                           {"three": F32(3), "zero": F32(0), "six": F32(6)}, None, 17),
    "Relu": ([_n("Relu", ["da"])], {}, None, 17),
    "Clip": ([_n("Clip", ["da", "zero", "six"])], {"zero": F32(0), "six": F32(6)}, None, 17),
    "SiLU": ([_n("Sigmoid", ["da"], "s"), _n("Mul", ["da", "s"])], {}, None, 17),
    "QuickGelu": ([_n("Mul", ["da", "k"], "t"), _n("Sigmoid", ["t"], "s"), _n("Mul", ["da", "s"])],
                  {"k": F32(1.702)}, None, 17),
    "Tanh": ([_n("Tanh", ["da"])], {}, None, 17),
    "Tanh-scaled": ([_n("Tanh", ["da"], "t"), _n("Mul", ["t", "k"])], {"k": F32(0.5)}, None, 17),
    "Mul-const-channels": ([_n("Mul", ["da", "w"])], lambda rng, c: {"w": _per_channel(rng, c)},
                           None, 17),
    "Add-const-channels": ([_n("Add", ["da", "w"])], lambda rng, c: {"w": _per_channel(rng, c)},
                           None, 17),
    "Div-const": ([_n("Div", ["da", "k"])], {"k": F32(4)}, None, 17),
    "Sub-tensors": ([_n("Sub", ["da", "db"])], {}, "same", 17),
    "Div-tensors": ([_n("Relu", ["db"], "r"), _n("Add", ["r", "one"], "d"), _n("Div", ["da", "d"])],
                    {"one": F32(1)}, "same", 17),
    "SE-gate": ([_n("HardSigmoid", ["db"], "g", alpha=1 / 6, beta=0.5), _n("Mul", ["da", "g"])],
                {}, "gap", 17),
    "SE-gate-sigmoid": ([_n("Sigmoid", ["db"], "g"), _n("Mul", ["da", "g"])], {}, "gap", 17),
    "BatchNormalization": ([_n("BatchNormalization", ["da", "s", "b", "m", "v"], epsilon=1e-5)],
                           _bn_constants, None, 17),
    "BatchNormalization-relu": ([_n("BatchNormalization", ["da", "s", "b", "m", "v"], "n"),
                                 _n("Relu", ["n"])], _bn_constants, None, 17),
    "GlobalAveragePool-hsig": ([_n("GlobalAveragePool", ["da"], "p"),
                                _n("HardSigmoid", ["p"], alpha=0.2, beta=0.5)], {}, None, 17),
    "GlobalAveragePool-flatten": ([_n("GlobalAveragePool", ["da"], "p"), _n("Flatten", ["p"])],
                                  {}, None, 17),
    "ReduceMean": ([_n("ReduceMean", ["da"], axes=[2, 3], keepdims=1)], {}, None, 17),
    "AveragePool-relu": ([_n("AveragePool", ["da"], "p", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
                          _n("Relu", ["p"])], {}, None, 17),
    "ReduceMean-hswish": ([_n("HardSwish", ["da"], "h"),
                           _n("ReduceMean", ["h"], axes=[-2, -1], keepdims=1)], {}, None, 17),
    "ReduceMean-opset18": ([_n("Relu", ["da"], "r"), _n("ReduceMean", ["r", "ax"], keepdims=0)],
                           {"ax": np.array([2, 3], np.int64)}, None, 18),
    "Sum-3": ([_n("Sum", ["da", "db", "da"])], {}, "same", 13),
    "Sum-4-gap": ([_n("Sum", ["da", "db", "k", "da"])], {"k": F32(0.375)}, "gap", 13),
    "MaxPool-3x3-s2-pad": ([_n("MaxPool", ["da"], kernel_shape=[3, 3], strides=[2, 2],
                               pads=[1, 1, 1, 1])], {}, None, 13),
    "MaxPool-hswish-ceil": ([_n("HardSwish", ["da"], "h"),
                             _n("MaxPool", ["h"], kernel_shape=[2, 2], strides=[2, 2],
                                ceil_mode=1)], {}, None, 17),
    "Transpose": ([_n("Transpose", ["da"], perm=[0, 3, 1, 2])], {}, None, 13),
    "Reshape-Transpose-shuffle": ([_n("Reshape", ["da", "sh"], "r"),
                                   _n("Transpose", ["r"], "t", perm=[0, 2, 1, 3]),
                                   _n("Reshape", ["t", "back"])],
                                  {"sh": np.array([0, 0, 1, -1], np.int64),
                                   "back": np.array([0, -1], np.int64)}, None, 13),
    "Split-second": ([helper.make_node("Split", ["da", "sp"], ["p", "q"], axis=1),
                      _n("Mul", ["q", "k"])],
                     lambda rng, c: {"sp": np.array([1, c - 1], np.int64), "k": F32(0.75)},
                     None, 13),
    "Split-sum": ([helper.make_node("Split", ["da"], ["p", "q"], axis=-1, num_outputs=2),
                   _n("Sum", ["p", "k", "p"])], {"k": F32(-0.5)}, None, 18),
    "Slice-relu": ([_n("Slice", ["da", "st", "en", "ax", "sp"], "s"), _n("Relu", ["s"])],
                   {"st": np.array([1, 0], np.int64), "en": np.array([-1, 100], np.int64),
                    "ax": np.array([2, 3], np.int64), "sp": np.array([1, 2], np.int64)},
                   None, 13),
    "Unsqueeze-Squeeze": ([_n("Unsqueeze", ["da", "ax"], "u"), _n("Relu", ["u"], "r"),
                           _n("Squeeze", ["r", "ax"])], {"ax": np.array([2], np.int64)},
                          None, 13),
}
SHAPES = [(4, 16, 16, 16), (3, 24, 7, 7), (2, 40, 5, 9), (5, 3, 11, 13)]
REDUCED_SHAPES = [(8, 64, 7, 7), (6, 40, 5, 9), (16, 24, 3, 3), (2, 96, 14, 14), (9, 7, 11, 13)]


def _shape(name: str, i: int) -> tuple[int, ...]:
    """Reductions get many channels (their outputs are one per channel)."""
    shapes = REDUCED_SHAPES if name.startswith(("GlobalAveragePool", "ReduceMean")) else SHAPES
    return shapes[i % len(shapes)]


def _per_channel(rng, c: int) -> np.ndarray:
    """(C, 1, 1) constants, half of them multiples of 1/8 (exact products: ties)."""
    dyadic = rng.integers(-16, 17, size=(c, 1, 1)) / 8
    return np.where(rng.random((c, 1, 1)) < 0.5, dyadic, rng.uniform(-2, 2, (c, 1, 1))).astype(F32)


def _scales(rng, case: int, dtype):
    """((s_a, z_a), (s_b, z_b), (s_y, z_y)): powers of two on odd cases (ties), else random."""
    info = np.iinfo(dtype)
    zp = lambda: int(rng.integers(info.min + 40, info.max - 40))  # noqa: E731
    if case % 2:
        sa = 2.0 ** -int(rng.integers(2, 6))
        sb = 2.0 ** -int(rng.integers(2, 6))
        sy = sa * float(rng.choice([2.0, 2.0, 4.0, 0.5]))  # y / s_y lands on halves
    else:
        sa, sb, sy = (float(rng.uniform(0.005, 0.1)) for _ in range(3))
    return (sa, zp()), (sb, zp()), (sy, zp())


def _ties(node, codes, qy) -> int:
    """How many island outputs are exactly halfway between two codes before rounding."""
    a = node.attrs
    values = dict(_node_constants(node))
    for c, spec in zip(codes, a["inputs"]):
        values[spec["tensor"]] = fk.dequantize(c, spec["scale"], spec["zero_point"])
    with np.errstate(all="ignore"):
        f = fk.evaluate(a["nodes"], values, a["output"])
        v = (f / F32(qy[0])).astype(F32).astype(np.float64)
    lo, hi = np.iinfo(node.out.dtype).min - qy[1], np.iinfo(node.out.dtype).max - qy[1]
    return int(np.count_nonzero((v - np.floor(v) == 0.5) & (v > lo) & (v < hi)))


def _node_constants(node):
    from hwsim.ops.float_island import constants

    return constants(node)


class Tally:
    def __init__(self, what: str) -> None:
        self.what, self.outputs, self.mismatches, self.ties = what, 0, 0, 0

    def add(self, ours, theirs, ties: int) -> None:
        assert ours.shape == theirs.shape
        self.outputs += ours.size
        self.mismatches += int(np.count_nonzero(ours.astype(np.int64) != theirs.astype(np.int64)))
        self.ties += ties

    def report(self, min_outputs: int, min_tie_share: float) -> None:
        share = 100 * self.ties / max(self.outputs, 1)
        print(f"\n{self.what}: {self.outputs} outputs compared with ONNX Runtime, "
              f"{self.mismatches} mismatches; {self.ties} ({share:.2f}%) exactly on a .5 "
              "rounding boundary")
        assert self.mismatches == 0
        assert self.outputs >= min_outputs
        assert self.ties >= min_tie_share * self.outputs


def _run_islands(dtype, sets: int, seed: int) -> Tally:
    tally = Tally(f"float islands, {len(ISLANDS)} kinds x {sets} scale sets, {np.dtype(dtype)}")
    rng = np.random.default_rng(seed)
    for k, (name, (nodes, consts, second, opset)) in enumerate(ISLANDS.items()):
        for case in range(sets):
            shape = _shape(name, k + case)
            qa, qb, qy = _scales(rng, case, dtype)
            c = consts(rng, shape[1]) if callable(consts) else consts
            island = Island(nodes, c, second, dtype, shape, qa, qb, qy, opset)
            node, ordered, ours, theirs = island.compare(island.codes(rng))
            assert node.op == "float_island"
            bad = int(np.count_nonzero(ours.astype(np.int64) != theirs))
            assert bad == 0, f"{name}, scale set {case}: {bad} mismatches"
            tally.add(ours, theirs, _ties(node, ordered, qy))
    return tally


def _in_node_order(node, codes):
    """Codes [a, b] (b optional) in the order of the island node's inputs ("da", "db")."""
    feed = dict(zip(("da", "db"), codes))
    return [feed[spec["tensor"]] for spec in node.attrs["inputs"]]


@pytest.mark.parametrize("dtype", DTYPES)
def test_islands_on_codes_equal_ort(dtype):
    """36 island kinds x 12 scale sets, about 2.2 million outputs per dtype."""
    _run_islands(dtype, 12, seed=11 + np.dtype(dtype).itemsize * (dtype == np.int8)).report(
        10 ** 6, 0.01)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
def test_islands_on_codes_equal_ort_many_scale_sets(dtype):
    _run_islands(dtype, 60, seed=500 + (dtype == np.int8)).report(5 * 10 ** 6, 0.01)


@pytest.mark.parametrize("name", ["SiLU", "Tanh", "SE-gate", "BatchNormalization-relu",
                                  "GlobalAveragePool-hsig", "ReduceMean-hswish",
                                  "hard-swish-by-hand", "Clip", "AveragePool-relu", "Sum-4-gap",
                                  "MaxPool-3x3-s2-pad", "MaxPool-hswish-ceil",
                                  "Reshape-Transpose-shuffle", "Split-second", "Split-sum",
                                  "Slice-relu", "Unsqueeze-Squeeze"])
def test_fast_kernels_equal_their_references(name):
    nodes, consts, second, opset = ISLANDS[name]
    rng = np.random.default_rng(len(name))
    for dtype in DTYPES:
        shape = (2, 3, 5, 7)
        qa, qb, qy = _scales(rng, 1, dtype)
        c = consts(rng, shape[1]) if callable(consts) else consts
        island = Island(nodes, c, second, dtype, shape, qa, qb, qy, opset)
        assert island.fast_equals_reference(rng)


def test_sums_equal_their_references_at_every_alignment():
    """MLAS's global-pool sum and Eigen's row sum (every start alignment, lengths 1..40)."""
    rng = np.random.default_rng(3)
    for length in range(1, 41):
        rows = _float_inputs(rng, (8, length))
        offsets = np.arange(8) * length + int(rng.integers(0, 4))
        fast = fk.eigen_sum(rows, offsets)
        assert np.array_equal(fast, [fk.eigen_sum_reference(r, o) for r, o in zip(rows, offsets)])
        assert np.array_equal(fk.mlas_global_sum(rows),
                              [fk.mlas_global_sum_reference(r) for r in rows])


def test_reduce_mean_rows_restart_with_each_ort_run():
    """Eigen orders a row's sum by the row's 16-byte alignment, i.e. by its offset in the
    tensor ONNX Runtime ran. With C·H·W not a multiple of 4 a batch run and one run per sample
    (a model with a static batch of 1) differ; the island's ``ort_batch`` says which."""
    rng = np.random.default_rng(5)
    x = _float_inputs(rng, (32, 3, 7, 7))
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("ReduceMean", ["r"], ["y"], axes=[2, 3], keepdims=1)]
    ins = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 7, 7])]
    sess = _session(_model(nodes, ins, [_out("y", np.float32)], {}))
    batched = sess.run(None, {"x": x})[0]
    one_by_one = np.concatenate([sess.run(None, {"x": x[i:i + 1]})[0] for i in range(len(x))])
    serialized = [{"name": "relu", "op": "Relu", "inputs": ["x"], "outputs": ["r"], "attrs": {}},
                  {"name": "mean", "op": "ReduceMean", "inputs": ["r"], "outputs": ["y"],
                   "attrs": {"axes": [2, 3], "keepdims": 1}}]
    for batch, theirs in ((0, batched), (1, one_by_one)):
        serialized[1]["attrs"]["ort_batch"] = batch
        ours = fk.evaluate(serialized, {"x": x}, "y")
        assert np.array_equal(ours.view(np.int32), theirs.view(np.int32)), batch
    assert not np.array_equal(batched, one_by_one)  # the two orders do differ here
    island = Island(ISLANDS["ReduceMean"][0], {}, None, np.uint8, (1, 3, 7, 7), (0.0371, 128),
                    (1, 0), (0.00917, 120), batch=1)
    assert island.node().attrs["ort_batch"] == 1


# ------------------------------------------------------------------------------------------------
# 3. What ONNX Runtime fuses stays a QLinear node; what it runs in float becomes an island

def _qdq(nodes, inits: dict, out_q=("sy", "zy"), shape=(2, 8, 6, 6)) -> bytes:
    head = [helper.make_node("QuantizeLinear", ["x", "sa", "za"], ["a"]),
            helper.make_node("DequantizeLinear", ["a", "sa", "za"], ["da"])]
    tail = [helper.make_node("QuantizeLinear", ["f", *out_q], ["y"]),
            helper.make_node("DequantizeLinear", ["y", *out_q], ["out"])]
    base = {"sa": F32(0.05), "za": np.uint8(120), "sy": F32(0.04), "zy": np.uint8(110)}
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N"] + list(shape[1:]))
    return _model(head + nodes + tail, [x], [_out("out", np.float32)], {**base, **inits})


def test_fused_patterns_stay_qlinear_and_float_ones_become_islands():
    rng = np.random.default_rng(9)
    x = rng.uniform(-5, 5, size=(8, 8, 6, 6)).astype(F32)
    cases = {  # ONNX Runtime: DQ -> Sigmoid -> Q is QLinearSigmoid; a float constant operand,
               # or a second consumer of the op's output, leaves it in float
        "sigmoid": ([_n("Sigmoid", ["da"])], {}, "activation_lut"),
        "mul-float-constant": ([_n("Mul", ["da", "k"])], {"k": F32(0.75)}, "float_island"),
        "add-float-constant": ([_n("Add", ["da", "k"])], {"k": F32(-0.5)}, "float_island"),
        "sigmoid-two-consumers": ([_n("Sigmoid", ["da"], "s"), _n("Mul", ["s", "s"])], {},
                                  "float_island"),
        "flatten-requantized": ([_n("GlobalAveragePool", ["da"], "p"), _n("Flatten", ["p"])],
                                {}, "float_island"),
    }
    for name, (nodes, inits, op) in cases.items():
        check = verify_onnx(_qdq(nodes, inits), x)
        assert check.program.output.op == op, name
        assert check.summary["total_mismatches"] == 0, (name, check.per_layer.to_string())


def test_unknown_float_op_in_an_island_names_the_node():
    model = _qdq([_n("HardSigmoid", ["da"], "h"), helper.make_node("Erf", ["h"], ["f"],
                                                                    name="the_erf")], {})
    with pytest.raises(OnnxImportError, match=r"node 'the_erf' \(Erf\): op type Erf cannot "
                                              r"be imported\. Supported: .*float islands.*Sigmoid"):
        load_onnx_program(model)
    model = _qdq([_n("HardSigmoid", ["da"], "h"), helper.make_node("Softmax", ["h"], ["f"],
                                                                    name="sm", axis=1)], {})
    with pytest.raises(OnnxImportError, match=r"node 'sm' \(Softmax\): a float Softmax inside"):
        load_onnx_program(model)


def test_unsupported_reductions_name_the_node():
    model = _qdq([helper.make_node("ReduceMean", ["da"], ["f"], name="rm", axes=[1],
                                   keepdims=1)], {})
    with pytest.raises(OnnxImportError, match=r"'y' \(QuantizeLinear\).*'rm' \(ReduceMean\).*"
                                              r"only trailing axes"):
        load_onnx_program(model)
    model = _qdq([helper.make_node("BatchNormalization", ["da", "s", "s", "s", "s"], ["f"],
                                   name="bn", training_mode=1)], {"s": np.ones(8, F32)})
    with pytest.raises(OnnxImportError, match=r"'bn'.*training_mode"):
        load_onnx_program(model)


def test_islands_save_load_and_report_the_vector_unit(tmp_path):
    from hwsim.ir import load_program, save_program

    nodes, consts, _, _ = ISLANDS["BatchNormalization-relu"]
    rng = np.random.default_rng(2)
    island = Island(nodes, consts(rng, 8), None, np.uint8, (2, 8, 6, 6), (0.05, 120), (1, 0),
                    (0.03, 100))
    program = load_onnx_program(island.importable)
    loaded = load_program(save_program(program, tmp_path / "island"))
    x = rng.uniform(-4, 4, size=(3, 8, 6, 6)).astype(F32)
    codes = quantize_input(program, x)
    assert np.array_equal(execute(loaded, codes).output, execute(program, codes).output)
    doc = json.loads((tmp_path / "island.json").read_text())
    assert [n["op"] for n in doc["nodes"]].count("float_island") == 1
    assert FLOAT_ISLAND_UNIT in uncosted_ops(program)["float_island"]


# ------------------------------------------------------------------------------------------------
# 4. A torch CNN with HardSwish and a HardSigmoid squeeze-excite block, quantized by ORT

def _hard_se_cnn(tmp_path):
    torch = pytest.importorskip("torch")
    from torch import nn

    class SqueezeExcite(nn.Module):
        def __init__(self, c: int, r: int) -> None:
            super().__init__()
            self.reduce, self.expand = nn.Conv2d(c, r, 1), nn.Conv2d(r, c, 1)
            self.act, self.gate = nn.ReLU(), nn.Hardsigmoid()

        def forward(self, x):
            w = x.mean((2, 3), keepdim=True)
            return x * self.gate(self.expand(self.act(self.reduce(w))))

    class HardSECNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 16, 3, padding=1, stride=2)
            self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
            self.bn = nn.BatchNorm2d(16)
            self.hs = nn.Hardswish()
            self.se = SqueezeExcite(16, 8)
            self.pw = nn.Conv2d(16, 24, 1)
            self.fc = nn.Linear(24, 10)

        def forward(self, x):
            x = self.hs(self.stem(x))
            x = self.se(self.hs(self.bn(self.dw(x))))
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.pw(x), 1), 1))

    from onnxruntime.quantization.shape_inference import quant_pre_process

    torch.manual_seed(0)
    net = HardSECNN().eval()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-1, 1)
        net.bn.running_var.uniform_(0.5, 2)
    rng = np.random.default_rng(0)
    calib = rng.normal(size=(16, 3, 32, 32)).astype(F32)
    paths = {"float": tmp_path / "hse.onnx", "pre": tmp_path / "hse.pre.onnx"}
    with torch.no_grad():
        torch.onnx.export(net, torch.from_numpy(calib[:1]), str(paths["float"]), opset_version=17,
                          dynamo=False, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    quant_pre_process(str(paths["float"]), str(paths["pre"]))

    paths.update(quantize_forms(paths["pre"], tmp_path / "hse", calib,
                                ("qdq-u8", "qdq-s8", "qoperator-u8"),
                                op_types_to_quantize=["Conv", "Gemm"]))  # HardSwish, SE gate: float
    x = rng.normal(size=(16, 3, 32, 32)).astype(F32)
    np.save(tmp_path / "x.npy", x)
    return paths, x


@pytest.fixture(scope="module")
def hard_se_cnn(tmp_path_factory):
    import logging
    import warnings

    level = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _hard_se_cnn(tmp_path_factory.mktemp("hard_se_cnn"))
    finally:
        logging.getLogger().setLevel(level)


def _islands_on_ort_codes(model, program, x) -> tuple[int, int]:
    """Every island node run on ONNX Runtime's own codes of its inputs, against ONNX Runtime's
    codes of its output: (outputs, mismatches)."""
    from hwsim.onnx import ort_reference_outputs

    islands = [n for n in program.nodes() if n.op == "float_island"]
    names = {name for n in islands for name in (n.name, *n.inputs)}
    ref = ort_reference_outputs(model, x, sorted(names))
    outputs = mismatches = 0
    for n in islands:
        ours, _ = execute_node(n, [ref[i] for i in n.inputs])
        outputs += ours.size
        mismatches += int(np.count_nonzero(ours.astype(np.int64) != ref[n.name]))
    return outputs, mismatches


@pytest.mark.parametrize("form", ["qdq-u8", "qoperator-u8"])
def test_hard_squeeze_excite_cnn_verifies_bit_exact(hard_se_cnn, form):
    """u8 activations: every layer and the deployed model's output equal ONNX Runtime's."""
    paths, x = hard_se_cnn
    check = verify_onnx(paths[form], x)
    table = check.per_layer
    print(f"\nHardSwish / SE CNN {form}: {check.summary['outputs_compared']} outputs compared, "
          f"{check.summary['total_mismatches']} mismatches; layers "
          f"{check.summary['layers_bit_exact']}")
    print(table.to_string())
    islands = table[table["op"] == "float_island"]
    assert len(islands) == 5  # HardSwish, HardSwish + ReduceMean, SE ReLU, SE gate, pool + flatten
    assert set(islands["unit"]) == {FLOAT_ISLAND_UNIT}
    assert set(table[table["op"] == "conv2d"]["unit"]) == {"compute unit"}
    assert check.summary["total_mismatches"] == 0
    ops = {tuple(n.attrs["onnx_ops"]) for n in check.program.nodes() if n.op == "float_island"}
    assert ("HardSigmoid", "Mul", "HardSigmoid", "Mul") in ops  # the SE gate after a HardSwish
    assert ("HardSigmoid", "Mul", "ReduceMean") in ops
    # the model as deployed (no intermediate outputs): ORT's output = hwsim's codes dequantized
    from hwsim.onnx import ort_reference_outputs

    (plain,) = ort_reference_outputs(paths[form], x).values()
    program = check.program
    codes = execute(program, quantize_input(program, x)).output
    out = program.output.out
    assert np.array_equal((codes.astype(F32) - F32(out.zero_point)) * F32(out.scale), plain)


def test_hard_squeeze_excite_cnn_s8_islands_bit_exact(hard_se_cnn):
    """s8 activations: ONNX Runtime (x86) rewrites s8 Q/DQ pairs to u8 but keeps the s8
    QuantizeLinear in front of a float island, which leaves the Conv before it unfused: a float
    Conv (MLAS sgemm) that hwsim imports as QLinearConv (rare 1-LSB differences, not an island
    matter). The islands, run on ONNX Runtime's own input codes, are bit exact."""
    paths, x = hard_se_cnn
    program = load_onnx_program(paths["qdq-s8"], input_shape=x.shape)
    assert sum(n.op == "float_island" for n in program.nodes()) == 5
    outputs, mismatches = _islands_on_ort_codes(paths["qdq-s8"], program, x)
    print(f"\nHardSwish / SE CNN qdq-s8 islands on ORT's codes: {outputs} outputs, "
          f"{mismatches} mismatches")
    assert mismatches == 0 and outputs > 10 ** 5


def test_cli_verify_marks_the_float_islands(hard_se_cnn, capsys):
    from hwsim.cli.main import main

    paths, _ = hard_se_cnn
    assert main(["verify", "--onnx", str(paths["qdq-u8"]), "--inputs",
                 str(paths["qdq-u8"].parent / "x.npy")]) == 0
    out = capsys.readouterr().out
    print(out)
    assert out.count(FLOAT_ISLAND_UNIT) == 5 and "float_island" in out
    assert re.search(r"layers_bit_exact\s+12/12", out) and re.search(r"total_mismatches\s+0", out)
