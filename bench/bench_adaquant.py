"""AdaQuant and bias tuning on MobileNetV2 (real ImageNet weights), next to round-to-nearest.

The split, the integer execution and the metrics are ``bench_ptq``'s (``mobilenet_case``,
``hwsim_row``, ``_ptq_metrics``): calibration on ``sample_images("calib")`` (28 images: 14
pictures and their horizontal flips), evaluation on ``sample_images("eval")`` (50 images: 5
pictures, 5 crops each and their flips), every row's model lowered to hwsim's integer program
(dyadic requantization, int32 wrapping accumulators) and run bit-accurately, its logits scored
against the float model's: top-1 agreement, top-5 containment, logit SQNR (dB), mean KL.

Rows, for W8A8 (``QuantConfig()``) and W4A8 (int4 symmetric per-channel weights, the first and
last conv/linear layers int8):

* ``rtn``: range calibration, weights rounded to nearest (``initial_state``);
* ``aq-seq`` / ``aq-par``: AdaQuant, sequential / parallel mode, on ``rtn``;
* ``aq-seq+bn``: BN re-estimation after ``aq-seq``; ``aq-seq+bn+bt``: then bias tuning (the
  paper's "advanced" pipeline without the integer program);
* ``ORT Percentile`` (unless ``--skip-peers``): ONNX Runtime ``quantize_static`` with
  Percentile calibration, as in ``bench_ptq``.

Each hwsim row's time is its own step plus lowering (``aq-seq+bn`` does not count AdaQuant's
time again).  AdaQuant and bias tuning hold out the same 3 of the 14 pictures (both copies:
``groups``), never trained on, for every choice they make.  ``--verify`` adds, per row, the
largest per-layer difference integer program vs fake-quant model in output codes (LSB,
``hwsim.verify`` on 10 evaluation images).

    .venv/bin/python bench/bench_adaquant.py [--bits 8 4] [--modes sequential parallel]
        [--iters N] [--batch-size N] [--bt-iters N] [--skip-peers] [--verify] [--json out.json]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_ptq as ptq  # noqa: E402  (bench/bench_ptq.py)

import quant  # noqa: E402
from quant.calibrate.adaquant import (DEFAULT_BATCH_SIZE, DEFAULT_ITERS,  # noqa: E402
                                      adaquant_with_report)
from quant.calibrate.bias_tuning import DEFAULT_ITERS as BT_ITERS  # noqa: E402
from quant.calibrate.bias_tuning import tune_biases_with_report  # noqa: E402
from quant.calibrate.bn_reestimate import reestimate_bn  # noqa: E402

SEED = 0
VERIFY_IMAGES = 10


class Pipeline:
    """The calibration steps of one weight width, each reading the states before it."""

    def __init__(self, args: argparse.Namespace, config: quant.QuantConfig,
                 calib: torch.Tensor) -> None:
        self.args, self.config, self.calib = args, config, calib
        self.groups = [i // 2 for i in range(len(calib))]  # an image and its flip
        self.states: dict[str, Any] = {}
        self.notes: list[str] = []

    def rtn(self, inp: ptq.PTQInput) -> quant.QuantizedModel:
        self.states["rtn"] = inp.state(self.config)
        return self.states["rtn"].model()

    def adaquant(self, mode: str):
        def recipe(inp: ptq.PTQInput) -> quant.QuantizedModel:
            rtn = self.states["rtn"]
            res = adaquant_with_report(rtn, self.calib, mode=mode, iters=self.args.iters,
                                       batch_size=self.args.batch_size, seed=SEED,
                                       groups=self.groups)
            self.states[f"aq-{mode[:3]}"] = res.state
            kept = sum(r.kept for r in res.report.layers)
            held = sum(r.held_after if r.kept else r.held_before for r in res.report.layers)
            self.notes.append(
                f"aq-{mode[:3]}: {kept}/{len(res.report.layers)} layers kept; summed held-out "
                f"layer MSE {sum(r.held_before for r in res.report.layers):.4g} -> {held:.4g}; "
                f"{res.report.seconds:.0f} s")
            return res.state.model()
        return recipe

    def bn(self, inp: ptq.PTQInput) -> quant.QuantizedModel:
        state = reestimate_bn(self.states["aq-seq"], self.calib,
                              reference=self.states["rtn"].graph)
        self.states["aq-seq+bn"] = state
        return state.model()

    def bias_tuning(self, inp: ptq.PTQInput) -> quant.QuantizedModel:
        res = tune_biases_with_report(self.states["aq-seq+bn"], self.calib,
                                      iters=self.args.bt_iters, seed=SEED,
                                      reference=self.states["rtn"].graph, groups=self.groups)
        self.states["aq-seq+bn+bt"] = res.state
        self.notes.append(f"aq-seq+bn+bt: {res.report.to_text()}")
        return res.state.model()

    def recipes(self) -> dict[str, ptq.Recipe]:
        out: dict[str, ptq.Recipe] = {"rtn": self.rtn}
        for mode in self.args.modes:
            out[f"aq-{mode[:3]}"] = self.adaquant(mode)
        if "sequential" in self.args.modes:
            out["aq-seq+bn"] = self.bn
            out["aq-seq+bn+bt"] = self.bias_tuning
        return out


def max_lsb(state: Any, evals: torch.Tensor) -> int:
    """``hwsim.verify``'s largest per-layer difference integer vs fake-quant (output codes)."""
    from hwsim.lower import lower
    from hwsim.verify import verify

    qm = state.model()
    program = lower(qm, requant="dyadic", accumulator_bits=32, accumulator_mode="wrap")
    return verify(qm, program, evals[:VERIFY_IMAGES]).summary["max_lsb_diff_any_layer"]


