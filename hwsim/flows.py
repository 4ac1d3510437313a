"""End-to-end flows shared by the CLI, the examples and the benches (torch bridge).

`quantize_zoo_model` builds a zoo model, calibrates it on the built-in calibration images and
lowers it to an integer program. (`program_workload` lives in `hwsim.workloads`.)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from hwsim.errors import HwsimError
from hwsim.ir import IntProgram
from hwsim.workloads import program_workload  # noqa: F401  (re-exported: its old home)

ZOO_MODELS = ("mobilenet_v2", "resnet18", "resnet50")


@dataclass
class QuantizedFlow:
    """A zoo model quantized and lowered: `qm` (quant.QuantizedModel), `program` (IntProgram),
    `calib_images` / `eval_images` (torch tensors, N x 3 x H x W, ImageNet-normalized);
    with a calibration pipeline, its report (text) and wall time (s)."""

    model_name: str
    qm: Any
    program: IntProgram
    calib_images: Any
    eval_images: Any
    calibration_report: str = ""
    calibration_seconds: float | None = None


WEIGHT_FAMILIES = ("int", "apot", "multipoint", "group")  # by a bit width (CLI --weight-format)
DEFAULT_GROUP_SIZE = 32  # input features per group of "group" weights (CLI --group-size)


WEIGHT_CLIPPINGS = ("minmax", "mse")


def weight_format(family: str, bits: int, per_channel: bool = True,
                  clipping: str | None = None, max_points: int = 2,
                  group_size: int = DEFAULT_GROUP_SIZE) -> Any:
    """The weight format of `family` at `bits` bits: "int" (signed symmetric uniform),
    "apot" (signed APoT: a sign bit and bits - 1 magnitude bits), "multipoint" (up to
    `max_points` signed `bits`-bit points per output channel, Liu et al., AAAI 2021) or "group"
    (signed symmetric, one scale per output channel and `group_size` input features). `clipping`:
    the range from the largest magnitude ("minmax") or by MSE search ("mse"); None: the
    family's default (int: minmax, apot: mse, as in the APoT paper's post-training setting;
    multipoint searches its points' scales (least squares) and takes no clipping)."""
    import quant

    if clipping is not None and clipping not in WEIGHT_CLIPPINGS:
        raise HwsimError(f"weight clipping must be one of {list(WEIGHT_CLIPPINGS)}, got {clipping!r}")
    if family == "int":
        return quant.IntFormat(bits=bits, signed=True, symmetric=True, per_channel=per_channel,
                               clipping=clipping or "minmax")
    if family == "apot":
        return quant.APoTFormat(bits=bits, signed=True, per_channel=per_channel,
                                clipping={"minmax": "max"}.get(clipping, "mse"))
    if family == "multipoint":
        if not per_channel:
            raise HwsimError("multipoint weights are per output channel; per-tensor scales do "
                             "not apply")
        if clipping is not None:
            raise HwsimError("multipoint points search their scales (least squares refit); a "
                             "weight clipping does not apply")
        return quant.MultipointFormat(bits=bits, max_points=max_points)
    if family == "group":
        if not per_channel:
            raise HwsimError("group-wise weights have one scale per output channel and group; "
                             "per-tensor scales do not apply")
        return quant.GroupIntFormat(bits=bits, group_size=group_size,
                                    clipping=clipping or "minmax")
    if family == "binary":  # least-squares sign planes: `bits` = planes (1: "ls1", else "gf")
        return quant.BinaryFormat("ls1") if bits == 1 else quant.BinaryFormat("gf", k=bits)
    raise HwsimError(f"unknown weight format {family!r}; expected one of "
                     f"{list(WEIGHT_FAMILIES) + ['binary']}")


