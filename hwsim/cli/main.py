"""Argument parsing and dispatch. User mistakes end in one line on stderr and exit status 2.

Numbers and choices are checked here, before any work starts (quantizing a model takes
seconds); files are checked by the commands before they read them or compute anything.
"""
from __future__ import annotations

import argparse
import os
import sys

from hwsim.engines.table import ENGINES
from hwsim.errors import HwsimError
from hwsim.flows import DEFAULT_GROUP_SIZE, WEIGHT_CLIPPINGS, WEIGHT_FAMILIES, ZOO_MODELS
from hwsim.ir.specs import REQUANT_MODES

DESCRIPTION = """\
hwsim: simulate quantized neural networks bit for bit in integer arithmetic, and estimate
their cycles and energy on an accelerator described by a YAML (or SCALE-Sim .cfg) file.

  hwsim demo                                   MobileNetV2 int8 end to end
  hwsim simulate --hw CONFIG --model NAME      cost a network, layer by layer
  hwsim cost --hw CONFIG --topology FILE.csv   cost a SCALE-Sim topology
  hwsim verify --model NAME [--bits 4 ...]     integer program vs fake-quant vs float
  hwsim verify --onnx MODEL.onnx               an int8 ONNX model: hwsim vs ONNX Runtime

Errors are one line on stderr and exit status 2. Run `hwsim COMMAND --help` for a
command's options."""

# Bit widths the number formats accept (quant.IntFormat: 2..16; quant.APoTFormat signed: a sign
# bit plus 2..6 magnitude bits; quant.MultipointFormat and quant.GroupIntFormat: 2..8);
# accumulators as hwsim.lower takes them. Checked against quant in tests/test_cli_hardening.py
# (multipoint: test_cli_multipoint.py; group: test_group_weights.py).
WEIGHT_BITS = {"int": (2, 16), "apot": (3, 7), "multipoint": (2, 8), "group": (2, 8)}
# Input features per group quant.GroupIntFormat accepts (its group_size).
GROUP_SIZES = (1, 1 << 20)
# Points per output channel quant.MultipointFormat accepts (its max_points).
MAX_POINTS = (1, 64)
ACT_BITS = (2, 16)
ACC_BITS = (8, 64)
# The zoo's evaluation images (hwsim.zoo.sample_images("eval"): 5 photos x 10 crops).
N_EVAL_IMAGES = 50
# The zoo models `verify --model` quantizes, and their weights.
ZOO_WEIGHTS = {"mobilenet_v2": "ImageNet", "resnet18": "random, seeded",
               "resnet50": "random, seeded"}
RANDOM_WEIGHTS_NOTE = ("the built-in {model} has random (seeded) weights, not trained ones: its "
                       "figures measure quantization noise on an untrained network, not accuracy "
                       "(only mobilenet_v2 has real ImageNet weights)")
# Options of `verify` that configure quantization: --model only (an ONNX model is quantized).
QUANT_OPTIONS = ("bits", "weight_format", "weight_clipping", "first_last_int8", "depthwise_int8",
                 "act_bits", "per_tensor", "requant", "acc_bits", "acc_mode", "plan",
                 "max_points", "points_budget", "group_size", "calibration")
# `verify --calibration`: the post-training pipelines of quant.calibrate.pipeline.
CALIBRATIONS = ("none", "light", "advanced")


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors on one line: `hwsim verify: error: argument --bits: ...`."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see: {self.prog} --help)\n")


def _int_in(lo: int, hi: int | None = None):
    """An argparse type: an integer in [lo, hi] (hi None: no upper bound)."""
    want = f"an integer in [{lo}, {hi}]" if hi is not None else (
        "a positive integer" if lo == 1 else f"an integer >= {lo}")

    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {want}, got {text!r}") from None
        if value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"expected {want}, got {text!r}")
        return value

    parse.__name__ = want
    return parse


