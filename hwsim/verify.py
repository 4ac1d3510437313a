"""Verification: the integer program against the fake-quant model and the float model.

Per layer (one row per integer-program node that produces a new tensor):
- `max_lsb_diff`, `mismatches`, `bit_exact`: the node run in isolation — fed the fake-quant
  model's codes of its inputs — vs the fake-quant model's codes of its output (fake-quant values
  divided back onto the same grid). They differ only where integer requantization rounds
  differently from the fake-quant's float arithmetic: at most 1 LSB (dyadic rounds ties up, the
  fake-quant rounds half to even and accumulates float32 rounding). Max pooling and flatten are
  equal by construction.
- `max_lsb_diff_e2e`, `mismatch_pct_e2e`: the same comparison for the whole integer program run
  end to end, where a 1-LSB difference upstream can grow downstream.
- `sqnr_db`, `cosine`: dequantized end-to-end integer outputs vs the float model's outputs.
End to end: top-1 agreement of the integer program, the fake-quant model and the float model.

This module bridges to quant (it calls the QuantizedModel), so it may pull in torch; hwsim's core
does not import it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hwsim.executor import execute, execute_node
from hwsim.ir import IntProgram, TensorQuant


@dataclass
class VerificationReport:
    """`per_layer`: one row per node (see module doc). `summary`: end-to-end figures."""

    per_layer: pd.DataFrame
    summary: dict[str, Any]

    @property
    def warnings(self) -> list[str]:
        """Why this configuration's output is unusable, if it is (see `fidelity_warnings`)."""
        return fidelity_warnings(self.summary)

    def to_text(self) -> str:
        cols = ["layer", "op", "shape", "max_lsb_diff", "mismatch_pct", "max_lsb_diff_e2e",
                "sqnr_db", "cosine", "overflows"]
        table = self.per_layer[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}")
        legend = ("max_lsb_diff / mismatch_pct: the layer alone, fed the fake-quant model's inputs, "
                  "vs the fake-quant model (codes).\nmax_lsb_diff_e2e: the whole integer program "
                  "vs the fake-quant model. sqnr_db / cosine: the integer program vs float.")
        lines = [legend, table, ""]
        lines += [f"{k}: {_fmt(v)}" for k, v in self.summary.items()]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


# Below these, a configuration has collapsed the model's fidelity (e.g. W4A4 MobileNetV2).
MIN_TOP1_AGREEMENT = 0.5
MIN_OUTPUT_SQNR_DB = 0.0


def fidelity_warnings(summary: dict[str, Any]) -> list[str]:
    """Warnings for a verification `summary` whose integer program no longer tracks the float
    model: top-1 agreement with float below MIN_TOP1_AGREEMENT, or output SQNR against float
    below MIN_OUTPUT_SQNR_DB (the quantization noise outweighs the output)."""
    out = []
    top1 = summary.get("top1_agreement_int_vs_float")
    if isinstance(top1, float) and top1 < MIN_TOP1_AGREEMENT:
        out.append(f"top-1 agreement of the integer program with the float model is {top1:.2f} "
                   f"(< {MIN_TOP1_AGREEMENT}): this configuration collapses the model's "
                   "predictions; try more weight/activation bits, --first-last-int8 or "
                   "--depthwise-int8")
    sqnr = summary.get("output_sqnr_db_int_vs_float")
    if isinstance(sqnr, float) and sqnr < MIN_OUTPUT_SQNR_DB:
        out.append(f"output SQNR of the integer program vs the float model is {sqnr:.1f} dB "
                   f"(< {MIN_OUTPUT_SQNR_DB:g} dB): the quantization error is larger than the "
                   "output itself")
    return out


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def codes_from_values(values: np.ndarray, tq: TensorQuant) -> np.ndarray:
    """Real values that lie on `tq`'s grid -> their integer codes (int64)."""
    codes = np.rint(np.asarray(values, dtype=np.float64) / tq.scale) + tq.zero_point
    return np.clip(codes, tq.qmin, tq.qmax).astype(np.int64)