def plan_formats(records: list, plan: Any, *, family: str, bits: int, act_bits: int,
                 per_channel: bool = True, clipping: str | None = None, max_points: int = 2,
                 points: dict[str, tuple[int, float]] | None = None,
                 group_size: int = DEFAULT_GROUP_SIZE) -> tuple[dict[str, Any], dict[str, Any]]:
    """A precision plan (`hwsim.workloads.plan.PrecisionPlan`) as QuantConfig overrides:
    (``layer_weight``, ``layer_activation``) for the conv/linear ``records`` (quant
    `LayerRecord`s). A layer's fields the plan omits keep the uniform ``family``/``bits``/
    ``act_bits``; its ``act_bits`` set the format of the record it reads (its input), so layers
    reading one record must agree. Multipoint layers: with the plan's ``weight_points`` they
    take ``MultipointFormat(bits, MULTIPOINT_MAX_POINTS)`` and, in ``points`` (filled here),
    layer -> (bits, weight_points), the points `plan_points_params` fixes (as the co-design
    loop's realization does); without, ``max_points`` points per channel. Raises `HwsimError`
    naming the plan file and the layer."""
    import quant
    from hwsim.codesign.realize import MULTIPOINT_MAX_POINTS

    layer_weight: dict[str, Any] = {}
    layer_activation: dict[str, Any] = {}
    act_of: dict[str, tuple[str, int]] = {}
    for rec, p in zip(records, plan.resolve([r.name for r in records])):
        where = f"{plan.source}: layer {rec.name!r}"
        if p.act_format not in (None, "int"):
            raise HwsimError(f"{where}: act_format {p.act_format!r}; the integer program's "
                             f"activations are 'int' codes")
        fam, wb, ab = p.weight_format or family, p.weight_bits or bits, p.act_bits or act_bits
        fixed = fam == "multipoint" and p.weight_points is not None
        if fixed and p.weight_points > MULTIPOINT_MAX_POINTS:
            raise HwsimError(f"{where}: weight_points {p.weight_points:g} exceeds "
                             f"{MULTIPOINT_MAX_POINTS}, the most points a channel takes")
        try:
            if p.weight_format is not None or p.weight_bits is not None or fixed:
                layer_weight[rec.name] = weight_format(
                    fam, wb, per_channel, clipping,
                    MULTIPOINT_MAX_POINTS if fixed else max_points, group_size)
                quant.QuantConfig(weight=layer_weight[rec.name])  # the family's width checks
            act = quant.IntFormat(bits=ab, signed=False, symmetric=False, per_channel=False)
        except (quant.QuantError, HwsimError) as exc:
            raise HwsimError(f"{where}: {exc}") from None
        if fixed and points is not None:
            points[rec.name] = (wb, float(p.weight_points))
        src = rec.inputs[0]
        if src in act_of and act_of[src][1] != ab:
            raise HwsimError(f"{where}: act_bits {ab}, but layer {act_of[src][0]!r} reads the same "
                             f"input ({src!r}) at act_bits {act_of[src][1]}; layers reading one "
                             f"tensor must agree")
        act_of[src] = (rec.name, ab)
        if ab != act_bits:
            layer_activation[src] = act
    return layer_weight, layer_activation


def plan_points_params(state: Any, calib: Any, points: dict[str, tuple[int, float]]) -> Any:
    """``state`` (a `quant.model.CalibrationState`) with the multipoint layers of ``points``
    (layer -> (bits, weight_points), from `plan_formats`) fixed at ``Option.rows(K) - K`` extra
    points each, given to the channels by output error on ``calib``: exactly the rows the
    co-design loop prices and realizes (`hwsim.codesign.realize.option_params`)."""
    if not points:
        return state
    from hwsim.codesign.realize import point_fits
    from quant.allocate import Option

    fits = point_fits(state.graph, calib, list(points))
    fixed = {}
    for name, (wb, p) in points.items():
        k = fits.channels(name)
        fixed[name] = fits.params(name, wb, Option(wb, wb, "multipoint", weight_points=p).rows(k) - k)
    return state.replace(weight_params={**state.weight_params, **fixed})


def plan_has_points(plan: Any) -> bool:
    """Whether a `PrecisionPlan` gives any layer ``weight_points``."""
    return plan is not None and any(p.weight_points is not None
                                    for p in (plan.default, *(p for _, p in plan.entries)))


def quantize_model(model: Any, calib: Any, *, bits: int = 8, act_bits: int | None = None,
                   per_channel: bool = True, weight_family: str = "int",
                   first_last_int8: bool = False, weight_clipping: str | None = None,
                   depthwise_int8: bool = False, plan: Any = None, max_points: int = 2,
                   points_budget: float | None = None,
                   group_size: int = DEFAULT_GROUP_SIZE, calibration: str = "none",
                   groups: Any = None, reports: list | None = None) -> Any:
    """A float ``nn.Module`` quantized (a `quant.QuantizedModel`), calibrated on ``calib`` (an
    N x ... tensor): the quantization half of `quantize_zoo_model` (see it for the options).
    ``calibration``: "none", "light" or "advanced" (`quant.calibrate.pipeline`); ``groups``:
    one label per calibration sample, held out together by the pipeline; the pipeline's
    `PipelineReport` is appended to ``reports`` when given."""
    import quant

    if points_budget is not None and weight_family != "multipoint":
        raise HwsimError(f"a points budget applies to multipoint weights; the weight format is "
                         f"{weight_family!r}")
    if points_budget is not None and plan_has_points(plan):
        raise HwsimError(f"{plan.source}: the plan gives layers weight_points; a points budget "
                         f"would give them other points (use one or the other)")
    layer_weight: dict[str, Any] = {}
    layer_activation: dict[str, Any] = {}
    points: dict[str, tuple[int, float]] = {}
    if first_last_int8 or depthwise_int8 or plan is not None:
        records = [r for r in quant.capture(model, calib[:1]) if r.op in ("conv2d", "linear")]
        keep = [records[0], records[-1]] if first_last_int8 else []
        if depthwise_int8:
            keep += [r for r in records if r.op == "conv2d" and r.weight.shape[1] == 1
                     and int(r.attrs["groups"]) > 1]
        layer_weight = {r.name: weight_format("int", 8, per_channel) for r in keep}
        if plan is not None:
            planned, layer_activation = plan_formats(
                records, plan, family=weight_family, bits=bits, act_bits=act_bits or bits,
                per_channel=per_channel, clipping=weight_clipping, max_points=max_points,
                points=points, group_size=group_size)
            layer_weight.update(planned)
    config = quant.QuantConfig(
        weight=weight_format(weight_family, bits, per_channel, weight_clipping, max_points,
                             group_size),
        activation=quant.IntFormat(bits=act_bits or bits, signed=False, symmetric=False,
                                   per_channel=False),
        layer_weight=layer_weight,
        layer_activation=layer_activation,
    )
    if calibration != "none":
        if points_budget is not None or points or weight_family == "multipoint":
            raise HwsimError(f"calibration {calibration!r}: the calibration pipelines do not "
                             "apply to multipoint weights")
        from quant.calibrate import PipelineConfig, run_pipeline

        pipe = PipelineConfig(calibration, groups=groups)
        result = run_pipeline(model, dataclasses.replace(config, calibration=pipe), [calib],
                              calib[:1])
        if reports is not None:
            reports.append(result.report)
        return result.state.model()
    if points_budget is None and not points:
        return quant.quantize(model, config, [calib], example_input=calib[:1])
    from quant.model import initial_state

    state = initial_state(model, config, [calib], example_input=calib[:1])
    if points_budget is not None:
        from quant.calibrate.multipoint import assign_points

        state = assign_points(state, [calib], budget=float(points_budget))
    return plan_points_params(state, calib, points).model()