def _fraction(text: str) -> float:
    """An argparse type: a finite number >= 0 (an extra-row fraction)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 0 (a fraction of extra rows, "
                                         f"e.g. 0.1), got {text!r}")
    return value


def _builtin_workloads() -> str:
    from hwsim.workloads import builtin_workload_names

    return ", ".join(builtin_workload_names())


def build_parser() -> argparse.ArgumentParser:
    from hwsim import __version__

    p = _Parser(prog="hwsim", description=DESCRIPTION,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"hwsim {__version__}")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="print only the summary (and errors), no per-layer tables")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p.commands = {}  # type: ignore[attr-defined]

    def command(name: str, help: str, description: str | None = None) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=description or help)
        sp.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="print only the summary (and errors), no per-layer tables")
        p.commands[name] = sp  # type: ignore[attr-defined]
        return sp

    def outputs(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--csv", metavar="PATH", help="write the per-layer table as CSV")
        sp.add_argument("--json", metavar="PATH", help="write the per-layer table and summary as JSON")

    def hw(sp: argparse.ArgumentParser, required: bool = True) -> None:
        sp.add_argument("--hw", required=required, metavar="CONFIG",
                        help="accelerator config: a YAML file (see hw_configs/) or a SCALE-Sim v3 "
                             ".cfg" + ("" if required else " (default: hw_configs/int8_systolic.yaml)"))
        sp.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                        dest="overrides", help="override a config field, e.g. compute.rows=64 "
                                               "(repeatable)")
        sp.add_argument("--convention", choices=["torch", "scalesim"], default=None,
                        help="output-size convention: torch (padding applied) or scalesim "
                             "(unpadded, ceil((H-F+s)/s)); default: scalesim for `cost`, torch "
                             "otherwise")

    def quant_opts(sp: argparse.ArgumentParser) -> None:
        lo, hi = WEIGHT_BITS["int"]
        alo, ahi = WEIGHT_BITS["apot"]
        mlo, mhi = WEIGHT_BITS["multipoint"]
        sp.add_argument("--bits", type=_int_in(lo, hi), default=None,
                        help=f"weight bits (default 8): {lo}..{hi} for --weight-format int, "
                             f"{alo}..{ahi} for apot, {mlo}..{mhi} for multipoint and group")
        sp.add_argument("--weight-format", choices=list(WEIGHT_FAMILIES), default=None,
                        help="weight number format: int (uniform, signed symmetric; the default), "
                             "apot (additive powers of two: a sign bit and bits-1 magnitude "
                             "bits; runs shift-add) or multipoint (each output channel a sum of "
                             "1..--max-points bits-bit points, run as extra rows of one bits-bit "
                             "layer) or group (signed symmetric, one scale per output channel "
                             "and --group-size input features)")
        group_size(sp, "the group size must divide every group-wise layer's input channels")
        sp.add_argument("--max-points", type=_int_in(*MAX_POINTS), default=None, metavar="N",
                        help=f"multipoint: most points per output channel, {MAX_POINTS[0]}.."
                             f"{MAX_POINTS[1]} (default 2)")
        sp.add_argument("--points-budget", type=_fraction, default=None, metavar="FRACTION",
                        help="multipoint: extra rows as a fraction of the multipoint layers' "
                             "output channels (0.1: 10%% more rows), given to the channels with "
                             "the largest output error on the calibration images; at most "
                             "--max-points - 1 (default: every channel gets --max-points points)")
        sp.add_argument("--weight-clipping", choices=list(WEIGHT_CLIPPINGS), default=None,
                        help="weight range: minmax (largest magnitude) or mse (searched); "
                             "default: minmax for int, mse for apot")
        sp.add_argument("--first-last-int8", action="store_true", default=None,
                        help="keep the first and last conv/linear layers at int8 weights")
        sp.add_argument("--depthwise-int8", action="store_true", default=None,
                        help="keep the depthwise convs at int8 weights")
        sp.add_argument("--act-bits", type=_int_in(*ACT_BITS), default=None,
                        help=f"activation bits, {ACT_BITS[0]}..{ACT_BITS[1]} (default 8)")
        sp.add_argument("--per-tensor", action="store_true", default=None,
                        help="per-tensor weight scales (default: per output channel)")
        sp.add_argument("--requant", choices=list(REQUANT_MODES), default=None,
                        help="requantization: dyadic (integer-only; the default) or float32 "
                             "(ONNX Runtime's order)")
        sp.add_argument("--acc-bits", type=_int_in(*ACC_BITS), default=None,
                        help=f"accumulator width in bits, {ACC_BITS[0]}..{ACC_BITS[1]} "
                             "(default 32)")
        sp.add_argument("--acc-mode", choices=["wrap", "saturate"], default=None,
                        help="what an accumulator does on overflow: wrap (two's complement; the "
                             "default) or saturate")

    def group_size(sp: argparse.ArgumentParser, note: str) -> None:
        sp.add_argument("--group-size", type=_int_in(*GROUP_SIZES), default=None, metavar="N",
                        help=f"group weights: input features per scale, {GROUP_SIZES[0]}.."
                             f"{GROUP_SIZES[1]} (default {DEFAULT_GROUP_SIZE}); {note}")

    def precision(sp: argparse.ArgumentParser) -> None:
        from quant.formats import registered_formats  # torch-free

        families = list(registered_formats())
        sp.add_argument("--bits", type=_int_in(1, 256), default=None, metavar="N",
                        help="price every layer at N-bit weights (default: the workload's own "
                             "widths, 8 for built-in networks)")
        sp.add_argument("--act-bits", type=_int_in(1, 256), default=None, metavar="N",
                        help="price every layer at N-bit activations")
        sp.add_argument("--weight-format", choices=families, default=None,
                        help="price every layer's weights in this number-format family")
        sp.add_argument("--plan", metavar="FILE", default=None,
                        help="per-layer precision plan (YAML/JSON: layer names or globs -> "
                             "weight_bits, act_bits, weight_format, act_format); applied after "
                             "--bits/--act-bits/--weight-format")
        group_size(sp, "priced with one 32-bit multiplier per output channel and group in the "
                       "weight traffic")

    def mapping(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--objective", choices=["latency", "energy", "edp"], default="energy",
                        help="what the mapper minimizes per layer (default: energy)")
        sp.add_argument("--mapping", metavar="FILE", default=None,
                        help="mappings to use (YAML/JSON: layer names or globs -> loop_order, "
                             "dataflow, tiles_bytes), e.g. an edited --mapping-out file; other "
                             "layers are mapped by the mapper")
        sp.add_argument("--mapping-out", metavar="FILE", default=None,
                        help="write the mapping of every layer (YAML, or JSON for a .json name)")

    def images(sp: argparse.ArgumentParser, what: str) -> None:
        sp.add_argument("--images", type=_int_in(1), default=None, metavar="N",
                        help=f"verify on the first N {what}")

    def backend(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--backend", choices=["fast", "reference"], default="fast",
                        help="integer kernels: fast (BLAS/numba, the default) or reference "
                             "(slow int64 definitions; identical results)")

    sp = command("demo", "MobileNetV2: int8 bit-accurate run, verification, cost; then per-layer "
                         "precisions co-designed against a mixed-precision accelerator",
                 "MobileNetV2 (ImageNet weights) quantized to int8 per channel, lowered to an "
                 "integer program, run bit-accurately, verified against the fake-quant and float "
                 "models, and costed on an accelerator (--hw). Then the co-design stage: "
                 "per-layer precisions allocated against a mixed-precision accelerator "
                 "(--mixed-hw) under a latency budget, executed bit-accurately, verified and "
                 "costed beside uniform W8A8.")
    hw(sp, required=False)
    from hwsim.cli.demo import add_arguments as demo_arguments

    demo_arguments(sp)
    outputs(sp)
    images(sp, f"evaluation images (1..{N_EVAL_IMAGES}; default: all {N_EVAL_IMAGES})")
    backend(sp)

    names = _builtin_workloads()
    sp = command("simulate", "cost a network on an accelerator, layer by layer")
    hw(sp)
    sp.add_argument("--model", required=True, metavar="NAME_OR_FILE",
                    help=f"a built-in workload (layer shapes only, no weights needed): {names}; "
                         "or a file: a saved integer program (NAME.json with its NAME.npz, as "
                         "`verify --save-program` writes; give either) or an ONNX model (.onnx: "
                         "its conv, gemm and matmul layers)")
    sp.add_argument("--batch", type=_int_in(1), default=1, metavar="N",
                    help="batch size: every layer is costed for N inputs (default 1)")
    precision(sp)
    mapping(sp)
    outputs(sp)

    sp = command("cost", "cost a SCALE-Sim topology CSV on an accelerator")
    hw(sp)
    sp.add_argument("--topology", required=True, metavar="CSV",
                    help="SCALE-Sim topology file (one conv/GEMM layer per row)")
    precision(sp)
    mapping(sp)
    outputs(sp)

    from hwsim.cli.allocate import add_parser as add_allocate

    add_allocate(command)

    real = [m for m in ZOO_MODELS if not ZOO_WEIGHTS.get(m, "").startswith("random")]
    fake = [m for m in ZOO_MODELS if ZOO_WEIGHTS.get(m, "").startswith("random")]
    zoo = ", ".join(f"{m} ({ZOO_WEIGHTS[m]} weights)" for m in real) + (
        f"; {', '.join(fake)} (random seeded weights: their figures measure quantization noise, "
        "not accuracy)" if fake else "")
    sp = command("verify", "integer program vs fake-quant vs float, per layer; or an int8 ONNX "
                           "model: hwsim vs ONNX Runtime",
                 "Quantize a built-in model (--model) and compare its integer program with the "
                 "fake-quant and float models layer by layer; or import an int8 ONNX model "
                 "(--onnx) and compare hwsim with ONNX Runtime. The ResNets have random (seeded) "
                 "weights: their figures measure quantization noise, not accuracy.")
    source = sp.add_mutually_exclusive_group()
    source.add_argument("--model", default=None, choices=list(ZOO_MODELS),
                        help=f"built-in model to quantize: {zoo}. Default: mobilenet_v2")
    source.add_argument("--onnx", metavar="MODEL.onnx",
                        help="an int8 ONNX model (QOperator or QDQ): import it, run hwsim and "
                             "ONNX Runtime on the same inputs, compare every layer's codes "
                             "(the quantization options apply to --model only)")
    sp.add_argument("--engine", choices=list(ENGINES), default=None,
                    help="with --model: compute every conv/linear exactly as this engine does "
                         "(ONNX Runtime or PyTorch's qnnpack/onednn/fbgemm); with --onnx: the "
                         "reference runtime, ort (the default)")
    sp.add_argument("--inputs", metavar="FILE.npy|DIR",
                    help="with --onnx: a .npy of float inputs (N, ...) shaped like the model "
                         "input (default: the zoo's evaluation images for (N, 3, 224, 224) "
                         "inputs); with --model: a .npy of ImageNet-normalized images "
                         "(N, 3, 224, 224) or a folder of image files (resized, center-cropped, "
                         "normalized), verified a few at a time in bounded memory (default: "
                         "the zoo's 50 evaluation images)")
    quant_opts(sp)
    sp.add_argument("--calibration", choices=list(CALIBRATIONS), default=None,
                    help="post-training calibration: none (min-max ranges, weights rounded to "
                         "nearest; the default), light (min-max or 99.99th-percentile "
                         "activation ranges, whichever fits held-out calibration images better, "
                         "then BN re-estimation) or advanced (also AdaQuant per layer and bias "
                         "tuning); each step is kept only if it lowers the KL to the float model "
                         "on the held-out images. AdaQuant calibrates int weights only; not "
                         "with multipoint")
    sp.add_argument("--plan", metavar="FILE", default=None,
                    help="per-layer precision plan (YAML/JSON, e.g. `hwsim allocate --out`): "
                         "layer names or globs -> weight_bits, act_bits, weight_format (int, "
                         "apot, binary); a layer's act_bits set the width of the tensor it reads; "
                         "fields a layer's entry omits keep --bits/--act-bits/--weight-format")
    backend(sp)
    sp.add_argument("--save-program", metavar="PATH",
                    help="also save the integer program (PATH.json and PATH.npz)")
    sp.add_argument("--acc-report", action="store_true",
                    help="also print, per layer, the accumulator width that can never overflow "
                         "and the width the calibration images need")
    images(sp, f"inputs: the first N of --inputs (default: all), or of the zoo's "
               f"{N_EVAL_IMAGES} evaluation images")
    outputs(sp)
    return p


def _check_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Checks that involve more than one option, as usage errors (one line, exit 2)."""
    sp = parser.commands[args.command]  # type: ignore[attr-defined]
    if args.command == "verify" and args.onnx is not None:
        given = [f"--{o.replace('_', '-')}" for o in QUANT_OPTIONS if getattr(args, o) is not None]
        if given:
            sp.error(f"{', '.join(given)}: the quantization options apply to --model; an ONNX "
                     "model (--onnx) carries its own quantization")
        return
    if args.command in ("simulate", "cost"):
        _check_group_size(args, args.weight_format, sp, plan=args.plan is not None)
    if args.command in ("verify", "demo", "allocate") and args.images is not None \
            and getattr(args, "inputs", None) is None and args.images > N_EVAL_IMAGES:
        sp.error(f"argument --images: {args.images} requested, but the zoo has "
                 f"{N_EVAL_IMAGES} evaluation images")
    if args.command == "verify":
        family = args.weight_format or "int"
        lo, hi = WEIGHT_BITS[family]
        if args.bits is not None and not lo <= args.bits <= hi:
            sp.error(f"argument --bits: --weight-format {family} takes {lo}..{hi} bits, "
                     f"got {args.bits}")
        _check_multipoint(args, family, sp)
        _check_group_size(args, family, sp, plan=args.plan is not None)
        if args.calibration not in (None, "none") and family == "multipoint":
            sp.error(f"--calibration {args.calibration}: the calibration pipelines do not "
                     "apply to --weight-format multipoint (its points are fitted by output "
                     "error already)")
        defaults = {"bits": 8, "weight_format": "int", "first_last_int8": False,
                    "depthwise_int8": False, "act_bits": 8, "per_tensor": False,
                    "requant": "dyadic", "acc_bits": 32, "acc_mode": "wrap"}
        for name, value in defaults.items():
            if getattr(args, name) is None:
                setattr(args, name, value)


