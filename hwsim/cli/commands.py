"""One function per CLI command; each calls the Python API and prints/saves its results.

Every command checks its files first (inputs readable, output paths writable), computes, writes
the --csv/--json files, and only then prints: a closed stdout (`| head`) loses nothing.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from hwsim.cli.main import N_EVAL_IMAGES, RANDOM_WEIGHTS_NOTE, ZOO_WEIGHTS
from hwsim.cli.output import (check_output_path, describe_os_error, print_summary,
                              print_table, print_written, save_results, write_text)
from hwsim.errors import HwsimError
from hwsim.flows import DEFAULT_GROUP_SIZE

COST_COLUMNS = ["name", "unit", "weight_bits", "act_bits", "macs", "compute_cycles", "stall_cycles", "total_cycles",
                "utilization", "energy_compute_pj", "energy_total_pj"]
VERIFY_COLUMNS = ["layer", "op", "shape", "max_lsb_diff", "mismatch_pct", "max_lsb_diff_e2e",
                  "sqnr_db", "cosine", "overflows"]
VERIFY_LEGEND = ("max_lsb_diff / mismatch_pct: the layer alone, fed the fake-quant model's "
                 "inputs, vs the fake-quant model (codes).\nmax_lsb_diff_e2e: the whole integer "
                 "program vs the fake-quant model. sqnr_db / cosine: the integer program vs float.")
DEFAULT_HW = Path(__file__).resolve().parents[2] / "hw_configs" / "int8_systolic.yaml"
PROGRAM_SUFFIXES = (".json", ".npz")


def _quiet(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "quiet", False))


def check_input_file(flag: str, path: str, what: str) -> None:
    """`path` (the value of `flag`) must be a readable file holding `what`."""
    p = Path(path)
    if not str(path).strip():
        raise HwsimError(f"{flag}: empty path; expected {what}")
    if p.is_dir():
        raise HwsimError(f"{flag} {path}: is a directory; expected {what}")
    if not p.exists():
        raise HwsimError(f"{flag} {path}: no such file; expected {what}")
    try:
        with open(p, "rb"):
            pass
    except OSError as exc:
        raise HwsimError(f"{flag} {path}: cannot read: {describe_os_error(exc)}") from None


def _check_outputs(args: argparse.Namespace) -> None:
    check_output_path("--csv", args.csv)
    check_output_path("--json", args.json)
    check_output_path("--mapping-out", getattr(args, "mapping_out", None))
    if getattr(args, "save_program", None) is not None:
        check_output_path("--save-program", args.save_program)
        base = Path(args.save_program)
        base = base.with_suffix("") if base.suffix in PROGRAM_SUFFIXES else base
        for suffix in PROGRAM_SUFFIXES:
            check_output_path("--save-program", base.with_suffix(suffix))


def _accelerator(args: argparse.Namespace):
    from hwsim.arch import load_accelerator

    if args.hw is not None:
        check_input_file("--hw", args.hw, "an accelerator config (.yaml or SCALE-Sim .cfg)")
    return load_accelerator(args.hw or str(DEFAULT_HW), args.overrides)


def _cost_and_report(args, accel, layers, default_convention: str, title: str,
                     uncosted: list[dict] | None = None) -> int:
    """Cost `layers`, write --csv/--json/--mapping-out, print the table and summary.
    `uncosted`: the model's nodes the cost model leaves out (`_uncosted_nodes`), None for a
    shapes-only workload: one line after the summary, and the list (key ``uncosted``) in --json."""
    from hwsim.cost import cost_network

    convention = args.convention or default_convention
    mappings = None
    if args.mapping is not None:
        from hwsim.mapping.files import load_mappings

        check_input_file("--mapping", args.mapping, "a mapping file (YAML or JSON)")
        mappings = load_mappings(args.mapping, [layer.name for layer in layers],
                                 hierarchy=accel.hierarchy)
    result = cost_network(accel, layers, convention=convention, mappings=mappings,
                          objective=args.objective, source=str(args.mapping or "<mappings>"))
    summary = {"accelerator": accel.name, "layers": len(layers), "convention": convention,
               "objective": args.objective, **result.totals()}
    written = save_results(result.per_layer, summary, csv_path=args.csv,
                           json_path=args.json if uncosted is None else None)
    if uncosted is not None and args.json:
        _write_json_with_uncosted(args.json, result.per_layer, summary, uncosted)
        written.append(str(args.json))
    if args.mapping_out is not None:
        from hwsim.mapping.files import dump_mappings, mappings_document

        document = mappings_document(accel.name, args.objective,
                                     [layer.name for layer in layers], result.mappings())
        write_text("--mapping-out", args.mapping_out,
                   dump_mappings(document, Path(args.mapping_out).suffix))
        written.append(str(args.mapping_out))
    if not _quiet(args):
        print_table(result.per_layer, COST_COLUMNS)
    print_summary(title, summary)
    if uncosted:
        print(uncosted_line(uncosted))
    if not _quiet(args):
        print_written(written)
    return 0


#: at most this many op names in the "not costed" line; the rest are counted
UNCOSTED_OPS_SHOWN = 6


def uncosted_line(uncosted: list[dict]) -> str:
    """One line for the nodes the cost model left out, e.g. ``not costed (vector unit / data
    movement): 12 nodes - add x10, activation_lut x2 (reasons: --json)``."""
    counts: dict[str, int] = {}
    for node in uncosted:
        counts[node["op"]] = counts.get(node["op"], 0) + 1
    ops = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = ", ".join(f"{op} x{n}" for op, n in ops[:UNCOSTED_OPS_SHOWN])
    if len(ops) > UNCOSTED_OPS_SHOWN:
        shown += f", {len(ops) - UNCOSTED_OPS_SHOWN} more ops"
    nodes = f"{len(uncosted)} node{'s' if len(uncosted) != 1 else ''}"
    return f"not costed (vector unit / data movement): {nodes} - {shown} (reasons: --json)"


def _write_json_with_uncosted(path: str, per_layer: pd.DataFrame, summary: dict,
                              uncosted: list[dict]) -> None:
    """`save_results`' --json document plus ``uncosted``: ``{"nodes": N, "ops": {op: count},
    "list": [{"name", "op", "reason"}, ...]}`` in program (graph) order."""
    import json

    from hwsim.cli.output import _jsonable

    counts: dict[str, int] = {}
    for node in uncosted:
        counts[node["op"]] = counts.get(node["op"], 0) + 1
    doc = {"summary": _jsonable(summary),
           "per_layer": _jsonable(per_layer.to_dict(orient="records")),
           "uncosted": {"nodes": len(uncosted), "ops": counts, "list": uncosted}}
    write_text("--json", path, json.dumps(doc, indent=1))


def _program_uncosted(program) -> list[dict]:
    """The nodes of an integer program the cost model leaves out
    (`hwsim.workloads.program.uncosted_ops`), each with its op and why."""
    from hwsim.workloads.program import uncosted_ops

    reasons = uncosted_ops(program)
    return [{"name": node.name, "op": node.op, "reason": reasons[node.op]}
            for node in program.nodes() if node.op in reasons]


ONNX_NO_WEIGHTS = ("does no MACs on weights (a vector-unit or data-movement op); the cost model "
                   "prices the Conv / Gemm / MatMul layers with weights")
ONNX_TWO_ACTIVATIONS = ("a product of two activations (no weights); the cost model prices the "
                        "layers with weights")


def _onnx_uncosted(model: str) -> list[dict]:
    """The nodes of an ONNX model `load_onnx_workload` makes no layer of (Constant nodes aside),
    each with its op type and why."""
    from hwsim.onnx._model import load_model
    from hwsim.onnx.workload import _DENSE, _weight_tensors

    onnx_model = load_model(model)
    weights = _weight_tensors(onnx_model)
    out = []
    for node in onnx_model.graph.node:
        default = node.domain in ("", "ai.onnx")
        if default and (node.op_type in ("Conv", "ConvTranspose", "Constant") or (
                node.op_type in _DENSE and len(node.input) > 1 and node.input[1] in weights)):
            continue
        op = node.op_type if default else f"{node.domain}:{node.op_type}"
        reason = (f"an op of domain {node.domain!r}, which the cost model does not know"
                  if not default else
                  ONNX_TWO_ACTIVATIONS if node.op_type in _DENSE else ONNX_NO_WEIGHTS)
        name = node.name or (node.output[0] if node.output else "?")
        out.append({"name": name, "op": op, "reason": reason})
    return out


def _simulate_layers(args: argparse.Namespace):
    """The layers `--model` names (a built-in workload, a saved program or an ONNX model) and
    the model's nodes the cost model leaves out (None for a built-in, shapes-only workload)."""
    from hwsim.workloads import builtin_workload, builtin_workload_names

    model = args.model
    suffix = Path(model).suffix.lower()
    if suffix in PROGRAM_SUFFIXES:
        from hwsim.ir import load_program
        from hwsim.workloads import program_workload

        base = Path(model).with_suffix("")
        for s in PROGRAM_SUFFIXES:
            check_input_file("--model", str(base) + s,
                             "a saved integer program (a .json and .npz pair)")
        program = load_program(model)
        return program_workload(program, batch=args.batch), _program_uncosted(program)
    if suffix == ".onnx":  # a float (or QDQ) ONNX model: its conv / gemm / matmul layers
        from hwsim.onnx import load_onnx_workload

        check_input_file("--model", model, "an ONNX model")
        _check_onnx_batch(model, args.batch)
        return load_onnx_workload(model, batch=args.batch), _onnx_uncosted(model)
    names = builtin_workload_names()
    if model in names:
        return builtin_workload(model, batch=args.batch), None
    kind = "is a directory" if os.path.isdir(model) else (
        "is a file of an unknown type" if os.path.exists(model) else "is unknown")
    raise HwsimError(f"--model {model}: {kind}; expected a built-in workload ({', '.join(names)}), "
                     "a saved integer program (.json/.npz) or an ONNX model (.onnx)")