def quantize_zoo_model(model_name: str = "mobilenet_v2", *, bits: int = 8, act_bits: int | None = None,
                       per_channel: bool = True, requant: str = "dyadic",
                       accumulator_bits: int = 32, accumulator_mode: str = "wrap",
                       image_size: int = 224, engine: str | None = None,
                       weight_family: str = "int", first_last_int8: bool = False,
                       weight_clipping: str | None = None,
                       depthwise_int8: bool = False, plan: Any = None, max_points: int = 2,
                       points_budget: float | None = None,
                       group_size: int = DEFAULT_GROUP_SIZE,
                       calibration: str = "none") -> QuantizedFlow:
    """Quantize a built-in model: weights of `weight_family` ("int": signed symmetric uniform,
    "apot": additive powers of two) at `bits` bits, per channel by default; activations
    `act_bits`-bit (default: `bits`) unsigned asymmetric per tensor, min-max ranges.
    `first_last_int8`: the first and last conv/linear layers keep int8 per-channel weights (the
    usual practice for low-bit networks); `depthwise_int8`: so do the depthwise convs.
    `weight_clipping`: see `weight_format`. `engine`: compute every uniform conv/linear as that
    real engine does (see `hwsim.lower.lower`). `plan`: a `PrecisionPlan` applied on top, per
    layer (see `plan_formats`; the --first-last-int8 / --depthwise-int8 layers it names follow
    the plan). "multipoint": up to `max_points` points per channel; `points_budget` (an
    extra-row fraction, e.g. 0.1) gives the points by output error on the calibration images
    (`quant.calibrate.multipoint.assign_points`); None: every channel gets `max_points`. A plan's
    multipoint layers with ``weight_points`` get exactly the rows the co-design loop gives them
    (`plan_points_params`). "group": one scale per output channel and `group_size` input
    features (it must divide every group-wise layer's input channels). `calibration`: "none",
    "light" or "advanced" (`quant.calibrate.pipeline`; each picture of the calibration set
    and its flip are held out together)."""
    from hwsim import zoo
    from hwsim.lower import lower

    if model_name not in ZOO_MODELS:
        raise HwsimError(f"unknown model {model_name!r}; built-in models: {', '.join(ZOO_MODELS)}")
    model = getattr(zoo, model_name)()
    model.eval()
    calib = zoo.sample_images("calib", size=image_size)  # 14 pictures, each with its flip
    evals = zoo.sample_images("eval", size=image_size)
    reports: list = []
    qm = quantize_model(model, calib, bits=bits, act_bits=act_bits, per_channel=per_channel,
                        weight_family=weight_family, first_last_int8=first_last_int8,
                        weight_clipping=weight_clipping, depthwise_int8=depthwise_int8,
                        plan=plan, max_points=max_points, points_budget=points_budget,
                        group_size=group_size, calibration=calibration,
                        groups=[i // 2 for i in range(len(calib))], reports=reports)
    suffix = "" if weight_family == "int" else f"_{weight_family}"
    program = lower(qm, requant=requant, accumulator_bits=accumulator_bits,
                    accumulator_mode=accumulator_mode, name=f"{model_name}_w{bits}{suffix}",
                    engine=engine)
    report = reports[0] if reports else None
    return QuantizedFlow(model_name, qm, program, calib, evals,
                         report.to_text() if report else "",
                         report.seconds if report else None)
