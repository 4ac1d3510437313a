"""ONNX Resize mode "linear" (bilinear) on quantized models, bit for bit with ONNX Runtime.

How it is checked:
- the kernels (hwsim.kernels.resize_linear_ort) against ONNX Runtime's own Resize on the same
  tensors: float32 in NCHW and NHWC (the float island form), 8-bit codes in NHWC (the integer
  kernel) and NCHW (float, truncated); every coordinate mode, scales and sizes, u8 and s8;
- QDQ islands on codes: x -> Q -> a -> DQ -> Resize -> Q -> y imported, the node ``y`` run on
  random codes against ONNX Runtime running DQ -> Resize -> Q on the same codes. Input scales
  are powers of two and the output scale 2^k times the input's, so that many outputs sit
  exactly on a .5 rounding boundary (counted); over 10^6 outputs per code type, 0 mismatches;
- the fast kernels equal their element-by-element references (hypothesis);
- a small U-Net with nn.Upsample(mode="bilinear"), quantized by quantize_static (QDQ and
  QOperator, u8 and s8), verifies with 0 mismatches (verify_onnx);
- a bilinear Resize on codes whose layout is not pinned is refused, naming the node;
- a nearest Resize read by a float op joins the float island (a float gather), equal to ONNX
  Runtime.

About 10 s.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnx", reason="onnx is in the 'onnx' extra; install hwsim[test]")
pytest.importorskip("onnxruntime", reason="onnxruntime is in the 'onnx' extra; install hwsim[test]")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

from hwsim.executor import execute_node  # noqa: E402
from hwsim.kernels import float_island as fk  # noqa: E402
from hwsim.kernels import resize_linear_ort as rl  # noqa: E402
from hwsim.onnx import load_onnx_program  # noqa: E402
from hwsim.onnx.errors import OnnxImportError  # noqa: E402
from tests._onnx_helpers import elem, model_bytes, session  # noqa: E402

F32 = np.float32
MODES = rl.MODES
# (H, W) -> geometry: ("scales", (sh, sw)) or ("sizes", (Ho, Wo)); 2x and 0.5x put the source
# coordinates on quarters and halves (dyadic weights: ties after requantization)
GEOMETRIES = [((12, 10), ("scales", (2.0, 2.0))), ((12, 10), ("scales", (0.5, 0.5))),
              ((9, 11), ("scales", (1.5, 2.5))), ((10, 7), ("sizes", (23, 13))),
              ((8, 8), ("scales", (4.0, 1.0)))]


def _resize_inputs(geometry, layout: str = "nchw") -> tuple[list[str], dict]:
    kind, (a, b) = geometry
    inits = {"roi": np.zeros(0, F32)}
    if kind == "scales":
        v = [1.0, 1.0, a, b] if layout == "nchw" else [1.0, a, b, 1.0]
        inits["scales"] = np.asarray(v, F32)
        return ["roi", "scales"], inits
    inits["scales"] = np.zeros(0, F32)
    return ["roi", "scales", "sizes"], inits


def _sizes(shape, geometry, layout="nchw") -> list[int]:
    n, c, h, w = shape
    kind, (a, b) = geometry
    if kind == "sizes":
        return [n, c, a, b] if layout == "nchw" else [n, a, b, c]
    return [n, c, int(np.floor(F32(h) * F32(a))), int(np.floor(F32(w) * F32(b)))]


def _one_resize(dtype, shape, geometry, mode: str, layout: str) -> bytes:
    names, inits = _resize_inputs(geometry, layout)
    if "sizes" in names:
        inits["sizes"] = np.asarray(_sizes(shape, geometry, layout), np.int64)
    node = helper.make_node("Resize", ["x"] + names, ["y"], mode="linear",
                            coordinate_transformation_mode=mode)
    dims = list(shape) if layout == "nchw" else [shape[0], shape[2], shape[3], shape[1]]
    return model_bytes([node], [helper.make_tensor_value_info("x", elem(dtype), dims)],
                       [helper.make_tensor_value_info("y", elem(dtype), None)], inits)


def _taps(shape, geometry, mode):
    out = _sizes(shape, geometry)
    kind, (a, b) = geometry
    sh, sw = (F32(a), F32(b)) if kind == "scales" else (F32(out[2]) / F32(shape[2]),
                                                         F32(out[3]) / F32(shape[3]))
    return (rl.bilinear_taps(shape[2], out[2], sh, mode),
            rl.bilinear_taps(shape[3], out[3], sw, mode))


def _ort(model: bytes, x: np.ndarray, layout: str) -> np.ndarray:
    if layout == "nhwc":
        y = session(model).run(None, {"x": np.ascontiguousarray(x.transpose(0, 2, 3, 1))})[0]
        return y.transpose(0, 3, 1, 2)
    return session(model).run(None, {"x": x})[0]


@pytest.mark.parametrize("dtype", [np.float32, np.uint8, np.int8])
def test_kernels_equal_ort_resize(dtype):
    """Every mode x geometry x layout: float32 -> the float kernel (both layouts); codes ->
    nhwc_integer in NHWC, nchw_cast in NCHW. About 10^6 outputs per type."""
    rng = np.random.default_rng(3 + np.dtype(dtype).itemsize)
    outputs = mismatches = 0
    for mode in MODES:
        for (h, w), geometry in GEOMETRIES:
            shape = (2, 48, h, w)
            if dtype == np.float32:  # multiples of 1/64: exact products, many equal sums
                x = (rng.integers(-512, 512, shape) / 64).astype(F32)
            else:
                info = np.iinfo(dtype)
                x = rng.integers(info.min, info.max + 1, shape).astype(dtype)
            ty, tx = _taps(shape, geometry, mode)
            for layout in ("nchw", "nhwc"):
                theirs = _ort(_one_resize(dtype, shape, geometry, mode, layout), x, layout)
                if dtype == np.float32:
                    ours = rl.bilinear_f32(x, ty, tx)
                    bad = np.count_nonzero(ours.view(np.int32) != theirs.view(np.int32))
                else:
                    info = np.iinfo(dtype)
                    kernel = "nhwc_integer" if layout == "nhwc" else "nchw_cast"
                    ours = rl.bilinear_codes(x, ty, tx, kernel, int(info.min), int(info.max))
                    bad = np.count_nonzero(ours != theirs.astype(np.int64))
                assert ours.shape == theirs.shape
                assert bad == 0, f"{mode} {geometry} {layout}: {bad} mismatches"
                outputs += ours.size
                mismatches += int(bad)
    print(f"\nResize linear kernels, {np.dtype(dtype)}: {outputs} outputs compared with ONNX "
          f"Runtime, {mismatches} mismatches")
    assert outputs >= 10 ** 6 and mismatches == 0


def _qdq_island(dtype, shape, geometry, mode, qa, qy) -> tuple[bytes, bytes]:
    """(importable x -> Q -> a -> DQ -> Resize -> Q -> y -> DQ, codes model a -> ... -> y)."""
    (sa, za), (sy, zy) = qa, qy
    names, inits = _resize_inputs(geometry)
    if "sizes" in names:
        inits["sizes"] = np.asarray(_sizes(shape, geometry), np.int64)
    inits.update(sa=F32(sa), za=np.asarray(za, dtype), sy=F32(sy), zy=np.asarray(zy, dtype))
    island = [helper.make_node("DequantizeLinear", ["a", "sa", "za"], ["da"]),
              helper.make_node("Resize", ["da"] + names, ["f"], name="up", mode="linear",
                               coordinate_transformation_mode=mode),
              helper.make_node("QuantizeLinear", ["f", "sy", "zy"], ["y"])]
    head = [helper.make_node("QuantizeLinear", ["x", "sa", "za"], ["a"])]
    tail = [helper.make_node("DequantizeLinear", ["y", "sy", "zy"], ["out"])]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, None)
    importable = model_bytes(head + island + tail, [x], [out], inits)
    codes = model_bytes(island, [helper.make_tensor_value_info("a", elem(dtype), list(shape))],
                        [helper.make_tensor_value_info("y", elem(dtype), None)], inits)
    return importable, codes


def _ties(node, a, qy) -> int:
    from hwsim.ops.float_island import constants

    spec = node.attrs["inputs"][0]
    values = dict(constants(node))
    values[spec["tensor"]] = fk.dequantize(a, spec["scale"], spec["zero_point"])
    v = (fk.evaluate(node.attrs["nodes"], values, node.attrs["output"]) / F32(qy[0]))
    v = v.astype(F32).astype(np.float64)
    return int(np.count_nonzero(v - np.floor(v) == 0.5))


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_qdq_resize_islands_equal_ort(dtype):
    """DQ -> Resize(linear) -> Q imported as a float island: every mode x geometry x 2 scale
    sets (powers of two: ties; random), over 10^6 outputs, 0 mismatches."""
    rng = np.random.default_rng(17 + (dtype == np.int8))
    info = np.iinfo(dtype)
    outputs = mismatches = ties = 0
    for mode in MODES:
        for k, ((h, w), geometry) in enumerate(GEOMETRIES):
            for case in range(2):
                shape = (2, 16, 2 * h, 2 * w)
                za, zy = (int(rng.integers(info.min + 40, info.max - 40)) for _ in range(2))
                if case == 0:
                    sa = 2.0 ** -int(rng.integers(2, 6))
                    sy = sa * float(rng.choice([0.5, 1.0, 2.0, 4.0]))
                else:
                    sa, sy = (float(rng.uniform(0.005, 0.1)) for _ in range(2))
                importable, codes_model = _qdq_island(dtype, shape, geometry, mode, (sa, za),
                                                      (sy, zy))
                node = load_onnx_program(importable, input_shape=shape).node("y")
                assert node.op == "float_island" and node.attrs["onnx_ops"] == ["Resize"]
                a = rng.integers(info.min, info.max + 1, shape).astype(dtype)
                ours, _ = execute_node(node, [a])
                theirs = session(codes_model).run(None, {"a": a})[0]
                bad = int(np.count_nonzero(ours.astype(np.int64) != theirs))
                assert bad == 0, f"{mode} {geometry} case {case}: {bad} mismatches"
                outputs, mismatches = outputs + ours.size, mismatches + bad
                ties += _ties(node, a, (sy, zy))
    print(f"\nQDQ Resize linear islands, {np.dtype(dtype)}: {outputs} outputs compared with "
          f"ONNX Runtime, {mismatches} mismatches; {ties} ({100 * ties / outputs:.2f}%) exactly "
          "on a .5 rounding boundary")
    assert outputs >= 10 ** 6 and mismatches == 0 and ties >= 0.01 * outputs


_MODE = st.sampled_from(MODES)


@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 6), w=st.integers(1, 6), ho=st.integers(1, 9), wo=st.integers(1, 9),
       mode=_MODE, signed=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_fast_kernels_equal_references(h, w, ho, wo, mode, signed, seed):
    rng = np.random.default_rng(seed)
    ty = rl.bilinear_taps(h, ho, F32(ho) / F32(h), mode)
    tx = rl.bilinear_taps(w, wo, F32(wo) / F32(w), mode)
    x = rng.standard_normal((1, 2, h, w)).astype(F32)
    assert np.array_equal(rl.bilinear_f32(x, ty, tx).view(np.int32),
                          rl.bilinear_f32_reference(x, ty, tx).view(np.int32))
    lo, hi = (-128, 127) if signed else (0, 255)
    codes = rng.integers(lo, hi + 1, (1, 2, h, w))
    for kernel in ("nchw_cast", "nhwc_integer"):
        assert np.array_equal(rl.bilinear_codes(codes, ty, tx, kernel, lo, hi),
                              rl.bilinear_codes_reference(codes, ty, tx, kernel, lo, hi))


def test_taps_weights_sum_to_one_unit():
    """The 10-bit weights of every position sum to 1024 (so codes stay within range)."""
    for mode in MODES:
        for n_in, n_out in ((1, 4), (5, 11), (7, 3), (16, 32)):
            t = rl.bilinear_taps(n_in, n_out, F32(n_out) / F32(n_in), mode)
            assert np.all(t.e1 + t.e2 == 1024) and np.all(t.i2 - t.i1 <= 1)


def test_codes_resize_from_the_input_is_refused_naming_the_node():
    """QuantizeLinear -> Resize(linear) on codes: ONNX Runtime's layout is not pinned."""
    names, inits = _resize_inputs(GEOMETRIES[0][1])
    inits.update(s=F32(0.05), z=np.uint8(128))
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["a"]),
             helper.make_node("Resize", ["a"] + names, ["b"], name="/up/Resize", mode="linear"),
             helper.make_node("DequantizeLinear", ["b", "s", "z"], ["out"])]
    model = model_bytes(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                              [1, 3, 8, 8])],
                        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], inits)
    with pytest.raises(OnnxImportError, match=r"node '/up/Resize' \(Resize\): a bilinear "
                                              r"Resize on codes that come from a QuantizeLinear"):
        load_onnx_program(model)