def _check_multipoint(args: argparse.Namespace, family: str, sp: argparse.ArgumentParser) -> None:
    """--max-points / --points-budget belong to --weight-format multipoint, whose scales are
    per channel and searched (no --per-tensor, no --weight-clipping); the budget is at most
    what the layers can take, --max-points - 1."""
    given = [f"--{o.replace('_', '-')}" for o in ("max_points", "points_budget")
             if getattr(args, o) is not None]
    if family != "multipoint":
        if given:
            sp.error(f"{', '.join(given)}: apply to --weight-format multipoint, not {family}")
        return
    for option, what in (("per_tensor", "per-channel points"),
                         ("weight_clipping", "exactly searched point scales")):
        if getattr(args, option):
            sp.error(f"--{option.replace('_', '-')}: --weight-format multipoint has {what}")
    if args.max_points is None:
        args.max_points = 2
    most = args.max_points - 1
    if args.points_budget is not None and args.points_budget > most:
        sp.error(f"argument --points-budget: {args.points_budget:g} extra rows per channel is "
                 f"beyond what --max-points {args.max_points} allows (at most {most})")


def _check_group_size(args: argparse.Namespace, family: str | None,
                      sp: argparse.ArgumentParser, plan: bool = False) -> None:
    """--group-size belongs to --weight-format group (or, when pricing, to a --plan that may
    name group layers); the group format gets the default size when none is given."""
    if family != "group":
        if args.group_size is not None and not plan:
            shown = family or "the workload's own formats"
            sp.error(f"--group-size: applies to --weight-format group, not {shown}")
        return
    if getattr(args, "per_tensor", None):
        sp.error("--per-tensor: --weight-format group has one scale per output channel and group")
    if args.group_size is None:
        args.group_size = DEFAULT_GROUP_SIZE


