"""End-to-end flows shared by the CLI, the examples and the benches (torch bridge).

`quantize_zoo_model` builds a zoo model, calibrates it on the built-in calibration images and
lowers it to an integer program. (`program_workload` lives in `hwsim.workloads`.)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hwsim.errors import HwsimError
from hwsim.ir import IntProgram
from hwsim.workloads import program_workload  # noqa: F401  (re-exported: its old home)

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
