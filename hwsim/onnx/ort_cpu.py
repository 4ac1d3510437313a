"""Does ONNX Runtime on this machine sum u8 x s8 products in saturating int16 pairs?

CPUs with AVX2 but without VNNI multiply u8 by s8 with `vpmaddubsw`, which saturates the sum of
two adjacent products to int16 (Intel's instruction set reference); ONNX Runtime's QLinearConv
(not depthwise), QLinearMatMul, QGemm and MatMulInteger inherit it. CPUs with VNNI (or other
ISAs) compute exactly. The answer is measured, not guessed: a one-node MatMulInteger model
computing 255·127 + 255·127 gives 32767 when pairs saturate and 64770 when they do not. Without
onnxruntime installed, the CPU flags decide (x86 with AVX2 and no VNNI flag: saturating).
"""

from __future__ import annotations

import functools

import numpy as np

from hwsim.engines.cpu import cpu_flags
from hwsim.onnx.errors import OnnxImportError

_EXACT, _SATURATED = 2 * 255 * 127, (1 << 15) - 1


@functools.lru_cache(maxsize=1)
def ort_saturates_int16_pairs() -> bool:
    """True when this machine's ONNX Runtime saturates u8 x s8 product pairs to int16."""
    return _probe()[0]


@functools.lru_cache(maxsize=1)
def _probe() -> tuple[bool, str]:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        flags = cpu_flags()
        saturates = "avx2" in flags and not any("vnni" in f for f in flags)
        return saturates, (f"onnxruntime absent; CPU flags: avx2={'avx2' in flags}, "
                           f"vnni={any('vnni' in f for f in flags)}")
    y = _run_matmul_integer()
    if y not in (_EXACT, _SATURATED):
        raise OnnxImportError(f"ONNX Runtime computed 255*127*2 as {y}: neither exact "
                              f"({_EXACT}) nor int16-saturated ({_SATURATED}); hwsim does not "
                              "model this engine")
    return y == _SATURATED, f"onnxruntime probe: 255*127 + 255*127 -> {y}"


def _run_matmul_integer() -> int:
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    node = helper.make_node("MatMulInteger", ["a", "b", "a_zp", "b_zp"], ["y"])
    graph = helper.make_graph(
        [node], "int16_pair_probe",
        [helper.make_tensor_value_info("a", onnx.TensorProto.UINT8, [1, 2])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.INT32, [1, 1])],
        initializer=[numpy_helper.from_array(np.full((2, 1), 127, np.int8), "b"),
                     numpy_helper.from_array(np.uint8(0), "a_zp"),
                     numpy_helper.from_array(np.int8(0), "b_zp")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    return int(sess.run(None, {"a": np.full((1, 2), 255, np.uint8)})[0][0, 0])


def pairs_decision(x_dtype: np.dtype, w_dtype: np.dtype, depthwise: bool,
                   override: bool | None) -> tuple[str, str]:
    """(accumulator mode, reason) of one conv / matmul imported from ONNX Runtime's semantics.

    "int16_pairs" when the activations are uint8, the weights int8, the layer is not a
    depthwise conv (ONNX Runtime's depthwise kernel is exact), and pairs saturate on this
    machine (`override` True/False replaces the measurement, e.g. to model another CPU);
    otherwise "wrap" (exact int32 accumulation).
    """
    if np.dtype(x_dtype) != np.uint8 or np.dtype(w_dtype) != np.int8:
        return "wrap", f"{np.dtype(x_dtype)} x {np.dtype(w_dtype)}: not u8 x s8, exact int32"
    if depthwise:
        return "wrap", "u8 x s8 depthwise conv: ONNX Runtime's depthwise kernel is exact"
    if override is not None:
        return ("int16_pairs" if override else "wrap"), f"u8 x s8; int16_pairs={override} requested"
    saturates, how = _probe()
    return ("int16_pairs" if saturates else "wrap"), f"u8 x s8 GEMM; {how}"