def _exit_status(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    return exc.code if isinstance(exc.code, int) else 2


def _stdout_to_devnull() -> None:
    """After a closed pipe on stdout (`hwsim ... | head`): send the rest, and the interpreter's
    final flush, to /dev/null (the Python documentation's recipe for SIGPIPE)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass  # stdout is not a file (e.g. captured): nothing to flush later


def main(argv: list[str] | None = None) -> int:
    """Run the `hwsim` command on `argv` (default: sys.argv[1:]); return the exit status:
    0 success (also --help and --version), 2 a usage error or bad input (one line on stderr),
    1 stdout closed early (e.g. piped into `head`; files were written already), 130 Ctrl-C."""
    try:
        return _main(argv)
    except BrokenPipeError:
        _stdout_to_devnull()
        return 1


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        _check_args(args, parser)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        sys.stdout.flush()
        return _exit_status(exc)
    from hwsim.cli import allocate, commands

    from hwsim.cli.demo import demo

    handler = {"demo": demo, "simulate": commands.simulate, "cost": commands.cost,
               "verify": commands.verify, "allocate": allocate.allocate}[args.command]
    prefix = f"hwsim {args.command}"
    try:
        status = handler(args) or 0
        sys.stdout.flush()
        return status
    except (HwsimError, _quant_errors()) as exc:
        print(f"{prefix}: error: {error_lines(str(exc))}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        raise
    except OSError as exc:  # a file the commands did not check first: name it at least
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"{prefix}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return 130


def error_lines(message: str) -> str:
    """One line per problem: a message listing several (a config file's) keeps its indented
    lines, one per further problem; any other line break (e.g. inside a message quoted from
    onnx or ONNX Runtime) is joined into the line before it."""
    out: list[str] = []
    for line in message.splitlines():
        if not line.strip():
            continue
        if out and not line.startswith("  "):
            out[-1] += " " + line.strip()
        else:
            out.append(line.rstrip())
    return "\n".join(out) if out else message


def _quant_errors() -> type[Exception]:
    # quant pulls in torch; only import its error type if quant is already loaded.
    mod = sys.modules.get("quant.errors")
    return mod.QuantError if mod is not None else HwsimError


if __name__ == "__main__":
    raise SystemExit(main())
