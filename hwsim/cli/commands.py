"""One function per CLI command; each calls the Python API and prints/saves its results."""
from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from hwsim.cli.output import print_summary, print_table, save_results
from hwsim.errors import HwsimError

COST_COLUMNS = ["name", "unit", "macs", "compute_cycles", "stall_cycles", "total_cycles",
                "utilization", "energy_compute_pj", "energy_total_pj"]
DEFAULT_HW = Path(__file__).resolve().parents[2] / "hw_configs" / "int8_systolic.yaml"


def _accelerator(args: argparse.Namespace):
    from hwsim.arch import load_accelerator

    path = args.hw or str(DEFAULT_HW)
    return load_accelerator(path, args.overrides)


def _cost_and_report(args, accel, layers, default_convention: str, title: str) -> int:
    from hwsim.cost import cost_network

    convention = args.convention or default_convention
    result = cost_network(accel, layers, convention=convention)
    print_table(result.per_layer, COST_COLUMNS)
    summary = {"accelerator": accel.name, "layers": len(layers), "convention": convention,
               **result.totals()}
    print_summary(title, summary)
    save_results(result.per_layer, summary, csv_path=args.csv, json_path=args.json)
    return 0


def simulate(args: argparse.Namespace) -> int:
    from hwsim.workloads import builtin_workload

    accel = _accelerator(args)
    model = args.model
    if model.endswith((".json", ".npz")):
        from hwsim.flows import program_workload
        from hwsim.ir import load_program

        layers = program_workload(load_program(model), batch=args.batch)
    elif model.endswith(".onnx"):  # a float (or QDQ) ONNX model: its conv / gemm / matmul layers
        from hwsim.onnx import load_onnx_workload

        layers = load_onnx_workload(model, batch=args.batch)
    else:
        layers = builtin_workload(model, batch=args.batch)
    return _cost_and_report(args, accel, layers, "torch", f"{model} on {accel.name}")


def cost(args: argparse.Namespace) -> int:
    from hwsim.workloads import load_topology_csv

    accel = _accelerator(args)
    layers = load_topology_csv(args.topology)
    return _cost_and_report(args, accel, layers, "scalesim", f"{args.topology} on {accel.name}")


def _quantize_and_verify(args: argparse.Namespace, model: str, steps: tqdm):
    from hwsim.flows import quantize_zoo_model
    from hwsim.verify import verify as run_verify

    if args.images is not None and args.images < 1:
        raise HwsimError(f"--images must be at least 1, got {args.images}")
    steps.set_description("quantize + lower")
    flow = quantize_zoo_model(model, bits=args.bits, act_bits=args.act_bits,
                              per_channel=not args.per_tensor, requant=args.requant,
                              accumulator_bits=args.acc_bits, accumulator_mode=args.acc_mode,
                              engine=getattr(args, "engine", None),
                              weight_family=args.weight_format,
                              first_last_int8=args.first_last_int8,
                              weight_clipping=args.weight_clipping,
                              depthwise_int8=args.depthwise_int8)
    steps.update()
    steps.set_description("execute + verify")
    evals = flow.eval_images if args.images is None else flow.eval_images[: args.images]
    report = run_verify(flow.qm, flow.program, evals, backend=args.backend)
    steps.update()
    return flow, report


def verify(args: argparse.Namespace) -> int:
    if args.onnx is not None:
        return _verify_onnx(args)
    if args.inputs is not None:
        raise HwsimError("--inputs applies to --onnx; --model verifies on the zoo's evaluation "
                         "images (see --images)")
    with tqdm(total=2, unit="step", leave=False, disable=None) as steps:
        flow, report = _quantize_and_verify(args, args.model or "mobilenet_v2", steps)
    print(report.to_text())
    _verify_extras(args, flow.program, lambda: flow.qm.quantize_input(flow.calib_images),
                   "the calibration images")
    save_results(report.per_layer, report.summary, csv_path=args.csv, json_path=args.json)
    return 0


def _verify_onnx(args: argparse.Namespace) -> int:
    from hwsim.onnx.verify import COLUMNS, check_engine, verify_onnx

    check_engine(args.engine)
    result = verify_onnx(args.onnx, args.inputs, images=args.images, backend=args.backend)
    print("hwsim vs ONNX Runtime, per layer (codes; sqnr_db: hwsim's dequantized codes vs ORT's)")
    print_table(result.per_layer, COLUMNS)
    print_summary(f"{args.onnx}: hwsim vs ONNX Runtime", result.summary)
    _verify_extras(args, result.program, lambda: result.codes, "the verified inputs")
    save_results(result.per_layer, result.summary, csv_path=args.csv, json_path=args.json)
    return 0


def _verify_extras(args: argparse.Namespace, program, input_codes, what: str) -> None:
    """--acc-report (on `input_codes()`, described as `what`) and --save-program."""
    if args.acc_report:
        from hwsim.analysis import accumulator_report

        table = accumulator_report(program, input_codes())
        print(f"\nAccumulator widths (bits, two's complement) on {what}")
        print_table(table, ["node", "reduction_length", "never_overflow_bits", "needed_bits",
                            "headroom_bits", "configured_bits", "configured_overflows"])
    if args.save_program:
        from hwsim.ir import save_program

        print(f"saved integer program to {save_program(program, args.save_program)}")


def demo(args: argparse.Namespace) -> int:
    from hwsim.cost import cost_network
    from hwsim.flows import program_workload

    args.bits, args.act_bits, args.per_tensor = 8, 8, False
    args.weight_format, args.first_last_int8, args.weight_clipping = "int", False, None
    args.depthwise_int8 = False
    args.requant, args.acc_bits, args.acc_mode = "dyadic", 32, "wrap"
    print("hwsim demo: MobileNetV2 (ImageNet weights) -> int8 per-channel -> integer program\n")
    with tqdm(total=3, unit="step", leave=False, disable=None) as steps:
        flow, report = _quantize_and_verify(args, "mobilenet_v2", steps)
        steps.set_description("cost")
        accel = _accelerator(args)
        result = cost_network(accel, program_workload(flow.program),
                              convention=args.convention or "torch")
        steps.update()
    print("Verification, per layer (integer program vs fake-quant in LSBs; vs float: SQNR, cosine)")
    print(report.to_text())
    print(f"\nCost on {accel.name}, per layer")
    print_table(result.per_layer, COST_COLUMNS)
    summary = {**report.summary, "accelerator": accel.name, **result.totals()}
    print_summary("Summary", summary)
    merged = report.per_layer.merge(result.per_layer, left_on="layer", right_on="name", how="left")
    save_results(merged, summary, csv_path=args.csv, json_path=args.json)
    return 0
