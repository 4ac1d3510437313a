"""The seams' proof: a toy number format, a toy IR op and a toy compute unit, defined in this file
only, registered once each, run end to end: quantize -> lower -> execute (fast == reference) ->
verify -> cost, with no library file knowing about them.

The toy format "tri3" rounds weights to the seven levels {-3, ..., 3} times a per-tensor step
(max|w| / 3); its layers lower to a "tri3_linear" op (an exact int64 dot product, requantized
by the node's dyadic constants) that a "tri3_dot" unit prices: one dot lane per output feature,
three cycles per product (one per level bit it walks).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

import quant
from hwsim import execute
from hwsim.arch import (ArrayAccesses, ComputeUnit, UnitKind, accelerator_from_dict,
                        register_unit_kind, unregister_unit_kind)
from hwsim.arch.schema import non_negative_number, positive_int
from hwsim.cost import cost_network
from hwsim.errors import ConfigError
from hwsim.ir import OpDef, register_op, unregister_op
from hwsim.lower import (WeightLowering, lower, register_weight_lowering,
                         unregister_weight_lowering)
from hwsim.verify import verify
from hwsim.workloads import LayerShape, program_workload
from quant.formats import FormatEntry, register_format, straight_through, unregister_format

LEVELS = 3


# ---- the format ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Tri3Format:
    def describe(self) -> str:
        return "tri3"


@dataclass(frozen=True)
class Tri3Params:
    step: float  # real value of one code
    fmt: Tri3Format

    def quantize(self, x: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(np.asarray(x, np.float64) / self.step), -LEVELS, LEVELS).astype(np.int8)

    def dequantize(self, codes: np.ndarray) -> np.ndarray:
        return codes.astype(np.float64) * self.step


def fit_tri3(x: np.ndarray, fmt: Tri3Format) -> Tri3Params:
    return Tri3Params(float(np.abs(x).max()) / LEVELS or 1.0, fmt)


TRI3 = FormatEntry(name="tri3", format_type=Tri3Format, fit=fit_tri3,
                   encode=lambda p, x: p.quantize(x), decode=lambda p, c: p.dequantize(c),
                   storage_bits=lambda fmt: 3, code_scale=lambda p: np.asarray(p.step),
                   fake_quant=straight_through)


# ---- the lowering and the op ----------------------------------------------------------------
def lower_tri3(ctx, rec):
    qm = ctx.qm
    x_q, out = ctx.tq(rec.inputs[0]), ctx.tq(rec.name)
    step = qm.weight_params(rec.name).step
    codes = qm.weight_codes(rec.name)
    arrays = {"weight": np.asarray(codes), "bias": qm.bias_codes(rec.name),
              **ctx.requant_arrays(np.full(codes.shape[0], x_q.scale * step / out.scale), None)}
    attrs = {"requant": ctx.requant_attrs(rec, out), "input_zero_point": x_q.zero_point}
    return ctx.node(rec, "tri3_linear", out, attrs, arrays)


def _accumulate_fast(node, x):
    xc = x.astype(np.int64) - node.attrs["input_zero_point"]
    return xc @ node.arrays["weight"].astype(np.int64).T + node.arrays["bias"]


def _accumulate_reference(node, x):
    w, b = node.arrays["weight"], node.arrays["bias"]
    zp = node.attrs["input_zero_point"]
    return np.array([[int(b[k]) + sum((int(v) - zp) * int(w[k, c]) for c, v in enumerate(row))
                      for k in range(w.shape[0])] for row in x], dtype=np.int64)


def _requantize(node, acc, reference):
    from hwsim import kernels as k

    lo, hi = node.attrs["requant"]["clamp"]
    fn = k.requantize_dyadic_reference if reference else k.requantize_dyadic
    return fn(acc, node.arrays["rq_multiplier"], node.arrays["rq_shift"], node.out.zero_point,
              lo, hi, axis=1)


def _workload(program, node, batch):
    src = program.node(node.inputs[0])
    return LayerShape(name=node.name, kind="linear", in_h=1, in_w=1,
                      in_channels=int(src.out_shape[-1]),
                      out_channels=int(node.arrays["weight"].shape[0]), kernel_h=1, kernel_w=1,
                      batch=batch, act_bits=src.out.bits, weight_bits=3, weight_format="tri3")


def _check(node):
    w = node.arrays["weight"]
    return [] if np.abs(w).max(initial=0) <= LEVELS else [f"weight codes must be within ±{LEVELS}"]


TRI3_LINEAR = OpDef(
    "tri3_linear", 1, ("requant", "input_zero_point"), ("weight", "bias"),
    "acc = bias + (x - zp_x) @ w^T with w in {-3..3}; requantized per output feature.",
    run=lambda node, args: (_requantize(node, _accumulate_fast(node, args[0]), False), None),
    run_reference=lambda node, args: (_requantize(node, _accumulate_reference(node, args[0]), True),
                                      None),
    requantizes=True, check=_check, workload=_workload)


# ---- the unit -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tri3Dot(ComputeUnit):
    lanes: int = 1
    cycles_per_product: int = 3
    weight_formats = ("tri3",)

    @property
    def pe_count(self) -> int:
        return self.lanes

    def compute_cycles(self, g, ops):
        return g.sr * -(-g.sc // self.lanes) * g.t * self.cycles_per_product

    def array_accesses(self, g, ops):
        sr, sc, t = g.sr, g.sc, g.t
        zero = np.zeros_like(sr)
        return ArrayAccesses(sr * t * -(-sc // self.lanes), sr * sc * t, sr * sc, zero, zero,
                             False)


TRI3_DOT = UnitKind("tri3_dot", (positive_int("lanes"), positive_int("cycles_per_product")),
                    lambda v: Tri3Dot(**v), "toy: one dot lane per output feature")

CONFIG = {
    "name": "toy_hetero", "clock_mhz": 500,
    "units": {
        "array": {"kind": "systolic", "rows": 4, "cols": 4, "dataflow": "os", "act_bits": 8,
                  "weight_bits": 8, "acc_bits": 32, "mac_energy_pj": 0.3},
        "tri3": {"kind": "tri3_dot", "lanes": 4, "cycles_per_product": 3, "act_bits": 8,
                 "weight_bits": 3, "acc_bits": 32, "mac_energy_pj": 0.05},
    },
    "assign": {"default": "array", "rules": [{"unit": "tri3", "format": "tri3"}]},
    "memory": {
        "dram": {"bandwidth_bytes_per_cycle": 16, "access_bits": 64, "read_energy_pj": 1300.0,
                 "write_energy_pj": 1300.0},
        "buffers": {"sram": {"holds": ["ifmap", "filter", "ofmap"], "size_bytes": 65536,
                             "bandwidth_bytes_per_cycle": 64, "access_bits": 64,
                             "read_energy_pj": 20.0, "write_energy_pj": 20.0}},
    },
}


@pytest.fixture
def toy_extension():
    register_format(TRI3)
    register_weight_lowering(WeightLowering("tri3", lower_tri3))
    register_op(TRI3_LINEAR)
    register_unit_kind(TRI3_DOT)
    try:
        yield
    finally:
        unregister_unit_kind("tri3_dot")
        unregister_op("tri3_linear")
        unregister_weight_lowering("tri3")
        unregister_format("tri3")


def test_a_toy_format_op_and_unit_run_end_to_end(toy_extension):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(6 * 6 * 6, 16), nn.ReLU(), nn.Linear(16, 5)).eval()
    x = torch.randn(12, 3, 6, 6)
    config = quant.QuantConfig(layer_weight={"3": Tri3Format(), "5": Tri3Format()})
    qm = quant.quantize(model, config, [x])
    assert qm.weight_family("3") == "tri3" and qm.weight_family("0") == "int"

    program = lower(qm)
    assert [n.op for n in program.nodes()] == ["input", "conv2d", "flatten", "tri3_linear",
                                               "tri3_linear"]
    codes = qm.quantize_input(x)
    fast = execute(program, codes, record=True)
    reference = execute(program, codes, record=True, backend="reference")
    for name, value in fast.tensors.items():
        np.testing.assert_array_equal(value, reference.tensors[name])
    assert np.ptp(fast.output) > 0  # not a constant output: the layers really computed

    report = verify(qm, program, x)
    assert report.per_layer["max_lsb_diff"].max() <= 1  # integer == fake-quant within 1 LSB

    layers = program_workload(program)
    assert [(l.name, l.weight_format, l.weight_bits) for l in layers] == [
        ("0", "int", 8), ("3", "tri3", 3), ("5", "tri3", 3)]
    accel = accelerator_from_dict(CONFIG)
    cost = cost_network(accel, layers)
    assert list(cost.per_layer["unit"]) == ["array", "tri3", "tri3"]
    fc = cost.per_layer.set_index("name").loc["3"]
    assert fc["compute_cycles"] == 1 * math.ceil(16 / 4) * 216 * 3
    assert fc["mac_actions"] == 216 * 16 and fc["energy_compute_pj"] == pytest.approx(216 * 16 * 0.05)
    assert fc["weight_format"] == "tri3"
    # weights move at the format's 3 storage bits: 216 x 16 codes -> 1296 bytes from DRAM
    from hwsim.cost.layer_table import LayerTable
    from hwsim.cost.traffic import memory_traffic

    table = LayerTable.from_layers([layers[1]])
    traffic = memory_traffic(accel, table, accel.unit("tri3"))
    assert int(traffic.dram_reads_by_operand["filter"][0]) == 216 * 16 * 3 // 8


def test_a_toy_layer_on_a_unit_that_cannot_run_it_is_a_clear_error(toy_extension):
    bad = {**CONFIG, "assign": {"default": "array", "rules": [{"unit": "tri3", "format": "int"}]}}
    accel = accelerator_from_dict(bad, source="toy.yaml")
    layer = LayerShape(name="fc", kind="linear", in_h=1, in_w=1, in_channels=8, out_channels=4,
                       kernel_h=1, kernel_w=1)
    with pytest.raises(ConfigError, match=r"layer 'fc'.*'int' weights.*unit 'tri3' \(tri3_dot\)"):
        cost_network(accel, [layer])


def test_registrations_are_undone_and_unknown_names_are_listed(toy_extension):
    with pytest.raises(quant.QuantError, match="already registered"):
        register_format(TRI3)
    from hwsim.errors import ProgramError

    with pytest.raises(ProgramError, match="already registered"):
        register_op(TRI3_LINEAR)
    with pytest.raises(ProgramError, match="already has a weight lowering"):
        register_weight_lowering(WeightLowering("tri3", lower_tri3))


def test_without_the_registrations_the_toy_names_are_unknown():
    from hwsim.errors import ProgramError
    from hwsim.ir import op_def

    with pytest.raises(ProgramError, match="unknown op 'tri3_linear'; known ops: .*apot_conv2d"):
        op_def("tri3_linear")
    with pytest.raises(quant.QuantError, match="Tri3Format is not a registered format"):
        quant.QuantConfig(weight=Tri3Format())
    with pytest.raises(ConfigError, match=r"assign.rules\[0\].format.*got 'tri3'"):
        accelerator_from_dict(CONFIG)
