"""The calibration inputs of chosen conv2d / linear layers as ``CalibrationStats``: what an
output error ``mean_x (r . x)^2`` needs (Liu et al., "Post-training Quantization with Multiple
Points: Mixed Precision without Mixed Precision", AAAI 2021).

The float graph runs on the calibration batches (a few samples at a time); a hook on each
chosen layer takes its float input -- a conv's patches (N * OH * OW, C * kh * kw) in
(c, kh, kw) order, a linear layer's rows (..., in) -- and folds it into the second moments of
each group at once, in float64, so memory stays bounded whatever the number of samples.  A 1x1
conv's patches are its (strided) pixels; a larger kernel is unfolded one sample at a time and
each group's patches multiplied by their transpose in one batched GEMM.  While a layer has seen
at most d rows (d = C / groups * kh * kw) the rows themselves are kept, as
``CalibrationStats.from_inputs`` would.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F

from quant.errors import CalibrationError, QuantError
from quant.execute import float_params, run_graph
from quant.formats.multipoint_points import CalibrationStats
from quant.graph import LayerGraph, LayerRecord

# Samples run through the float graph at once.
CHUNK_SAMPLES = 4


class _Moments:
    """Running second moments of one layer's inputs, per group: the rows themselves while
    there are at most d of them (``CalibrationStats`` then keeps rows), else their Gram."""

    def __init__(self, groups: int, width: int) -> None:
        self.groups, self.width = groups, width
        self.rows: list[torch.Tensor] | None = []
        self.gram: torch.Tensor | None = None
        self.count = 0

    def wants_rows(self, m: int) -> bool:
        """Whether ``m`` more rows still fit the rows form."""
        return self.rows is not None and self.count + m <= self.width

    def add_rows(self, x: torch.Tensor) -> None:
        """``x`` (M, G * d), float."""
        if self.wants_rows(x.shape[0]):
            self.rows.append(x)  # type: ignore[union-attr]
            self.count += x.shape[0]
            return
        self.add_gram(_gram(x, self.groups), x.shape[0])

    def add_gram(self, gram: torch.Tensor, m: int) -> None:
        """A chunk's ``sum x_g x_g^T`` (G, d, d) float64 over its ``m`` rows."""
        if self.rows is not None:
            earlier = self.rows
            self.rows, self.gram = None, torch.zeros_like(gram)
            if earlier:
                self.gram += _gram(torch.cat(earlier), self.groups)
        self.gram += gram
        self.count += m

    def stats(self, name: str) -> CalibrationStats:
        """The moments as ``CalibrationStats``; non-finite inputs (which make the moments
        non-finite) are a CalibrationError naming layer ``name``."""
        moments = torch.cat(self.rows) if self.rows is not None else self.gram
        if not bool(torch.isfinite(moments).all()):
            raise CalibrationError(f"layer {name!r}: calibration inputs contain NaN or inf; "
                                   "expected finite values")
        if self.rows is not None:
            return CalibrationStats.from_inputs(moments.to(torch.float64).numpy(), self.groups)
        gram = (self.gram / self.count).numpy()
        gram.setflags(write=False)
        return CalibrationStats(inputs=None, gram=gram, samples=self.count)


def _gram(x: torch.Tensor, groups: int) -> torch.Tensor:
    """``sum_rows x_g x_g^T`` per group, float64 (G, d, d), of rows ``x`` (M, G * d)."""
    x = x.to(torch.float64)
    if groups == 1:
        return (x.T @ x).unsqueeze(0)
    g = x.reshape(x.shape[0], groups, -1).permute(1, 2, 0)           # (G, d, M)
    return g @ g.transpose(1, 2)


def _padded(rec: LayerRecord, x: torch.Tensor) -> torch.Tensor:
    top, left, bottom, right = rec.attrs["padding"]
    return F.pad(x, (left, right, top, bottom)) if (top, left, bottom, right) != (0, 0, 0, 0) \
        else x


def _patches(rec: LayerRecord, x: torch.Tensor) -> torch.Tensor:
    """Input rows of conv2d / linear ``rec`` for input ``x``: conv (N * OH * OW, C * kh * kw)
    in (c, kh, kw) order, linear (rows, in)."""
    if rec.op == "linear":
        return x.reshape(-1, x.shape[-1])
    a = rec.attrs
    kh, kw = rec.weight.shape[2:]
    cols = F.unfold(_padded(rec, x), (kh, kw), dilation=tuple(a["dilation"]),
                    stride=tuple(a["stride"]))
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])


def _conv_gram(rec: LayerRecord, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(``sum x_g x_g^T`` (G, d, d) float64, rows M) of a conv's patches: a 1x1 conv reads its
    (strided) pixels; a larger kernel is unfolded one sample at a time, each group's (d, L)
    patches multiplied by their transpose (one batched GEMM, no copy of the patches)."""
    a = rec.attrs
    groups = int(rec.attrs["groups"])
    kh, kw = rec.weight.shape[2:]
    xp = _padded(rec, x.to(torch.float64))
    if (kh, kw) == (1, 1):
        sh, sw = a["stride"]
        pixels = xp[:, :, ::sh, ::sw].permute(0, 2, 3, 1).reshape(-1, xp.shape[1])
        return _gram(pixels, groups), pixels.shape[0]
    gram, rows = None, 0
    for sample in xp.split(1):
        cols = F.unfold(sample, (kh, kw), dilation=tuple(a["dilation"]),
                        stride=tuple(a["stride"]))[0]                # (C * kh * kw, L)
        p = cols.reshape(groups, -1, cols.shape[1])                   # (G, d, L)
        part = torch.bmm(p, p.transpose(1, 2))
        gram = part if gram is None else gram + part
        rows += cols.shape[1]
    return gram, rows


def layer_input_stats(graph: LayerGraph, names: Iterable[str],
                      data: Iterable[torch.Tensor]) -> dict[str, CalibrationStats]:
    """``CalibrationStats`` of the float inputs of conv2d / linear layers ``names`` of
    ``graph`` over the batches ``data`` (float tensors (N, ...) shaped like the graph input)."""
    chosen = {}
    for name in names:
        rec = graph[name]
        if rec.op not in ("conv2d", "linear"):
            raise QuantError(f"layer {name!r} is a {rec.op} record; calibration inputs are "
                             "collected for conv2d / linear layers")
        groups = int(rec.attrs["groups"]) if rec.op == "conv2d" else 1
        chosen[name] = _Moments(groups, int(np.prod(rec.weight.shape[1:])))

    def hook(rec: LayerRecord, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        moments = chosen.get(rec.name)
        if moments is None:
            return xs
        x = xs[0]
        if rec.op == "linear":
            moments.add_rows(_patches(rec, x))
            return xs
        m = x.shape[0] * int(np.prod(rec.out_shape[2:]))
        if moments.wants_rows(m):
            moments.add_rows(_patches(rec, x))
        else:
            moments.add_gram(*_conv_gram(rec, x))
        return xs

    params = float_params(graph)
    seen = 0
    for batch in data:
        if not isinstance(batch, torch.Tensor):
            raise CalibrationError(f"calibration batch is a {type(batch).__name__}; expected a "
                                   "torch.Tensor")
        for chunk in batch.split(CHUNK_SAMPLES):
            run_graph(graph, chunk.to(torch.float32), params, keep=False, pre=hook)
            seen += chunk.shape[0]
    if not seen:
        raise CalibrationError("calibration data is empty; pass at least one batch")
    return {name: m.stats(name) for name, m in chosen.items()}