def _check_onnx_batch(model: str, batch: int) -> None:
    """--batch N on a model whose input has a static batch other than N would cost the model's
    batch, not N: refuse it."""
    from hwsim.onnx._model import load_model

    onnx_model = load_model(model)
    value = onnx_model.graph_input()
    dims = value.type.tensor_type.shape.dim
    if batch != 1 and dims and dims[0].HasField("dim_value") and dims[0].dim_value != batch:
        raise HwsimError(f"--batch {batch}: {model} has a static batch of {dims[0].dim_value} "
                         f"(input {value.name!r}); export it with a dynamic batch dimension to "
                         "cost other batch sizes")


def _with_precision(args: argparse.Namespace, layers):
    """`layers` at the uniform --bits/--act-bits/--weight-format, then the --plan file's
    per-layer precisions. A multipoint layer whose plan entry gives ``weight_points`` becomes
    its integer form, ``Option.rows(K)`` rows of a b-bit int layer
    (`hwsim.workloads.multipoint.rows_layer_shape`), as the allocator prices it
    (`hwsim.codesign.costs`); one without points is refused (its rows depend on the weights).
    A group layer is the same int layer plus its per-(channel, group) multipliers in the weight
    traffic, for --group-size input features per group (`hwsim.workloads.group`)."""
    from dataclasses import replace

    uniform = {key: value for key, value in (("weight_bits", args.bits),
                                             ("act_bits", args.act_bits),
                                             ("weight_format", args.weight_format))
               if value is not None}
    if uniform:
        layers = [replace(layer, **uniform) for layer in layers]
    precisions = [None] * len(layers)
    if args.plan is not None:
        from hwsim.workloads.plan import load_plan

        check_input_file("--plan", args.plan, "a precision plan (YAML or JSON)")
        plan = load_plan(args.plan)
        precisions = plan.resolve([layer.name for layer in layers])
        layers = [p.apply(layer) for layer, p in zip(layers, precisions)]
    saved_program = Path(str(getattr(args, "model", ""))).suffix.lower() in PROGRAM_SUFFIXES
    out = []
    for layer, p in zip(layers, precisions):
        if layer.weight_format == "multipoint" and saved_program:
            # A saved program's layers already have their rows (one per point): extra rows
            # from a plan would be counted twice.
            raise HwsimError(f"--model {args.model}: layer {layer.name!r} is given multipoint "
                             "weights, but a saved program's weights are fixed (a multipoint "
                             "program already holds its extra rows); cost the program as saved")
        if layer.weight_format == "multipoint":
            rows = None if p is None else p.weight_rows(layer.out_channels)
            if rows is None:
                planned = p is not None and p.weight_format == "multipoint"
                where = f"--plan {args.plan}" if planned else "--weight-format"
                hint = ("give its plan entry weight_points (weight rows per output channel, as "
                        "`hwsim allocate --out` writes) or " if planned else "")
                raise HwsimError(f"{where}: layer {layer.name!r} has multipoint weights, whose "
                                 f"extra rows depend on the weights; {hint}cost a saved "
                                 "multipoint program instead (`hwsim verify --weight-format "
                                 "multipoint --save-program P`, then --model P.json)")
            from hwsim.workloads.multipoint import rows_layer_shape

            layer = rows_layer_shape(replace(layer, weight_format="int"), rows)
        if layer.weight_format == "group":
            from hwsim.workloads.group import group_layer_shape

            size = getattr(args, "group_size", None) or DEFAULT_GROUP_SIZE
            layer = group_layer_shape(layer, size)
        out.append(layer)
    return out


