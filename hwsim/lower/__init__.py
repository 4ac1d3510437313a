"""QuantizedModel (quant) -> integer program (hwsim).

Reads only the QuantizedModel's numpy API (graph records, integer codes, scales, zero points), so
this package does not import torch itself. Each captured record is lowered by one registered
function (``hwsim.lower.registry``): conv2d / linear by their weight format family (``uniform``,
``binary``, ``apot``, ``multipoint``, ``group``), the other records by their op (``records``).
Requantization constants are derived once, in ``context``.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hwsim.engines.table import ENGINES, PYTORCH_ENGINES
from hwsim.errors import ProgramError
from hwsim.ir import IntProgram, check_program
from hwsim.ir.specs import ACCUMULATOR_MODES, AccumulatorConfig, AccumulatorMode, RequantMode
from hwsim.lower import apot, binary, records, uniform  # noqa: F401  (register the lowerings)
from hwsim.lower import multipoint  # noqa: F401  (the multipoint family's lowering)
from hwsim.lower import group  # noqa: F401  (group-wise weights: a scale per block)
from hwsim.lower.context import LoweringContext
from hwsim.lower.engines import engine_choice, with_engine
from hwsim.lower.registry import (RECORD_LOWERINGS, WEIGHTED_RECORD_OPS, WeightLowering,
                                  register_record_lowering, register_weight_lowering,
                                  unregister_weight_lowering, weight_lowering)

__all__ = ["lower", "LoweringContext", "WeightLowering", "register_weight_lowering",
           "register_record_lowering", "unregister_weight_lowering", "ENGINES",
           "PYTORCH_ENGINES"]


def lower(qm: Any, *, requant: str = "dyadic", accumulator_bits: int = 32,
          accumulator_mode: str = "wrap", name: str = "program", engine: str | None = None,
          layer_engines: Mapping[str, str] | None = None,
          int16_pairs: bool | None = None) -> IntProgram:
    """Build the integer program of a `quant.QuantizedModel`.

    `requant`: "dyadic" (integer-only) or "float32" (ONNX Runtime's float order).
    `accumulator_bits`/`accumulator_mode`: the accumulator of every conv/linear ("wrap" or
    "saturate" at every step, or "int16_pairs"; for shift-add layers, the adder).
    `engine` (every uniform conv/linear) or `layer_engines` (per layer name, taking precedence):
    compute those layers exactly as a real integer engine does (`hwsim.engines.table`): "ort"
    (ONNX Runtime's QLinearConv/QLinearMatMul: float32 requantization and, for u8 x s8
    non-depthwise layers on a CPU without VNNI, int16 pair saturation), or PyTorch's "qnnpack",
    "onednn", "fbgemm" (`hwsim.engines.pytorch`; uint8 activations, int8 weights, float bias).
    `int16_pairs` overrides the CPU decision for the engines that saturate pairs (None: this
    machine's).
    """
    try:
        mode = RequantMode(requant)
    except ValueError:
        raise ProgramError(f"requant must be one of {[m.value for m in RequantMode]}, "
                           f"got {requant!r}") from None
    if accumulator_mode not in ACCUMULATOR_MODES:
        raise ProgramError(f"accumulator_mode must be one of {ACCUMULATOR_MODES}, "
                           f"got {accumulator_mode!r}")
    if isinstance(accumulator_bits, bool) or not isinstance(accumulator_bits, int) \
            or not 8 <= accumulator_bits <= 64:
        raise ProgramError(f"accumulator_bits must be an int in [8, 64], got {accumulator_bits!r}")
    acc = AccumulatorConfig(accumulator_bits, AccumulatorMode(accumulator_mode))
    engines = engine_choice(qm, engine, layer_engines)
    ctx = LoweringContext(qm, mode, acc)
    program = IntProgram(name)
    graph = qm.graph
    for rec in graph.records.values():
        where = f"layer {rec.name!r} ({rec.module_path})"
        if rec.op in WEIGHTED_RECORD_OPS:
            handler = weight_lowering(qm.weight_family(rec.name), where).lower
        else:
            handler = RECORD_LOWERINGS.get(rec.op)
            if handler is None:
                raise ProgramError(f"{where}: op {rec.op!r} has no integer lowering; supported: "
                                   f"{', '.join(sorted((*RECORD_LOWERINGS, *WEIGHTED_RECORD_OPS)))}")
        node = handler(ctx, rec)
        if rec.name in engines:
            node = with_engine(ctx, rec, node, engines[rec.name], int16_pairs)
        program.add(node)
    program.output_name = graph.output_name
    check_program(program)
    return program
