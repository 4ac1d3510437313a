"""Argument parsing and dispatch. User mistakes end in one line on stderr and exit status 2."""
from __future__ import annotations

import argparse
import sys

from hwsim.engines.table import ENGINES
from hwsim.errors import HwsimError
from hwsim.flows import WEIGHT_CLIPPINGS, WEIGHT_FAMILIES
from hwsim.ir.specs import REQUANT_MODES

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hwsim", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def outputs(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--csv", metavar="PATH", help="write the per-layer table as CSV")
        sp.add_argument("--json", metavar="PATH", help="write the per-layer table and summary as JSON")

    def hw(sp: argparse.ArgumentParser, required: bool = True) -> None:
        sp.add_argument("--hw", required=required, metavar="CONFIG",
                        help="accelerator: a YAML under hw_configs/ or a SCALE-Sim v3 .cfg")
        sp.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                        dest="overrides", help="override a config field (repeatable)")
        sp.add_argument("--convention", choices=["torch", "scalesim"], default=None,
                        help="output-size convention: torch (padding applied) or scalesim "
                             "(unpadded, ceil((H-F+s)/s))")

    def quant_opts(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--bits", type=int, default=8, help="weight bits (default 8)")
        sp.add_argument("--weight-format", choices=list(WEIGHT_FAMILIES), default="int",
                        help="weight number format: int (uniform, signed symmetric) or apot "
                             "(additive powers of two: a sign bit and bits-1 magnitude bits; "
                             "runs shift-add)")
        sp.add_argument("--weight-clipping", choices=list(WEIGHT_CLIPPINGS), default=None,
                        help="weight range: minmax (largest magnitude) or mse (searched); "
                             "default: minmax for int, mse for apot")
        sp.add_argument("--first-last-int8", action="store_true",
                        help="keep the first and last conv/linear layers at int8 weights")
        sp.add_argument("--depthwise-int8", action="store_true",
                        help="keep the depthwise convs at int8 weights")
        sp.add_argument("--act-bits", type=int, default=8, help="activation bits (default 8)")
        sp.add_argument("--per-tensor", action="store_true", help="per-tensor weight scales")
        sp.add_argument("--requant", choices=list(REQUANT_MODES), default="dyadic",
                        help="requantization: dyadic (integer-only) or float32 (ONNX Runtime's order)")
        sp.add_argument("--acc-bits", type=int, default=32, help="accumulator width in bits")
        sp.add_argument("--acc-mode", choices=["wrap", "saturate"], default="wrap")

    def images(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--images", type=int, default=None, metavar="N",
                        help="verify on the first N evaluation images (default: all 50)")

    sp = sub.add_parser("demo", help="MobileNetV2 int8: bit-accurate run, verification, cost")
    hw(sp, required=False)
    outputs(sp)
    images(sp)
    sp.add_argument("--backend", choices=["fast", "reference"], default="fast")

    sp = sub.add_parser("simulate", help="cost a network on an accelerator, layer by layer")
    hw(sp)
    sp.add_argument("--model", required=True, metavar="NAME_OR_PATH",
                    help="built-in workload (resnet18, resnet50, mobilenet_v2) or a saved "
                         "integer program (.json)")
    sp.add_argument("--batch", type=int, default=1)
    outputs(sp)

    sp = sub.add_parser("cost", help="cost a SCALE-Sim topology CSV on an accelerator")
    hw(sp)
    sp.add_argument("--topology", required=True, metavar="CSV", help="SCALE-Sim topology file")
    outputs(sp)

    sp = sub.add_parser("verify", help="integer program vs fake-quant vs float, per layer; or "
                                       "an int8 ONNX model: hwsim vs ONNX Runtime")
    source = sp.add_mutually_exclusive_group()
    source.add_argument("--model", default=None,  # None: mobilenet_v2, unless --onnx is given
                        help="built-in model (default mobilenet_v2)")
    source.add_argument("--onnx", metavar="MODEL.onnx",
                        help="an int8 ONNX model (QOperator or QDQ): import it, run hwsim and "
                             "ONNX Runtime on the same inputs, compare every layer's codes "
                             "(the quantization options apply to --model only)")
    sp.add_argument("--engine", choices=list(ENGINES), default=None,
                    help="with --model: compute every conv/linear exactly as this engine does "
                         "(ONNX Runtime or PyTorch's qnnpack/onednn/fbgemm); with --onnx: the "
                         "reference runtime, ort (the default)")
    sp.add_argument("--inputs", metavar="FILE.npy",
                    help="with --onnx: float inputs (N, ...) shaped like the model input "
                         "(default: the zoo's evaluation images for (N, 3, 224, 224) inputs)")
    quant_opts(sp)
    sp.add_argument("--backend", choices=["fast", "reference"], default="fast")
    sp.add_argument("--save-program", metavar="PATH", help="also save the integer program")
    sp.add_argument("--acc-report", action="store_true",
                    help="also print, per layer, the accumulator width that can never overflow "
                         "and the width the calibration images need")
    images(sp)
    outputs(sp)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from hwsim.cli import commands

    handler = {"demo": commands.demo, "simulate": commands.simulate, "cost": commands.cost,
               "verify": commands.verify}[args.command]
    try:
        return handler(args) or 0
    except (HwsimError, _quant_errors(), FileNotFoundError, IsADirectoryError) as exc:
        print(f"hwsim {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hwsim {args.command}: interrupted", file=sys.stderr)
        return 130


def _quant_errors() -> type[Exception]:
    # quant pulls in torch; only import its error type if quant is already loaded.
    mod = sys.modules.get("quant.errors")
    return mod.QuantError if mod is not None else HwsimError


if __name__ == "__main__":
    raise SystemExit(main())