def simulate(args: argparse.Namespace) -> int:
    _check_outputs(args)
    accel = _accelerator(args)
    layers, uncosted = _simulate_layers(args)
    layers = _with_precision(args, layers)
    return _cost_and_report(args, accel, layers, "torch", f"{args.model} on {accel.name}",
                            uncosted)


def cost(args: argparse.Namespace) -> int:
    from hwsim.workloads import load_topology_csv

    _check_outputs(args)
    accel = _accelerator(args)
    check_input_file("--topology", args.topology, "a SCALE-Sim topology CSV")
    layers = _with_precision(args, load_topology_csv(args.topology))
    return _cost_and_report(args, accel, layers, "scalesim", f"{args.topology} on {accel.name}")


def _quantize_and_verify(args: argparse.Namespace, model: str, steps: tqdm):
    from hwsim.flows import quantize_zoo_model
    from hwsim.verify import verify as run_verify

    source = _model_inputs(args)
    plan = None
    if args.plan is not None:
        from hwsim.workloads.plan import load_plan

        check_input_file("--plan", args.plan, "a precision plan (YAML or JSON)")
        plan = load_plan(args.plan)
    steps.set_description("quantize + lower")
    flow = quantize_zoo_model(model, bits=args.bits, act_bits=args.act_bits, plan=plan,
                              per_channel=not args.per_tensor, requant=args.requant,
                              accumulator_bits=args.acc_bits, accumulator_mode=args.acc_mode,
                              engine=getattr(args, "engine", None),
                              weight_family=args.weight_format,
                              first_last_int8=args.first_last_int8,
                              weight_clipping=args.weight_clipping,
                              depthwise_int8=args.depthwise_int8,
                              max_points=getattr(args, "max_points", None) or 2,
                              points_budget=getattr(args, "points_budget", None),
                              group_size=getattr(args, "group_size", None) or DEFAULT_GROUP_SIZE,
                              calibration=getattr(args, "calibration", None) or "none")
    steps.update()
    steps.set_description("execute + verify")
    report = run_verify(flow.qm, flow.program, flow.eval_images if source is None else source,
                        backend=args.backend, limit=args.images)
    steps.update()
    return flow, report


