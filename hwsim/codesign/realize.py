"""From a per-layer plan (layer -> `Option`) to a quantized model, its integer program, its
verification against float and its simulated cost: the "realize" half of the co-design loop.

Formats of an option (`option_formats`):

* weights, by the option's ``weight_format`` family at ``weight_bits``: "int" and "apot" as
  `hwsim.flows.weight_format` (int: signed symmetric per channel, min-max; apot: signed, MSE
  clipping), "binary" as `quant.BinaryFormat` with ``k = weight_bits`` terms ("ls1" for one
  term, "gf" otherwise); "multipoint" as `quant.MultipointFormat(weight_bits, max_points=
  MULTIPOINT_MAX_POINTS)`, its points fixed per layer (below);
* activations: a layer's option sets the format of its input *record* (the record whose output
  is the layer's input, ``act_source``): ``IntFormat(act_bits, unsigned, asymmetric, per
  tensor)``, as the base config's activations. Only ``act_format == "int"`` is supported
  (`quant.QuantConfig` activations are IntFormat). Layers reading the same record must agree
  (the loop ties them); a disagreement is a `CodesignError`.

Records that feed no planned layer (residual adds' inputs, the logits) keep the base config's
activation format.

Multipoint options (``Option(b, a, "multipoint", weight_points=p)``; Liu et al., "Post-training
Quantization with Multiple Points: Mixed Precision without Mixed Precision", AAAI 2021): a layer
of K output channels gets ``R = option.rows(K)`` weight rows, i.e. ``R - K`` extra b-bit points,
given to its channels by output error on the calibration images
(`quant.calibrate.multipoint.LayerPointFits`, ``allocate_points`` with that count; grouped
non-depthwise convs share them evenly over their groups first, so the busiest group has
``ceil(R / groups)`` rows). Its integer form (multipoint_conv2d / multipoint_linear) is costed as
the same layer with R output channels at b bits in the "int" family
(`hwsim.workloads.multipoint.rows_layer_shape`), which is how `AcceleratorCosts` prices the
option. The greedy gives fewer than ``R - K`` points only when no channel can take another (every
channel at ``MULTIPOINT_MAX_POINTS``, or its next point would have raised its output error, or
its error is 0): `Realization.rows` records priced and realized rows, and such a layer's
simulated cost differs from the prediction (`Realization.short_rows`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from hwsim.errors import HwsimError
from quant.allocate import Option


#: most points one output channel may take under a multipoint option (the options' average
#: ``weight_points`` must not exceed it)
MULTIPOINT_MAX_POINTS = 4


class CodesignError(HwsimError, ValueError):
    """The co-design loop cannot do what was asked (bad input, or a realized program whose
    layers do not run at the planned widths); one line naming what is wrong."""


def weight_fmt(family: str, bits: int) -> Any:
    """The weight format of ``family`` at ``bits`` (see the module docstring)."""
    from hwsim.flows import weight_format

    if family in ("int", "apot", "binary"):
        return weight_format(family, bits)
    if family == "multipoint":
        return weight_format(family, bits, max_points=MULTIPOINT_MAX_POINTS)
    raise CodesignError(f"weight_format {family!r}: the loop knows 'int', 'apot', 'binary' and "
                        f"'multipoint'")


def act_fmt(family: str, bits: int) -> Any:
    """The activation format at ``bits`` (int only; see the module docstring)."""
    import quant

    if family != "int":
        raise CodesignError(f"act_format {family!r}: QuantConfig activations are IntFormat; the "
                            f"loop supports act_format 'int' only")
    return quant.IntFormat(bits=bits, signed=False, symmetric=False, per_channel=False)


def sensitivity_formats(options: Sequence[Option]) -> dict[str, Callable[[int], Any]]:
    """``formats`` for `quant.sensitivity.sensitivity_table`, so it scores the same weight formats
    the loop realizes: a callable per non-int weight family ("int" comes from the base config,
    whose weights are ``weight_fmt("int", base bits)``; passing "int" here would also change the
    activations)."""
    fams = {o.weight_format for o in options} - {"int"}
    return {f: (lambda b, f=f: weight_fmt(f, b)) for f in sorted(fams)}


def base_config(base: Option, seed: int = 0) -> Any:
    """The uniform QuantConfig of the base option."""
    import quant

    return quant.QuantConfig(weight=weight_fmt(base.weight_format, base.weight_bits),
                             activation=act_fmt(base.act_format, base.act_bits), seed=seed)


def plan_config(base: Any, plan: Mapping[str, Option], act_source: Mapping[str, str]) -> Any:
    """``base`` with every planned layer's weight format and input record's activation format."""
    import dataclasses

    layer_weight = dict(base.layer_weight)
    layer_activation = dict(base.layer_activation)
    chosen_act: dict[str, tuple[str, Option]] = {}
    for name, opt in plan.items():
        layer_weight[name] = weight_fmt(opt.weight_format, opt.weight_bits)
        src = act_source[name]
        if src in chosen_act:
            other, o2 = chosen_act[src]
            if (o2.act_format, o2.act_bits) != (opt.act_format, opt.act_bits):
                raise CodesignError(f"layers {other!r} ({o2.label}) and {name!r} ({opt.label}) both "
                                    f"read record {src!r} but want different activation formats; "
                                    f"expected them tied")
            continue
        chosen_act[src] = (name, opt)
        layer_activation[src] = act_fmt(opt.act_format, opt.act_bits)
    return dataclasses.replace(base, layer_weight=layer_weight, layer_activation=layer_activation)


@dataclass
class Realization:
    """A plan quantized, lowered, verified and costed.

    ``cost``: `cost_network` of ``workload`` (= `program_workload(program)`): cycles at the
    accelerator clock, energy in pJ. ``report``: `hwsim.verify.verify` on the evaluation images
    (None if not verified). ``rows``: per planned multipoint layer, ``(priced, realized)`` weight
    rows (``option.rows(K)`` and the program's).
    """

    plan: dict[str, Option]
    config: Any
    quantized: Any
    program: Any
    workload: list
    cost: Any
    report: Any = None
    rows: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def short_rows(self) -> dict[str, tuple[int, int]]:
        """The multipoint layers realized with fewer rows than priced (see the module
        docstring): layer -> (priced, realized)."""
        return {n: r for n, r in self.rows.items() if r[1] != r[0]}

    @property
    def fidelity(self) -> dict[str, float | None]:
        """``sqnr_db``: output SQNR of the integer program against the float model (dB);
        ``top1_agreement``: fraction of evaluation images whose top-1 class matches float."""
        s = {} if self.report is None else self.report.summary
        return {"sqnr_db": s.get("output_sqnr_db_int_vs_float"),
                "top1_agreement": s.get("top1_agreement_int_vs_float"),
                "images": s.get("images")}

    def per_layer(self) -> dict[str, list[float]]:
        """Per resource, the simulated per-layer figures in program order."""
        f = self.cost.per_layer
        return {
            "latency_cycles": [float(v) for v in f["total_cycles"]],
            "compute_cycles": [float(v) for v in f["compute_cycles"]],
            "energy_pj": [float(v) for v in f["energy_total_pj"]],
            "dram_bytes": [float(a + b) for a, b in zip(f["dram_read_bytes"], f["dram_write_bytes"])],
            "size_bits": [float(l.weight_count * l.weight_bits) for l in self.workload],
            "bops": [float(m) * a * w for m, a, w in zip(f["macs"], f["act_bits"], f["weight_bits"])],
        }

    def totals(self) -> dict[str, float]:
        """Per resource, the simulated network total (``math.fsum`` of the per-layer figures,
        as the allocator sums its predictions)."""
        return {r: math.fsum(v) for r, v in self.per_layer().items()}


def multipoint_layers(plan: Mapping[str, Option]) -> dict[str, Option]:
    """The planned layers with a multipoint option."""
    return {n: o for n, o in plan.items() if o.weight_format == "multipoint"}


def point_fits(graph: Any, calib: Any, names: Sequence[str]) -> Any:
    """`quant.calibrate.multipoint.LayerPointFits` of ``names`` on the calibration images, at
    ``MULTIPOINT_MAX_POINTS``: the fits the sensitivity table and the realization share."""
    from quant.calibrate.multipoint import LayerPointFits

    return LayerPointFits(graph, [calib], list(names), max_points=MULTIPOINT_MAX_POINTS)


def option_params(fits: Any, name: str, option: Option) -> Any:
    """The multipoint parameters ``option`` gives layer ``name``: ``option.rows(K) - K`` extra
    points (`quant.calibrate.multipoint.points_for_count`)."""
    k = fits.channels(name)
    if option.weight_points > MULTIPOINT_MAX_POINTS:
        raise CodesignError(f"option {option.label}: weight_points {option.weight_points:g} "
                            f"exceeds {MULTIPOINT_MAX_POINTS}, the most points a channel takes")
    return fits.params(name, option.weight_bits, option.rows(k) - k)


def realize(model: Any, accel: Any, plan: Mapping[str, Option], act_source: Mapping[str, str],
            base: Any, calib: Any, eval_images: Any = None, *, name: str = "codesign",
            lower_options: Mapping[str, Any] | None = None, points: Any = None) -> Realization:
    """Quantize ``model`` (float ``nn.Module``) with ``base`` (a QuantConfig) plus ``plan``,
    calibrate on ``calib``, lower (dyadic requantization, 32-bit wrapping accumulators unless
    ``lower_options`` say otherwise), verify on ``eval_images`` (skipped if None) and cost on
    ``accel``. Checks that every planned layer runs at its planned widths and formats.
    Multipoint layers take their points from ``points`` (`point_fits`; made here on ``calib``
    when None and the plan has multipoint layers)."""
    from hwsim.cost import cost_network
    from hwsim.lower import lower
    from hwsim.verify import verify
    from hwsim.workloads.program import program_workload
    from quant.model import initial_state

    config = plan_config(base, plan, act_source)
    state = initial_state(model, config, [calib], example_input=calib[:1])
    multi = multipoint_layers(plan)
    if multi:
        fits = point_fits(state.graph, calib, list(multi)) if points is None else points
        fixed = {n: option_params(fits, n, o) for n, o in multi.items()}
        state = state.replace(weight_params={**state.weight_params, **fixed})
    qm = state.model()
    program = lower(qm, name=name, **{"requant": "dyadic", "accumulator_bits": 32,
                                      "accumulator_mode": "wrap", **(lower_options or {})})
    workload = program_workload(program)
    rows: dict[str, tuple[int, int]] = {}
    for layer in workload:
        opt = plan.get(layer.name)
        if opt is None:
            continue
        # a multipoint layer's integer form runs as b-bit int rows (hwsim.ops.multipoint)
        fam = "int" if opt.weight_format == "multipoint" else opt.weight_format
        got = (layer.weight_bits, layer.act_bits, layer.weight_format, layer.act_format)
        want = (opt.weight_bits, opt.act_bits, fam, opt.act_format)
        if got != want:
            raise CodesignError(f"layer {layer.name!r}: the program runs it at (weight_bits, "
                                f"act_bits, weight_format, act_format) = {got}; the plan says {want}")
        node = program.node(layer.name)
        if opt.weight_format == "multipoint":
            if not node.op.startswith("multipoint_"):
                raise CodesignError(f"layer {layer.name!r}: planned {opt.label}, lowered to "
                                    f"{node.op}")
            k = qm.graph[layer.name].weight.shape[0]
            rows[layer.name] = (opt.rows(int(k)), int(node.arrays["weight_rows"].shape[0]))
    cost = cost_network(accel, workload)
    report = None if eval_images is None else verify(qm, program, eval_images)
    return Realization(dict(plan), config, qm, program, workload, cost, report, rows)