# --- a small U-Net, quantized by ONNX Runtime ----------------------------------------------------

@pytest.fixture(scope="module")
def unet_models(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from torch import nn

    from tests._onnx_helpers import quantize_forms

    class TinyUNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc = nn.Conv2d(3, 8, 3, padding=1)
            self.mid = nn.Conv2d(8, 8, 3, padding=1)
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
            self.up_ac = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
            self.dec = nn.Conv2d(24, 4, 3, padding=1)

        def forward(self, x):
            e = torch.relu(self.enc(x))
            m = torch.relu(self.mid(nn.functional.max_pool2d(e, 2)))
            return self.dec(torch.cat([self.up(m), self.up_ac(m), e], 1))

    torch.manual_seed(0)
    net = TinyUNet().eval()
    tmp = tmp_path_factory.mktemp("unet")
    rng = np.random.default_rng(0)
    calib = rng.standard_normal((8, 3, 16, 16)).astype(F32)
    pre = tmp / "unet.onnx"
    torch.onnx.export(net, torch.from_numpy(calib[:1]), str(pre), input_names=["input"],
                      output_names=["out"], opset_version=17, dynamo=False)
    paths = quantize_forms(pre, tmp / "unet", calib,
                           ("qdq-u8", "qdq-s8", "qoperator-u8", "qoperator-s8"))
    return paths, rng.standard_normal((32, 3, 16, 16)).astype(F32)


@pytest.mark.parametrize("form", ["qdq-u8", "qdq-s8", "qoperator-u8", "qoperator-s8"])
def test_bilinear_unet_verifies_bit_exact(unet_models, form):
    from hwsim.onnx.verify import verify_onnx

    paths, x = unet_models
    result = verify_onnx(paths[form], x)
    program = result.program
    resizes = [n for n in program.nodes() if n.op == "float_island"
               and "Resize" in n.attrs["onnx_ops"]]
    assert len(resizes) == 2
    if form.startswith("qoperator"):
        assert all("NhwcUpsampleBilinearInteger" in n.attrs["note"] for n in resizes)
    print(f"\nbilinear U-Net {form}: {result.summary}")
    assert result.summary["total_mismatches"] == 0
    assert result.summary["outputs_compared"] > 0


def test_bilinear_unet_saves_loads_and_runs_the_reference_backend(unet_models, tmp_path):
    """The QOperator U-Net's Resize islands survive save/load, and the element-by-element
    backend gives the same codes."""
    from hwsim import execute
    from hwsim.ir import load_program, save_program
    from hwsim.onnx import quantize_input

    paths, x = unet_models
    program = load_onnx_program(paths["qoperator-u8"])
    loaded = load_program(save_program(program, tmp_path / "unet"))
    codes = quantize_input(program, x[:2])
    fast = execute(program, codes, record=True)
    assert np.array_equal(execute(loaded, codes).output, fast.output)
    resizes = [n for n in program.nodes()
               if n.op == "float_island" and "Resize" in n.attrs["onnx_ops"]]
    assert len(resizes) == 2
    for n in resizes:
        ref, _ = execute_node(n, [fast.tensors[i] for i in n.inputs], backend="reference")
        assert np.array_equal(ref, fast.tensors[n.name])


def test_codes_joined_with_the_model_input_are_refused(tmp_path):
    """conv codes concatenated with the quantized input, then Resize: ONNX Runtime 1.32 runs
    that Resize in NCHW (measured), unlike conv-only codes; such mixes are refused."""
    torch = pytest.importorskip("torch")
    from torch import nn

    from tests._onnx_helpers import quantize_forms

    class Mixed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc = nn.Conv2d(3, 5, 3, padding=1)
            self.up = nn.Upsample(scale_factor=2, mode="bilinear")
            self.dec = nn.Conv2d(8, 2, 1)

        def forward(self, x):
            return self.dec(self.up(torch.cat([torch.relu(self.enc(x)), x], 1)))

    torch.manual_seed(1)
    calib = np.random.default_rng(1).standard_normal((4, 3, 8, 8)).astype(F32)
    pre = tmp_path / "mixed.onnx"
    torch.onnx.export(Mixed().eval(), torch.from_numpy(calib[:1]), str(pre),
                      input_names=["input"], opset_version=17, dynamo=False)
    path = quantize_forms(pre, tmp_path / "mixed", calib, ("qoperator-u8",))["qoperator-u8"]
    with pytest.raises(OnnxImportError, match=r"node '/up/Resize' \(Resize\): a bilinear Resize "
                                              r"on codes that come from a QLinearConv, a "
                                              r"QuantizeLinear: the layout"):
        load_onnx_program(path)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_nearest_resize_read_by_a_float_op_joins_the_island(dtype):
    """DQ -> Resize(nearest) -> Relu -> Q: the Resize is a float gather inside the island (it
    was refused before float islands had Resize), equal to ONNX Runtime."""
    shape = (2, 8, 6, 5)
    info = np.iinfo(dtype)
    inits = {"roi": np.zeros(0, F32), "scales": np.asarray([1, 1, 2, 1.5], F32),
             "sa": F32(0.05), "za": np.asarray(3, dtype), "sy": F32(0.03),
             "zy": np.asarray(info.min + 100, dtype)}
    island = [helper.make_node("DequantizeLinear", ["a", "sa", "za"], ["da"]),
              helper.make_node("Resize", ["da", "roi", "scales"], ["r"], name="up",
                               mode="nearest"),
              helper.make_node("Relu", ["r"], ["f"]),
              helper.make_node("QuantizeLinear", ["f", "sy", "zy"], ["y"])]
    importable = model_bytes(
        [helper.make_node("QuantizeLinear", ["x", "sa", "za"], ["a"])] + island
        + [helper.make_node("DequantizeLinear", ["y", "sy", "zy"], ["out"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], inits)
    codes_model = model_bytes(island, [helper.make_tensor_value_info("a", elem(dtype),
                                                                     list(shape))],
                              [helper.make_tensor_value_info("y", elem(dtype), None)], inits)
    node = load_onnx_program(importable).node("y")
    assert node.op == "float_island" and node.attrs["onnx_ops"] == ["Resize", "Relu"]
    a = np.random.default_rng(4).integers(info.min, info.max + 1, shape).astype(dtype)
    ours, _ = execute_node(node, [a])
    theirs = session(codes_model).run(None, {"a": a})[0]
    assert ours.shape == theirs.shape == (2, 8, 12, 7)
    assert np.array_equal(ours, theirs.astype(np.int64))