def _model_inputs(args: argparse.Namespace):
    """`--inputs` of `verify --model` as a bounded-memory image source (None: the zoo's
    evaluation images), checked before any quantizing."""
    inputs = getattr(args, "inputs", None)
    if inputs is None:
        if args.images is not None and not 1 <= args.images <= N_EVAL_IMAGES:
            raise HwsimError(f"--images must be in [1, {N_EVAL_IMAGES}] (the zoo's evaluation "
                             f"images), got {args.images}")
        return None
    from hwsim.datasets import image_source

    try:
        source = image_source(inputs)
    except HwsimError as exc:
        raise HwsimError(f"--inputs {exc}") from None
    if source.sample_shape != (3, 224, 224):
        raise HwsimError(f"--inputs {inputs}: expected images of shape (N, 3, 224, 224) like the "
                         f"zoo models' input; got (N, {', '.join(map(str, source.sample_shape))})")
    if args.images is not None and args.images > len(source):
        raise HwsimError(f"--images {args.images}: only {len(source)} inputs in --inputs {inputs}")
    return source


def _progress(args: argparse.Namespace, total: int) -> tqdm:
    return tqdm(total=total, unit="step", leave=False, disable=True if _quiet(args) else None)


def _warn(command: str, warnings: list[str]) -> None:
    for w in warnings:
        print(f"hwsim {command}: warning: {w}", file=sys.stderr)