def sqnr_db(reference: np.ndarray, approx: np.ndarray) -> float:
    """10 log10(||reference||^2 / ||reference - approx||^2); inf when equal."""
    ref = np.asarray(reference, dtype=np.float64).ravel()
    err = ref - np.asarray(approx, dtype=np.float64).ravel()
    noise = float(err @ err)
    signal = float(ref @ ref)
    if noise == 0.0:
        return float("inf")
    if signal == 0.0:
        return float("-inf")
    return 10.0 * np.log10(signal / noise)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two flattened tensors (1.0 for two zero tensors)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0.0 and nb == 0.0:
        return 1.0
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(a @ b / (na * nb))


def verify(qm: Any, program: IntProgram, images: Any, *, backend: str = "fast") -> VerificationReport:
    """Run `images` (N, C, H, W float, the model's input) through the float model, the fake-quant
    model and the integer program, and compare them layer by layer."""
    fake = qm.run(images, mode="fake")
    flt = qm.run(images, mode="float")
    x_codes = qm.quantize_input(images)
    run = execute(program, x_codes, record=True, backend=backend)
    fake_codes = {n.name: codes_from_values(fake[n.name], n.out) for n in program.nodes()}
    rows = []
    for node in program.nodes():
        if node.op in ("flatten", "input"):
            continue
        alone, _ = execute_node(node, [fake_codes[s].astype(program.node(s).out.dtype)
                                       for s in node.inputs], backend=backend)
        diff = np.abs(alone.astype(np.int64) - fake_codes[node.name])
        codes = run.tensors[node.name].astype(np.int64)
        diff_e2e = np.abs(codes - fake_codes[node.name])
        deq = node.out.dequantize(codes)
        ref = np.asarray(flt[node.name], dtype=np.float64)
        rows.append({
            "layer": node.name, "op": node.op, "shape": "x".join(map(str, codes.shape[1:])),
            "max_lsb_diff": int(diff.max()) if diff.size else 0,
            "mismatches": int(np.count_nonzero(diff)),
            "mismatch_pct": 100.0 * np.count_nonzero(diff) / max(diff.size, 1),
            "bit_exact": bool(not diff.any()),
            "max_lsb_diff_e2e": int(diff_e2e.max()) if diff_e2e.size else 0,
            "mismatch_pct_e2e": 100.0 * np.count_nonzero(diff_e2e) / max(diff_e2e.size, 1),
            "sqnr_db": sqnr_db(ref, deq), "cosine": cosine(ref, deq),
            "overflows": run.overflow_counts.get(node.name, 0),
        })
    per_layer = pd.DataFrame(rows)
    out = program.output
    int_out = out.out.dequantize(run.output.astype(np.int64))
    fake_out = np.asarray(fake[out.name], dtype=np.float64)
    float_out = np.asarray(flt[out.name], dtype=np.float64)
    summary: dict[str, Any] = {
        "images": int(x_codes.shape[0]),
        "layers_bit_exact": f"{int(per_layer['bit_exact'].sum())}/{len(per_layer)}",
        "max_lsb_diff_any_layer": int(per_layer["max_lsb_diff"].max()),
        "max_lsb_diff_any_layer_e2e": int(per_layer["max_lsb_diff_e2e"].max()),
        "output_sqnr_db_int_vs_float": sqnr_db(float_out, int_out),
        "output_sqnr_db_fake_vs_float": sqnr_db(float_out, fake_out),
        "output_sqnr_db_int_vs_fake": sqnr_db(fake_out, int_out),
        "total_overflows": run.total_overflows,
    }
    if int_out.ndim == 2 and int_out.shape[1] > 1:
        top_int, top_fake, top_float = (v.argmax(axis=1) for v in (int_out, fake_out, float_out))
        summary.update({
            "top1_agreement_int_vs_float": float(np.mean(top_int == top_float)),
            "top1_agreement_fake_vs_float": float(np.mean(top_fake == top_float)),
            "top1_agreement_int_vs_fake": float(np.mean(top_int == top_fake)),
        })
    return VerificationReport(per_layer, summary)
