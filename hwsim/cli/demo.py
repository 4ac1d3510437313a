"""``hwsim demo``: the mission on built-in data, in two stages.

1. MobileNetV2 (ImageNet weights) quantized to int8 per channel, lowered to an integer program,
   run bit-accurately, verified against the fake-quant and float models, and costed on an int8
   accelerator (``--hw``, default hw_configs/int8_systolic.yaml).
2. Co-design: the same network allocated per layer against a mixed-precision accelerator
   (``--mixed-hw``, default hw_configs/loom.yaml, a bit-serial array whose latency falls with
   both widths) under a latency budget (``--latency-budget``, a fraction of uniform W8A8's),
   the plan quantized, executed bit-accurately, verified and costed beside uniform W8A8.
   ``--plan-out`` saves the plan for ``hwsim verify/simulate --plan``; ``--no-codesign`` skips
   the stage.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hwsim.cli.commands import (COST_COLUMNS, _accelerator, _check_outputs, _int_columns_nullable,
                                _print_verification, _progress, _quantize_and_verify, _quiet,
                                _warn, check_input_file)
from hwsim.cli.output import (check_output_path, print_summary, print_table, print_written,
                              save_results)
from hwsim.errors import HwsimError

DEFAULT_MIXED_HW = Path(__file__).resolve().parents[2] / "hw_configs" / "loom.yaml"
DEFAULT_LATENCY_BUDGET = 0.75
#: the per-layer choices of the co-design stage: int weights and activations, 5..8 bits
CODESIGN_OPTIONS = ("w8a8", "w6a8", "w5a8", "w4a8", "w8a6", "w6a6", "w8a5", "w5a6")


def add_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--mixed-hw", metavar="CONFIG", default=None,
                    help="the mixed-precision accelerator of the co-design stage (default "
                         "hw_configs/loom.yaml)")
    sp.add_argument("--latency-budget", type=float, default=DEFAULT_LATENCY_BUDGET,
                    metavar="FRACTION",
                    help="the co-design stage's latency budget as a fraction of uniform W8A8's "
                         f"latency on --mixed-hw (default {DEFAULT_LATENCY_BUDGET})")
    sp.add_argument("--plan-out", metavar="FILE", default=None,
                    help="save the co-design plan (JSON; `hwsim verify/simulate --plan` read it)")
    sp.add_argument("--no-codesign", action="store_true",
                    help="skip the co-design stage (int8 only)")


def demo(args: argparse.Namespace) -> int:
    from hwsim.cost import cost_network
    from hwsim.workloads import program_workload

    args.bits, args.act_bits, args.per_tensor = 8, 8, False
    args.weight_format, args.first_last_int8, args.weight_clipping = "int", False, None
    args.depthwise_int8, args.plan = False, None
    args.requant, args.acc_bits, args.acc_mode = "dyadic", 32, "wrap"
    _check_outputs(args)
    check_output_path("--plan-out", args.plan_out)
    if not 0.0 < args.latency_budget <= 1.0:
        raise HwsimError(f"--latency-budget {args.latency_budget}: expected a fraction in (0, 1] "
                         "of uniform W8A8's latency")
    with _progress(args, 3) as steps:
        accel = _accelerator(args)  # a bad --hw fails before the quantization, not after
        mixed = None if args.no_codesign else _mixed_accelerator(args)
        flow, report = _quantize_and_verify(args, "mobilenet_v2", steps)
        steps.set_description("cost")
        result = cost_network(accel, program_workload(flow.program),
                              convention=args.convention or "torch")
        steps.update()
    summary = {**report.summary, "accelerator": accel.name, **result.totals()}
    merged = _int_columns_nullable(report.per_layer).merge(
        _int_columns_nullable(result.per_layer), left_on="layer", right_on="name", how="left")
    _warn("demo", report.warnings)
    if not _quiet(args):
        print("hwsim demo: MobileNetV2 (ImageNet weights) -> int8 per-channel -> integer "
              "program\n")
        print("Verification, per layer (integer program vs fake-quant in LSBs; vs float: SQNR, "
              "cosine)")
        _print_verification(args, report)
        print(f"\nCost on {accel.name}, per layer")
        print_table(result.per_layer, COST_COLUMNS)
    print_summary("Summary", summary)
    written = []
    if mixed is not None:
        codesign = _codesign_stage(args, mixed, flow)
        summary["codesign"] = codesign
    written += save_results(merged, summary, csv_path=args.csv, json_path=args.json)
    if not _quiet(args):
        print_written(written + ([args.plan_out] if args.plan_out and mixed is not None else []))
    return 0


def _mixed_accelerator(args: argparse.Namespace):
    from hwsim.arch import load_accelerator

    if args.mixed_hw is not None:
        check_input_file("--mixed-hw", args.mixed_hw, "an accelerator config (.yaml)")
    return load_accelerator(args.mixed_hw or str(DEFAULT_MIXED_HW))


def _codesign_stage(args: argparse.Namespace, accel, flow) -> dict:
    """Allocate, realize and verify the plan and uniform W8A8 on ``accel``; print the table;
    return the figures for the JSON summary."""
    from hwsim.cli.allocate import parse_option, print_plan_vs_base
    from hwsim.codesign import prepare

    options = [parse_option(o) for o in CODESIGN_OPTIONS]
    evals = flow.eval_images if args.images is None else flow.eval_images[:args.images]
    if not _quiet(args):
        print(f"\nhwsim demo, co-design: per-layer precisions for MobileNetV2 on {accel.name} "
              f"under latency <= {args.latency_budget:g}x of uniform W8A8 (options "
              f"{', '.join(o.upper() for o in CODESIGN_OPTIONS)}; sensitivity: empirical Fisher "
              f"on the calibration images; exact MILP)")
    problem = prepare(flow.model_name, accel, options, calib=flow.calib_images, eval_images=evals)
    plan = problem.solve({"latency_cycles": ("x", args.latency_budget)})
    base = problem.uniform(options[0])
    if args.plan_out:
        plan.save(args.plan_out)
    print_plan_vs_base(args, flow.model_name, accel, plan, base)

    def figures(r) -> dict:
        pvs = r.predicted_vs_simulated()
        return {"latency_ms": r.simulated.latency_s * 1e3,
                "energy_uj": r.simulated.energy_total_pj / 1e6,
                "size_mbit": r.predicted["size_bits"] / 1e6,
                "sqnr_db": r.fidelity["sqnr_db"], "top1_agreement": r.fidelity["top1_agreement"],
                "predicted_equals_simulated": all(pvs[k]["equal"]
                                                  for k in ("latency_cycles", "energy_pj")),
                "options": {o.label: sum(1 for n in r.layers if r.chosen[n] == o)
                            for o in options if any(r.chosen[n] == o for n in r.layers)}}

    return {"accelerator": accel.name, "latency_budget": args.latency_budget,
            "uniform_w8a8": figures(base), "plan": figures(plan)}