def _print_verification(args: argparse.Namespace, report) -> None:
    if not _quiet(args):
        print(VERIFY_LEGEND)
        print_table(report.per_layer, VERIFY_COLUMNS)


def verify(args: argparse.Namespace) -> int:
    if args.onnx is not None:
        return _verify_onnx(args)
    _check_outputs(args)
    model = args.model or "mobilenet_v2"
    with _progress(args, 2) as steps:
        flow, report = _quantize_and_verify(args, model, steps)
    summary = {"model": model, "weights": ZOO_WEIGHTS.get(model, "?"), **report.summary}
    if flow.calibration_seconds is not None:
        summary["calibration"] = args.calibration
        summary["calibration_seconds"] = round(flow.calibration_seconds, 1)
    if report.warnings:
        summary["warnings"] = list(report.warnings)
    saved = _save_program(args, flow.program)
    written = save_results(report.per_layer, summary, csv_path=args.csv, json_path=args.json)
    _warn("verify", report.warnings)
    if flow.calibration_report and not _quiet(args):
        print(flow.calibration_report)
    _print_verification(args, report)
    _print_acc_report(args, flow.program, lambda: flow.qm.quantize_input(flow.calib_images),
                      "the calibration images")
    print_summary(f"{model}: integer program vs fake-quant vs float",
                  {k: v for k, v in summary.items() if k != "warnings"})  # on stderr already
    if ZOO_WEIGHTS.get(model, "").startswith("random"):
        print(f"note: {RANDOM_WEIGHTS_NOTE.format(model=model)}")
    if not _quiet(args):
        print_written(saved + written)
    return 0


def _verify_onnx(args: argparse.Namespace) -> int:
    from hwsim.onnx.verify import COLUMNS, check_engine, verify_onnx

    check_engine(args.engine)
    _check_outputs(args)
    check_input_file("--onnx", args.onnx, "an int8 ONNX model (.onnx)")
    if args.inputs is not None:
        check_input_file("--inputs", args.inputs, "a .npy file of float inputs")
    result = verify_onnx(args.onnx, args.inputs, images=args.images, backend=args.backend)
    saved = _save_program(args, result.program)
    written = save_results(result.per_layer, result.summary, csv_path=args.csv,
                           json_path=args.json)
    if not _quiet(args):
        print("hwsim vs ONNX Runtime, per layer (codes; sqnr_db: hwsim's dequantized codes vs "
              "ORT's)")
        print_table(result.per_layer, COLUMNS)
    _print_acc_report(args, result.program, lambda: result.codes, "the verified inputs")
    print_summary(f"{args.onnx}: hwsim vs ONNX Runtime", result.summary)
    if not _quiet(args):
        print_written(saved + written)
    return 0


def _print_acc_report(args: argparse.Namespace, program, input_codes, what: str) -> None:
    """--acc-report (on `input_codes()`, described as `what`): printed even with --quiet,
    since it was asked for."""
    if args.acc_report:
        from hwsim.analysis import accumulator_report

        table = accumulator_report(program, input_codes())
        print(f"\nAccumulator widths (bits, two's complement) on {what}")
        print_table(table, ["node", "reduction_length", "never_overflow_bits", "needed_bits",
                            "headroom_bits", "configured_bits", "configured_overflows"])


def _save_program(args: argparse.Namespace, program) -> list[str]:
    """--save-program: write PATH.json and PATH.npz; return what was written."""
    if not args.save_program:
        return []
    from hwsim.ir import save_program

    try:
        path = save_program(program, args.save_program)
    except HwsimError as exc:
        raise HwsimError(f"--save-program {args.save_program}: {exc}") from None
    return [f"{path} (and {path.with_suffix('.npz').name}: the integer program)"]


def _int_columns_nullable(df: pd.DataFrame) -> pd.DataFrame:
    """Integer (and bool) columns as pandas' nullable dtypes, so a left merge that misses a row
    keeps them integer (<NA>, written as an empty CSV cell / JSON null) instead of float."""
    out = df.copy()
    for col in out.columns:
        if pd.api.types.is_bool_dtype(out[col]):
            out[col] = out[col].astype("boolean")
        elif pd.api.types.is_integer_dtype(out[col]):
            out[col] = out[col].astype("Int64")
    return out
