"""Post-training steps on MobileNetV2 (real ImageNet weights): round-to-nearest, bias correction,
BN re-estimation, cross-layer equalization.

For W8A8 (``QuantConfig()``) and W4A8 (4-bit symmetric per-channel weights, first and last
weighted layers at 8 bits), prints per pipeline the top-1 agreement with the float model and the
logit SQNR (dB) of the fake-quant model ``state.model().forward(x)`` on the 50 evaluation images
(calibration: the 28 calibration images), the SQNR on the calibration images themselves (what
the steps fit), and the wall time of each step (one run; the row's last step only).

Equalization of MobileNetV2 needs ``relu6="relu"`` (its ReLU6 clamps do not commute with
scaling), which CHANGES THE FLOAT MODEL: those rows are compared with the original float model
and, in the columns "vs ReLU float", with the modified float model; the row "ReLU float model"
compares the modified float model itself with the original.

    python bench/bench_ptq_steps.py [--configs w8a8 w4a8]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import quant
from hwsim.zoo import mobilenet_v2
from hwsim.zoo.images import sample_images
from quant.calibrate.bias_correction import correct_biases
from quant.calibrate.bn_reestimate import reestimate_bn
from quant.calibrate.equalize import equalize_with_report
from quant.model import initial_state

EVAL_CHUNK = 10


def config(name: str, graph_names: list[str]) -> quant.QuantConfig:
    if name == "w8a8":
        return quant.QuantConfig()
    w4 = quant.IntFormat(bits=4, signed=True, symmetric=True, per_channel=True)
    w8 = quant.IntFormat(bits=8, signed=True, symmetric=True, per_channel=True)
    return quant.QuantConfig(weight=w4, layer_weight={graph_names[0]: w8, graph_names[-1]: w8})


def chunks(x: torch.Tensor, n: int) -> list[torch.Tensor]:
    return [x[i:i + n] for i in range(0, len(x), n)]


def compare(out: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    """(top-1 agreement, SQNR in dB) of ``out`` against ``ref`` (N, classes)."""
    agree = float((out.argmax(1) == ref.argmax(1)).float().mean())
    sqnr = 10 * np.log10(float((ref.double() ** 2).sum())
                         / float(((out.double() - ref.double()) ** 2).sum()))
    return agree, sqnr


def fake_quant_logits(state, ev: torch.Tensor) -> torch.Tensor:
    qm = state.model()
    return torch.cat([qm.forward(c) for c in chunks(ev, EVAL_CHUNK)])


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def run_config(name: str, model, calib: torch.Tensor, ev: torch.Tensor,
               ref: torch.Tensor, calib_ref: torch.Tensor) -> list[tuple]:
    calib_batches = chunks(calib, 7)
    graph = quant.capture(model, calib[:1])
    weighted = [r.name for r in graph if r.op in ("conv2d", "linear")]
    cfg = config(name, weighted)
    rows = []

    def row(label, state, seconds, relu_ref=None):
        out = fake_quant_logits(state, ev)
        agree, sqnr = compare(out, ref)
        extra = compare(out, relu_ref) if relu_ref is not None else (None, None)
        calib_sqnr = compare(fake_quant_logits(state, calib), calib_ref)[1]
        rows.append((name, label, agree, sqnr, *extra, calib_sqnr, seconds))
        print(f"  {label}: {agree:.2f} {sqnr:.1f} dB, calib {calib_sqnr:.1f} dB "
              f"({seconds:.1f} s)", flush=True)

    rtn, t_rtn = timed(lambda: initial_state(model, cfg, calib_batches))
    row("round to nearest (capture + ranges)", rtn, t_rtn)
    bc, t_bc = timed(lambda: correct_biases(rtn, calib))
    row("+ bias correction", bc, t_bc)
    bn_only, t_bn_only = timed(lambda: reestimate_bn(rtn, calib))
    row("+ BN re-estimation (no bias correction)", bn_only, t_bn_only)
    bcbn, t_bcbn = timed(lambda: reestimate_bn(bc, calib, reference=rtn.graph))
    row("+ bias correction + BN re-estimation", bcbn, t_bcbn)

    keep, t_keep = timed(lambda: equalize_with_report(rtn.graph))
    eq_keep, t_recal = timed(lambda: rtn.replace(graph=keep.graph).recalibrated(calib_batches))
    row(f"CLE relu6='skip' ({len(keep.report.pairs)} pairs, float model unchanged) "
        "+ ranges again", eq_keep, t_keep + t_recal)

    eq, t_eq = timed(lambda: equalize_with_report(rtn.graph, relu6="relu"))
    eq_state, t_recal = timed(lambda: rtn.replace(graph=eq.graph).recalibrated(calib_batches))
    relu_float = torch.cat([eq_state.model().float_forward(c) for c in chunks(ev, EVAL_CHUNK)])
    agree, sqnr = compare(relu_float, ref)
    rows.append((name, f"ReLU float model (ReLU6 -> ReLU in {len(eq.report.relu6_replaced)} "
                 "layers), no quantization", agree, sqnr, None, None,
                 compare(eq_state.model().float_forward(calib), calib_ref)[1], 0.0))
    row(f"CLE relu6='relu' ({len(eq.report.pairs)} pairs, {eq.report.sweeps} sweeps) "
        "+ ranges again", eq_state, t_eq + t_recal, relu_float)
    eq_bc, t_eq_bc = timed(lambda: correct_biases(eq_state, calib))
    row("CLE relu6='relu' + bias correction", eq_bc, t_eq_bc, relu_float)
    eq_bcbn, t_eq_bcbn = timed(lambda: reestimate_bn(eq_bc, calib, reference=eq.graph))
    row("CLE relu6='relu' + bias correction + BN re-estimation", eq_bcbn, t_eq_bcbn,
        relu_float)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", default=["w8a8", "w4a8"], choices=["w8a8", "w4a8"])
    args = ap.parse_args()
    torch.manual_seed(0)
    model = mobilenet_v2().eval()
    calib, ev = sample_images("calib"), sample_images("eval")
    with torch.no_grad():
        ref = torch.cat([model(c) for c in chunks(ev, EVAL_CHUNK)])
        calib_ref = torch.cat([model(c) for c in chunks(calib, EVAL_CHUNK)])
    rows = []
    for name in args.configs:
        print(f"{name}:", flush=True)
        rows += run_config(name, model, calib, ev, ref, calib_ref)
    print("\n| config | pipeline | top-1 agr. | SQNR dB | top-1 agr. vs ReLU float "
          "| SQNR dB vs ReLU float | SQNR dB on the calibration images | step time s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, label, agree, sqnr, agree_r, sqnr_r, calib_sqnr, seconds in rows:
        relu = ("", "") if agree_r is None else (f"{agree_r:.2f}", f"{sqnr_r:.1f}")
        print(f"| {name} | {label} | {agree:.2f} | {sqnr:.1f} | {relu[0]} | {relu[1]} "
              f"| {calib_sqnr:.1f} | {seconds:.1f} |")

if __name__ == "__main__":
    main()
