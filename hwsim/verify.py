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


DEFAULT_BATCH = 4  # images verified at once: peak memory grows with it, not with the data


def _sqnr_from_sums(signal: float, noise: float) -> float:
    if noise == 0.0:
        return float("inf")
    if signal == 0.0:
        return float("-inf")
    return 10.0 * float(np.log10(signal / noise))


def _cosine_from_sums(dot: float, a_sq: float, b_sq: float) -> float:
    if a_sq == 0.0 and b_sq == 0.0:
        return 1.0
    if a_sq == 0.0 or b_sq == 0.0:
        return 0.0
    return dot / float(np.sqrt(a_sq) * np.sqrt(b_sq))


class _Agreement:
    """Running SQNR sums of `approx` against `reference` (float64)."""

    def __init__(self) -> None:
        self.signal = self.noise = 0.0

    def add(self, reference: np.ndarray, approx: np.ndarray) -> None:
        ref = np.asarray(reference, dtype=np.float64).ravel()
        err = ref - np.asarray(approx, dtype=np.float64).ravel()
        self.signal += float(ref @ ref)
        self.noise += float(err @ err)

    @property
    def sqnr_db(self) -> float:
        return _sqnr_from_sums(self.signal, self.noise)


class _LayerStats:
    """One node's figures, accumulated batch by batch: counts and maxima exactly; the SQNR and
    cosine sums in float64, so they equal a one-batch computation up to summation order."""

    def __init__(self, node) -> None:
        self.node, self.shape = node, ""
        self.count = self.mismatches = self.mismatches_e2e = self.overflows = 0
        self.max_lsb = self.max_lsb_e2e = 0
        self.vs_float = _Agreement()
        self.dot = self.deq_sq = 0.0

    def add(self, alone: np.ndarray, fake_codes: np.ndarray, codes: np.ndarray,
            reference: np.ndarray, overflows: int) -> None:
        diff = np.abs(alone.astype(np.int64) - fake_codes)
        diff_e2e = np.abs(codes - fake_codes)
        self.shape = "x".join(map(str, codes.shape[1:]))
        self.count += diff.size
        self.mismatches += int(np.count_nonzero(diff))
        self.mismatches_e2e += int(np.count_nonzero(diff_e2e))
        if diff.size:
            self.max_lsb = max(self.max_lsb, int(diff.max()))
            self.max_lsb_e2e = max(self.max_lsb_e2e, int(diff_e2e.max()))
        deq = self.node.out.dequantize(codes).ravel()
        ref = np.asarray(reference, dtype=np.float64).ravel()
        self.vs_float.add(ref, deq)
        self.dot += float(ref @ deq)
        self.deq_sq += float(deq @ deq)
        self.overflows += int(overflows)

    def row(self) -> dict[str, Any]:
        return {
            "layer": self.node.name, "op": self.node.op, "shape": self.shape,
            "max_lsb_diff": self.max_lsb, "mismatches": self.mismatches,
            "mismatch_pct": 100.0 * self.mismatches / max(self.count, 1),
            "bit_exact": self.mismatches == 0, "max_lsb_diff_e2e": self.max_lsb_e2e,
            "mismatch_pct_e2e": 100.0 * self.mismatches_e2e / max(self.count, 1),
            "sqnr_db": self.vs_float.sqnr_db,
            "cosine": _cosine_from_sums(self.dot, self.vs_float.signal, self.deq_sq),
            "overflows": self.overflows,
        }


def verify(qm: Any, program: IntProgram, images: Any, *, backend: str = "fast",
           batch_size: int = DEFAULT_BATCH, limit: int | None = None) -> VerificationReport:
    """Run `images` through the float model, the fake-quant model and the integer program, and
    compare them layer by layer (see the module docstring).

    `images`: float inputs (N, C, H, W) (a tensor or array), or a ``hwsim.datasets`` source
    (a .npy file, read a batch at a time, or an image folder). They are verified `batch_size` at a
    time with running per-layer statistics, so peak memory does not grow with N; `limit`
    verifies only the first `limit` inputs.
    """
    from hwsim.datasets import ArraySource

    source = images if hasattr(images, "batches") else ArraySource(_as_numpy(images))
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    layers = [_LayerStats(n) for n in program.nodes() if n.op not in ("flatten", "input")]
    out = program.output
    int_vs_float, fake_vs_float, int_vs_fake = _Agreement(), _Agreement(), _Agreement()
    n_images = total_overflows = agree_if = agree_ff = agree_ii = 0
    classifier = None
    for batch in source.batches(batch_size, limit):
        fake = qm.run(batch, mode="fake")
        flt = qm.run(batch, mode="float")
        run = execute(program, qm.quantize_input(batch), record=True, backend=backend)
        for stats in layers:
            node = stats.node
            fake_codes = codes_from_values(fake[node.name], node.out)
            inputs = [codes_from_values(fake[s], program.node(s).out).astype(
                program.node(s).out.dtype) for s in node.inputs]
            alone, _ = execute_node(node, inputs, backend=backend)
            stats.add(alone, fake_codes, run.tensors[node.name].astype(np.int64), flt[node.name],
                      run.overflow_counts.get(node.name, 0))
        int_out = out.out.dequantize(run.output.astype(np.int64))
        fake_out = np.asarray(fake[out.name], dtype=np.float64)
        float_out = np.asarray(flt[out.name], dtype=np.float64)
        int_vs_float.add(float_out, int_out)
        fake_vs_float.add(float_out, fake_out)
        int_vs_fake.add(fake_out, int_out)
        classifier = int_out.ndim == 2 and int_out.shape[1] > 1
        if classifier:
            top_int, top_fake, top_float = (v.argmax(axis=1) for v in (int_out, fake_out, float_out))
            agree_if += int(np.sum(top_int == top_float))
            agree_ff += int(np.sum(top_fake == top_float))
            agree_ii += int(np.sum(top_int == top_fake))
        n_images += int(batch.shape[0])
        total_overflows += run.total_overflows
        del fake, flt, run
    if n_images == 0:
        raise ValueError("verify needs at least one input image")
    per_layer = pd.DataFrame([stats.row() for stats in layers])
    summary: dict[str, Any] = {
        "images": n_images,
        "layers_bit_exact": f"{int(per_layer['bit_exact'].sum())}/{len(per_layer)}",
        "max_lsb_diff_any_layer": int(per_layer["max_lsb_diff"].max()),
        "max_lsb_diff_any_layer_e2e": int(per_layer["max_lsb_diff_e2e"].max()),
        "output_sqnr_db_int_vs_float": int_vs_float.sqnr_db,
        "output_sqnr_db_fake_vs_float": fake_vs_float.sqnr_db,
        "output_sqnr_db_int_vs_fake": int_vs_fake.sqnr_db,
        "total_overflows": total_overflows,
    }
    if classifier:
        summary.update({
            "top1_agreement_int_vs_float": agree_if / n_images,
            "top1_agreement_fake_vs_float": agree_ff / n_images,
            "top1_agreement_int_vs_fake": agree_ii / n_images,
        })
    return VerificationReport(per_layer, summary)


def _as_numpy(images: Any) -> np.ndarray:
    if hasattr(images, "detach"):  # a torch tensor
        return images.detach().cpu().numpy()
    return np.asarray(images)