def run_width(bits: int, args: argparse.Namespace, case: ptq.ModelCase, reference: np.ndarray,
              inp: ptq.PTQInput, emit) -> list[str]:
    config = (inp.weights(ptq.INT8_WEIGHTS) if bits == 8
              else inp.weights(ptq.INT4_WEIGHTS, first_last=ptq.INT8_WEIGHTS))
    pipe = Pipeline(args, config, torch.cat(case.hwsim_batches))
    evals = torch.cat(case.evals)
    for name, recipe in pipe.recipes().items():
        row = ptq.hwsim_row(case, reference, f"W{bits}A8 {name}", recipe, inp)
        if args.verify:
            row["max_lsb"] = max_lsb(pipe.states[name], evals)
        emit(row)
    return [f"W{bits}A8 {note}" for note in pipe.notes]


def peer_rows(case: ptq.ModelCase, reference: np.ndarray, graph: quant.LayerGraph,
              emit) -> None:
    """ONNX Runtime Percentile, W8A8 and W4A8 (first and last layers int8), as bench_ptq."""
    weighted = ptq.weighted_records(graph)
    with tempfile.TemporaryDirectory(prefix="bench_adaquant_") as tmp:
        workdir = Path(tmp)
        pre, _ = ptq.export_onnx(case, workdir)
        keep_int8 = ptq.onnx_first_last(ptq.weighted_onnx_nodes(pre), weighted[0].module_path,
                                        weighted[-1].module_path)
        ptq.ort_rows(case, reference, pre, workdir, emit, keep_int8, methods=("Percentile",))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bits", type=int, nargs="+", default=[8, 4], choices=[8, 4])
    ap.add_argument("--modes", nargs="+", default=["sequential", "parallel"],
                    choices=["sequential", "parallel"])
    ap.add_argument("--iters", type=int, default=DEFAULT_ITERS, help="AdaQuant steps per layer")
    ap.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                    help="AdaQuant output positions per step")
    ap.add_argument("--bt-iters", type=int, default=BT_ITERS, help="bias tuning steps")
    ap.add_argument("--skip-peers", action="store_true", help="no ONNX Runtime rows")
    ap.add_argument("--verify", action="store_true",
                    help="also the largest per-layer LSB difference integer vs fake-quant")
    ap.add_argument("--torch-threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.manual_seed(SEED)
    torch.set_num_threads(args.torch_threads)
    case = ptq.mobilenet_case()
    results = ptq.Results(args.json, {"seed": SEED, "torch": torch.__version__,
                                      "torch_threads": args.torch_threads,
                                      "argv": sys.argv[1:] if argv is None else list(argv)})
    reference = ptq.float_outputs(case)
    graph = quant.capture(case.model, case.example)
    inp = ptq.PTQInput(case.model, case.hwsim_batches, case.example, quant.QuantConfig(),
                       tuple(r.name for r in ptq.weighted_records(graph)))
    print(f"== {case.name} ==  ({case.split_note}); AdaQuant {args.iters} steps of "
          f"{args.batch_size} positions per layer, bias tuning {args.bt_iters} steps; torch "
          f"{torch.__version__}, {args.torch_threads} threads; wall-clock seconds", flush=True)
    print(ptq.header("classifier") + ("  max LSB" if args.verify else ""), flush=True)

    def emit(row: dict[str, Any]) -> None:
        results.add_row(case.name, row)
        line = ptq.format_row("classifier", row)
        print(line + (f"  {row['max_lsb']:7d}" if "max_lsb" in row else ""), flush=True)

    notes = []
    start = time.perf_counter()
    for bits in args.bits:
        notes += run_width(bits, args, case, reference, inp, emit)
    if not args.skip_peers:
        peer_rows(case, reference, graph, emit)
    notes.append(f"total {time.perf_counter() - start:.0f} s")
    for note in notes:
        results.add_note(case.name, note)
        print(f"  * {note}")


if __name__ == "__main__":
    main()
