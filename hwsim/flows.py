"""End-to-end flows shared by the CLI, the examples and the benches (torch bridge).

`quantize_zoo_model` builds a zoo model, calibrates it on the built-in calibration images and
lowers it to an integer program; `program_workload` turns an integer program's conv/linear nodes
into cost-model layer shapes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hwsim.errors import HwsimError, WorkloadError
from hwsim.ir import IntProgram
from hwsim.workloads import LayerShape

ZOO_MODELS = ("mobilenet_v2", "resnet18", "resnet50")


@dataclass
class QuantizedFlow:
    """A zoo model quantized and lowered: `qm` (quant.QuantizedModel), `program` (IntProgram),
    `calib_images` / `eval_images` (torch tensors, N x 3 x H x W, ImageNet-normalized)."""

    model_name: str
    qm: Any
    program: IntProgram
    calib_images: Any
    eval_images: Any


def quantize_zoo_model(model_name: str = "mobilenet_v2", *, bits: int = 8, act_bits: int | None = None,
                       per_channel: bool = True, requant: str = "dyadic",
                       accumulator_bits: int = 32, accumulator_mode: str = "wrap",
                       image_size: int = 224, engine: str | None = None) -> QuantizedFlow:
    """Quantize a built-in model: weights `bits`-bit signed symmetric (per channel by default),
    activations `act_bits`-bit (default: `bits`) unsigned asymmetric per tensor, min-max ranges.
    `engine`: compute every conv/linear as that real engine does (see `hwsim.lower.lower`)."""
    import quant
    from hwsim import zoo
    from hwsim.lower import lower

    if model_name not in ZOO_MODELS:
        raise HwsimError(f"unknown model {model_name!r}; built-in models: {', '.join(ZOO_MODELS)}")
    model = getattr(zoo, model_name)()
    model.eval()
    calib = zoo.sample_images("calib", size=image_size)
    evals = zoo.sample_images("eval", size=image_size)
    config = quant.QuantConfig(
        weight=quant.IntFormat(bits=bits, signed=True, symmetric=True, per_channel=per_channel),
        activation=quant.IntFormat(bits=act_bits or bits, signed=False, symmetric=False,
                                   per_channel=False),
    )
    qm = quant.quantize(model, config, [calib], example_input=calib[:1])
    program = lower(qm, requant=requant, accumulator_bits=accumulator_bits,
                    accumulator_mode=accumulator_mode, name=f"{model_name}_w{bits}",
                    engine=engine)
    return QuantizedFlow(model_name, qm, program, calib, evals)


def program_workload(program: IntProgram, batch: int = 1) -> list[LayerShape]:
    """The conv and linear nodes of an integer program (binary ones included) as cost-model
    layer shapes. A binary layer runs at its planes' widths: act_bits = k_a (the input codes'
    width when it has no binarizer), weight_bits = k_w."""
    layers = []
    for node in program.nodes():
        if node.op not in ("conv2d", "linear", "binary_conv2d", "binary_linear"):
            continue
        src = program.node(node.inputs[0])
        binary = node.op.startswith("binary_")
        w = node.arrays["weight_planes"][0] if binary else node.arrays["weight"]
        act_bits = int(node.attrs["input_bits"]) if binary else src.out.bits
        weight_bits = int(node.attrs.get("weight_bits", 8))
        if node.op in ("conv2d", "binary_conv2d"):
            pt, pl, pb, pr = node.attrs["padding"]
            layers.append(LayerShape(
                name=node.name, kind="conv", in_h=int(src.out_shape[2]), in_w=int(src.out_shape[3]),
                in_channels=int(src.out_shape[1]), out_channels=int(w.shape[0]),
                kernel_h=int(w.shape[2]), kernel_w=int(w.shape[3]),
                stride_h=int(node.attrs["stride"][0]), stride_w=int(node.attrs["stride"][1]),
                pad_top=pt, pad_left=pl, pad_bottom=pb, pad_right=pr,
                dilation_h=int(node.attrs["dilation"][0]), dilation_w=int(node.attrs["dilation"][1]),
                groups=int(node.attrs["groups"]), batch=batch, act_bits=act_bits,
                weight_bits=weight_bits))
        else:
            layers.append(LayerShape(
                name=node.name, kind="linear", in_h=1, in_w=1, in_channels=int(w.shape[1]),
                out_channels=int(w.shape[0]), kernel_h=1, kernel_w=1, batch=batch,
                act_bits=act_bits, weight_bits=weight_bits))
    if not layers:
        raise WorkloadError(f"program {program.name!r} has no conv or linear node to cost")
    return layers
