"""``hwsim allocate``: choose per-layer precisions against the target accelerator.

Flags are parsed here (budgets such as ``latency=0.5x``, options such as ``int:w4a8`` or
``multipoint:w4x1.25a8``); the work is `hwsim.codesign` (sensitivity + accelerator cost tables
-> solver -> quantize -> lower -> verify -> cost). Writes the plan (``--out``, readable by
``simulate --plan`` and ``verify --plan``), optionally the realized integer program
(``--save-program``: what ``simulate --model P.json`` prices, multipoint layers included), a
JSON report and plots, and prints the plan beside the uniform base network.

A multipoint option ``multipoint:wBxPaA`` (Liu et al., "Post-training Quantization with Multiple
Points: Mixed Precision without Mixed Precision", AAAI 2021) gives a layer of K output channels
``K + round((P - 1) K)`` B-bit weight rows (its extra points go to the channels with the largest
output error), priced as that many rows of a B-bit int layer; ``multipoint:wBaA`` is P = 1.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from hwsim.errors import HwsimError

#: short budget names on the command line -> the cost model's resources
RESOURCE_ALIASES = {"latency": "latency_cycles", "energy": "energy_pj", "size": "size_bits",
                    "bops": "bops", "dram": "dram_bytes", "compute": "compute_cycles"}
DEFAULT_OPTIONS = ("int:w8a8", "int:w4a8", "int:w8a4", "int:w4a4", "int:w2a8")
_OPTION = re.compile(r"^(?:(?P<family>[a-z][a-z0-9_]*):)?w(?P<w>\d+)"
                     r"(?:x(?P<p>\d+(?:\.\d*)?|\.\d+))?a(?P<a>\d+)$")


def parse_budget(text: str) -> tuple[str, str]:
    """``"latency=0.5x"`` -> ``("latency_cycles", "0.5x")``; `HwsimError` naming --budget."""
    name, sep, value = text.partition("=")
    resource = RESOURCE_ALIASES.get(name.strip(), name.strip())
    known = sorted(set(RESOURCE_ALIASES) | set(RESOURCE_ALIASES.values()))
    if not sep or not value.strip() or resource not in RESOURCE_ALIASES.values():
        raise HwsimError(f"--budget {text}: expected RESOURCE=LIMIT with RESOURCE one of "
                         f"{known} and LIMIT a number or a ratio of the uniform base like 0.5x")
    return resource, value.strip()


def parse_option(text: str):
    """``"int:w4a8"`` or ``"w4a8"`` (int) or ``"apot:w4a8"`` or ``"multipoint:w4x1.25a8"``
    (4-bit points, 1.25 rows per output channel on average) -> a `quant.allocate.Option`."""
    from quant.allocate import Option
    from quant.errors import QuantError

    match = _OPTION.match(text.strip().lower())
    if match is None:
        raise HwsimError(f"--options {text}: expected [FAMILY:]wBITSaBITS, e.g. int:w4a8 or "
                         f"apot:w4a8, or multipoint:wBITSxPOINTSaBITS, e.g. "
                         f"multipoint:w4x1.25a8")
    family = match["family"] or "int"
    if match["p"] is not None and family != "multipoint":
        raise HwsimError(f"--options {text}: xPOINTS (weight rows per output channel) applies "
                         f"to multipoint options only, e.g. multipoint:w4x1.25a8")
    try:
        return Option(int(match["w"]), int(match["a"]), family, "int",
                      weight_points=float(match["p"] or 1))
    except QuantError as exc:
        raise HwsimError(f"--options {text}: {exc}") from None


def add_parser(command) -> None:
    """Register ``allocate`` (``command(name, help, description)`` makes a subparser)."""
    sp = command("allocate", "choose per-layer precisions under latency / energy / size budgets "
                              "priced on the accelerator",
                  "Sensitivity of every layer at every option, costs of every (layer, option) "
                  "pair on the accelerator, an exact allocation under the budgets, then the "
                  "plan quantized, lowered, run bit-accurately, verified and costed beside the "
                  "uniform base network.")
    sp.add_argument("--hw", required=True, metavar="CONFIG", help="accelerator config (YAML)")
    sp.add_argument("--model", default="mobilenet_v2", metavar="NAME",
                    help="built-in model to allocate (default mobilenet_v2)")
    sp.add_argument("--budget", action="append", default=[], metavar="RESOURCE=LIMIT",
                    help="a budget on the network total, repeatable: latency, energy, size, "
                         "bops, dram, compute; LIMIT absolute (cycles, pJ, bits, ...) or a "
                         "ratio of the uniform base network like 0.5x")
    sp.add_argument("--options", default=",".join(DEFAULT_OPTIONS), metavar="LIST",
                    help=f"comma-separated per-layer options, [FAMILY:]wBITSaBITS (default "
                         f"{','.join(DEFAULT_OPTIONS)}); the first is the base (not "
                         f"multipoint). Multipoint: multipoint:wBITSxPOINTSaBITS, e.g. "
                         f"multipoint:w4x1.25a8 (4-bit points, K + round(0.25 K) weight rows "
                         f"for a layer of K output channels)")
    sp.add_argument("--sensitivity", default="empirical_fisher",
                    choices=["empirical_fisher", "fisher", "measured", "hutchinson"],
                    help="how each layer's loss increase is predicted (default "
                         "empirical_fisher; hutchinson is slow on large networks)")
    sp.add_argument("--solver", default="milp", choices=["milp", "greedy", "dp"],
                    help="milp: exact (default); greedy / dp: one budget only")
    sp.add_argument("--images", type=int, default=None, metavar="N",
                    help="verify on the first N evaluation images (default all)")
    sp.add_argument("--out", required=True, metavar="PLAN.json",
                    help="write the plan (a precision plan: simulate/cost --plan read it)")
    sp.add_argument("--json", metavar="PATH", help="write the report (plan, costs, fidelity)")
    sp.add_argument("--save-program", metavar="PATH",
                    help="write the plan's integer program (PATH.json + PATH.npz; `simulate "
                         "--model PATH.json` prices it, multipoint layers included)")
    sp.add_argument("--plot", metavar="PATH.png",
                    help="plot predicted loss vs latency over a latency-budget sweep (and the "
                         "bits per layer beside it, PATH_bits.png); needs hwsim[plot]")


def allocate(args: argparse.Namespace) -> int:
    from hwsim.arch import load_accelerator
    from hwsim.cli.commands import check_input_file
    from hwsim.cli.output import check_output_path
    from hwsim.codesign import prepare

    for flag in ("--out", "--json", "--plot", "--save-program"):
        check_output_path(flag, getattr(args, flag[2:].replace("-", "_")))
    check_input_file("--hw", args.hw, "an accelerator config (.yaml)")
    if not args.budget:
        raise HwsimError("--budget: give at least one, e.g. --budget latency=0.8x")
    budgets = dict(parse_budget(b) for b in args.budget)
    options = [parse_option(o) for o in args.options.split(",") if o.strip()]
    if len(set(options)) != len(options) or not options:
        raise HwsimError(f"--options {args.options}: expected distinct options")
    if options[0].weight_format == "multipoint":
        raise HwsimError(f"--options {args.options}: the first option is the base, a uniform "
                         f"network every option is priced against; put a non-multipoint option "
                         f"first")
    if args.images is not None and args.images < 1:
        raise HwsimError(f"--images {args.images}: expected a positive number")
    accel = load_accelerator(args.hw)
    eval_images = None
    if args.images is not None:
        from hwsim import zoo

        eval_images = zoo.sample_images("eval")[:args.images]
    problem = prepare(args.model, accel, options, sensitivity=args.sensitivity,
                      base=options[0], eval_images=eval_images)
    plan = problem.solve(budgets, solver=args.solver)
    plan.save(args.out)
    base = problem.uniform(options[0])
    written = [args.out]
    if args.save_program:
        from hwsim.ir import save_program

        try:
            path = save_program(plan.program, args.save_program)
        except HwsimError as exc:
            raise HwsimError(f"--save-program {args.save_program}: {exc}") from None
        written.append(f"{path} (and {path.with_suffix('.npz').name}: the integer program)")
    if args.json:
        report = {"plan": plan.to_dict(), "base": base.to_dict()}
        Path(args.json).write_text(json.dumps(report, indent=1, allow_nan=False) + "\n")
        written.append(args.json)
    if args.plot:
        written += _plots(problem, plan, Path(args.plot))
    print_plan_vs_base(args, args.model, accel, plan, base)
    if not getattr(args, "quiet", False):
        for path in written:
            print(f"wrote {path}")
    return 0


def _row(label: str, result, accel) -> str:
    cost = result.simulated
    size = result.predicted.get("size_bits", float("nan")) / 1e6
    fid = result.fidelity
    pvs = result.predicted_vs_simulated()
    same = all(d["equal"] for r, d in pvs.items() if r in ("latency_cycles", "energy_pj"))
    return (f"{label:<14}{cost.latency_s * 1e3:>12.3f}{cost.energy_total_pj / 1e6:>12.1f}"
            f"{size:>11.3f}{fid.get('sqnr_db') or float('nan'):>9.2f}"
            f"{fid.get('top1_agreement') or float('nan'):>10.3f}   {'yes' if same else 'NO'}")


def print_plan_vs_base(args: argparse.Namespace, model: str, accel, plan, base) -> None:
    """The plan's option counts (unless --quiet), then one table: the uniform base network and
    the plan, simulated, with their fidelity."""
    if not getattr(args, "quiet", False):
        print(f"{model} on {accel.name}: {len(plan.layers)} layers, budgets "
              + ", ".join(f"{r} <= {v:.6g}" for r, v in plan.budgets.items()))
        counts: dict[str, int] = {}
        for layer in plan.layers:
            key = f"{plan.chosen[layer].label} on {plan.units[layer]}"
            counts[key] = counts.get(key, 0) + 1
        for key, n in sorted(counts.items()):
            print(f"  {n:>3} x {key}")
        print()
    for layer, (priced, realized) in plan.short_rows.items():
        print(f"warning: layer {layer!r}: priced with {priced} multipoint weight rows, realized "
              f"with {realized} (no channel could take another point); its simulated cost is "
              f"not the predicted one", file=sys.stderr)
    print(f"{'network':<14}{'latency ms':>12}{'energy uJ':>12}{'size Mbit':>11}{'SQNR dB':>9}"
          f"{'top-1 agr':>10}   predicted == simulated")
    print(_row(f"uniform {base.chosen[base.layers[0]].label.split()[-1]}", base, accel))
    print(_row("plan", plan, accel))


def _plots(problem, plan, path: Path) -> list[str]:
    from hwsim.codesign.plots import plot_layer_bits, plot_pareto
    from quant.allocate import pareto_sweep

    sweep = pareto_sweep(problem.omega, problem.costs, "latency_cycles", n_points=12,
                         ties=problem.ties, layer_names=problem.layers)
    clock = problem.accel.clock_hz
    labels = ["" for _ in sweep] + ["plan"]
    lat = [a.totals["latency_cycles"] / clock * 1e3 for a in sweep]
    lat.append(plan.predicted["latency_cycles"] / clock * 1e3)
    loss = [-a.objective for a in sweep] + [-plan.allocation.objective]
    plot_pareto(labels, lat, loss, path, cost_label="latency (ms)",
                fidelity_label="- predicted loss increase (sum of sensitivities)")
    bits = path.with_name(path.stem + "_bits" + path.suffix)
    chosen = [plan.chosen[n] for n in plan.layers]
    plot_layer_bits(list(plan.layers), [o.weight_bits for o in chosen],
                    [o.act_bits for o in chosen], bits,
                    units=[plan.units[n] for n in plan.layers], title=f"plan on {plan.accelerator}")
    return [str(path), str(bits)]
