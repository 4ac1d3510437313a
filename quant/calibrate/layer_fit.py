"""AdaQuant for one layer: weights, bias and weight scale that minimize the layer's output error.

Hubara et al., "Improving Post Training Neural Quantization: Layer-wise Calibration and Integer
Programming" (2020), Eq. 2: minimize ``|| act(W x + b) - act(Q_w(W + V) x_q + b') ||²`` over a
weight perturbation ``V``, the bias ``b'`` and the weight quantizer's scale, with the
straight-through estimator through rounding, by Adam.

Parametrization (so that one learning rate suits every layer): the weight is held in units of
its initial per-channel step ``s0`` (``u = (W + V) / s0``, so a learning rate is a fraction of
a code step), the scale as ``s = s0 · exp(t)`` and the bias as ``b0 + rms_k · beta`` with
``rms_k`` the root mean square of the float output channel ``k``.  Each Adam step uses
``batch_size`` output positions (conv: one sample's output pixel; linear: one row) drawn
without replacement, reshuffled every pass over the data.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch

from quant.calibrate.layer_rows import LayerRows
from quant.calibrate.ste import bias_in_range, round_ste
from quant.execute import OP_TABLE, apply_activation
from quant.formats import GroupParams, QuantParams, fit_group, fit_int_params
from quant.formats.uniform_fit import (DEGENERATE_SCALE_RATIO, float32_at_least,
                                       settle_channel_scales)
from quant.graph import LayerRecord


@dataclass(frozen=True)
class LayerProblem:
    """What AdaQuant needs to know about one layer.

    Attributes:
        rec: the conv2d / linear record (its ``weight`` and ``bias`` are the float ones).
        x_q: the quantized layer's input, float32, conv (N, C, H, W) / linear (N, ..., in).
        target: the float layer's output after its fused activation, float32 (N, K, OH, OW) /
            (N, ..., K).
        params: the weight's initial ``QuantParams`` (uniform IntFormat, per tensor or axis 0)
            or ``GroupParams`` (``GroupIntFormat``: one scale per (output channel, group)).
        input_scale: real value of one input code ``s_x``; the bias is stored as integer codes
            of ``s_x · s_w`` (``QuantParams``; a group layer keeps a float bias).
        bias_limit: largest bias code magnitude allowed (unused for a group layer).
        weight_fq: the layer's current fake-quant weight (float32) and bias (float32 or None),
            the "before" of the comparison.
        held_out: indices (int64) of the samples (along N) kept out of training and used to
            choose among checkpoints; None: a quarter of the output positions is held out.
    """

    rec: LayerRecord
    x_q: torch.Tensor
    target: torch.Tensor
    params: QuantParams | GroupParams
    input_scale: float
    bias_limit: int
    weight_fq: tuple[torch.Tensor, torch.Tensor | None]
    held_out: torch.Tensor | None = None


@dataclass(frozen=True)
class LayerFit:
    """Result of AdaQuant on one layer.

    Attributes:
        weight: float32, the weight's shape: the decoded optimized codes ``(codes - zp) · s``.
        bias: float32 (K,) optimized bias (its integer codes are in range; float for a group
            layer), or None.
        params: the optimized ``QuantParams`` or ``GroupParams`` (float32-exact scales, zero
            points unchanged).
        mse_before / mse_after: mean squared error of the layer output (after its fused
            activation) against the float target, over all of ``x_q``, before and after.
        held_before / held_after: the same over the held-out output positions only (those of
            ``LayerProblem.held_out``; see ``fit_layer``): what ``improved`` compares.
        step: the Adam step whose parameters were chosen (0: the starting ones).
        diverged_at: the first Adam step whose training loss was not finite (the fit stopped
            there and keeps a checkpoint from before it), or 0.
    """

    weight: np.ndarray
    bias: np.ndarray | None
    params: QuantParams | GroupParams
    mse_before: float = math.nan
    mse_after: float = math.nan
    held_before: float = math.nan
    held_after: float = math.nan
    step: int = 0
    diverged_at: int = 0

    @property
    def improved(self) -> bool:
        """The optimized layer is better than the old one on data it was not trained on."""
        return bool(math.isfinite(self.held_after) and self.held_after < self.held_before)

    @property
    def fallback(self) -> str:
        """Why the layer keeps its round-to-nearest (or earlier) parameters; "" if improved."""
        if self.improved:
            return ""
        why = (f"held-out error {self.held_after:.4g} not below {self.held_before:.4g}"
               if math.isfinite(self.held_after) else "held-out error is not finite")
        if self.diverged_at:
            why = f"loss diverged (not finite) at step {self.diverged_at}; {why}"
        return why

    def tensors(self, input_scale: float) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The fake-quant weight and bias tensors of this fit, as ``QuantizedModel`` builds them."""
        w = torch.from_numpy(self.weight.astype(np.float32))
        if self.bias is None:
            return w, None
        if isinstance(self.params, GroupParams):  # the group format keeps a float bias
            return w, torch.from_numpy(self.bias.astype(np.float32))
        scale = _bias_scale(self.params, input_scale, self.weight.shape[0])
        codes = np.rint(self.bias.astype(np.float64) / scale)
        return w, torch.from_numpy((codes * scale).astype(np.float32))


def _bias_scale(params: QuantParams, input_scale: float, k: int) -> np.ndarray:
    return input_scale * np.broadcast_to(np.asarray(params.scale, dtype=np.float64), (k,))


def _channel_view(a: torch.Tensor, ndim: int) -> torch.Tensor:
    """Per-channel (K,) or per-tensor () parameter shaped to broadcast over a weight."""
    return a.reshape((-1,) + (1,) * (ndim - 1)) if a.dim() == 1 else a


class _Quantizer:
    """The differentiable quantized layer: latent weight ``u`` (code units of ``s0``), log
    scale offset ``t``, bias offset ``beta``.

    A group layer (``GroupParams``) holds ``u`` as blocks (K, G, group_size·R·S) of the weight
    (``quant.formats.group``) and its scales (K, G) as (K, G, 1); ``weight()`` reshapes back.
    Its bias stays float (no integer codes)."""

    def __init__(self, prob: LayerProblem, params: QuantParams | GroupParams,
                 rms: torch.Tensor) -> None:
        p, w = params, prob.rec.weight
        self.group = isinstance(p, GroupParams)
        self.fmt = p.fmt.code_format if self.group else p.fmt
        self.params_fmt = p.fmt
        self.shape = tuple(w.shape)
        w64 = torch.from_numpy(w.astype(np.float64))
        if self.group:
            w64 = w64.reshape(p.channels, p.groups, -1)
        nd = w64.dim()
        self.s0 = self._view(torch.tensor(np.asarray(p.scale), dtype=torch.float64), nd)
        self.zp = self._view(torch.tensor(np.asarray(p.zero_point), dtype=torch.float64), nd)
        u0 = w64 / self.s0
        self.u = u0.to(torch.float32).requires_grad_(True)
        self.t = torch.zeros(np.asarray(p.scale).shape, dtype=torch.float32, requires_grad=True)
        self.s0_f, self.zp_f = self.s0.float(), self.zp.float()
        self.b0 = None if prob.rec.bias is None else torch.from_numpy(prob.rec.bias.copy())
        self.beta = None if self.b0 is None else torch.zeros_like(self.b0, requires_grad=True)
        self.rms = rms
        self.s_x = prob.input_scale
        self.limit = prob.bias_limit

    def _view(self, a: torch.Tensor, ndim: int) -> torch.Tensor:
        """A scale-shaped tensor (per tensor (), per channel (K,), per group (K, G)) shaped to
        broadcast over ``u``."""
        return a.unsqueeze(-1) if self.group else _channel_view(a, ndim)

    def snapshot(self) -> list[torch.Tensor]:
        return [v.detach().clone() for v in self.variables()]

    def restore(self, values: list[torch.Tensor]) -> None:
        with torch.no_grad():
            for v, saved in zip(self.variables(), values):
                v.copy_(saved)

    def variables(self) -> list[torch.Tensor]:
        return [self.u, self.t] + ([] if self.beta is None else [self.beta])

    def groups(self) -> list[dict]:
        out = [{"params": [self.u], "name": "weight"}, {"params": [self.t], "name": "scale"}]
        if self.beta is not None:
            out.append({"params": [self.beta], "name": "bias"})
        return out

    def weight(self) -> torch.Tensor:
        ratio = torch.exp(-self._view(self.t, self.u.dim()))
        codes = (round_ste(self.u * ratio) + self.zp_f).clamp(self.fmt.qmin, self.fmt.qmax)
        return ((codes - self.zp_f) * (self.s0_f / ratio)).reshape(self.shape)

    def bias(self) -> torch.Tensor | None:
        if self.beta is None:
            return None
        b = self.b0 + self.rms * self.beta
        if self.group:  # float bias: what QuantizedModel adds
            return b.float()
        scale = self.s_x * (self.s0.reshape(-1) * torch.exp(self.t.double())).reshape(-1)
        codes = round_ste(b.double() / scale).clamp(-self.limit, self.limit)
        return (codes * scale).float()

    def final(self) -> tuple[np.ndarray, np.ndarray | None, QuantParams | GroupParams]:
        """Exact (numpy float64) codes of the optimized parameters, decoded."""
        with torch.no_grad():
            s = (self.s0.reshape(-1) * torch.exp(self.t.double().reshape(-1))).numpy()
            if s.size > 1:  # the floor of settle_channel_scales (requantization multipliers)
                s = np.maximum(s, s.max() * DEGENERATE_SCALE_RATIO)
            s = float32_at_least(s).reshape(tuple(self.t.shape))
            w_latent = (self.u.double() * self.s0).reshape(self.shape).numpy()
            zp = self.zp.reshape(-1).numpy().astype(np.int64).reshape(s.shape)
            if self.group:
                params = GroupParams(s, zp, self.params_fmt)
            else:
                params = QuantParams(s, zp, 0 if s.ndim == 1 else None, self.fmt)
            weight = params.dequantize(params.quantize(w_latent)).astype(np.float32)
            if self.beta is None:
                return weight, None, params
            if self.group:
                return weight, (self.b0 + self.rms * self.beta).numpy().astype(np.float32), params
            b = (self.b0 + self.rms * self.beta).numpy()
            scale = _bias_scale(params, self.s_x, weight.shape[0])
            return weight, bias_in_range(b, scale, self.limit), params


def layer_mse(rec: LayerRecord, x_q: torch.Tensor, target: torch.Tensor, w: torch.Tensor,
              b: torch.Tensor | None) -> float:
    """Mean squared error of ``act(op(x_q, w) + b)`` against ``target`` over every element."""
    with torch.no_grad():
        y = apply_activation(rec, OP_TABLE[rec.op](rec, [x_q], w, b))
        return float(torch.mean((y.double() - target.double()) ** 2))


def fit_layer(prob: LayerProblem, *, iters: int, lr: float, batch_size: int,
              generator: torch.Generator, lr_ratios: tuple[float, float, float] = (1.0, 1.0, 1.0),
              checkpoints: int = 4) -> LayerFit:
    """AdaQuant on one layer (module docstring).

    ``lr``: Adam learning rate, decayed to 0 on a cosine schedule; the weight, scale and bias
    groups use ``lr`` times ``lr_ratios``.  ``generator`` draws the output positions.  The
    held-out output positions (those of the samples ``prob.held_out``; without them a random
    quarter of the positions) are never trained on, and every choice is made on them: the
    starting scale (``prob.params`` or a minimum-weight-MSE clipping fit), the best of the
    parameters at the start and at ``checkpoints`` evenly spaced steps (scored on up to
    ``4 · batch_size`` held-out positions: early stopping against a fit to the few calibration
    samples, and against the oscillation of rounded weights that the straight-through
    estimator allows), and finally ``LayerFit.improved``, the error of the result against the
    layer as it was over all the held-out positions.  A step whose training loss is not finite
    stops the optimization (``LayerFit.diverged_at``); the best checkpoint before it is kept,
    and still has to beat the layer as it was.
    """
    rows = LayerRows(prob.rec, prob.x_q)
    y_rows = rows.output_rows(prob.target)  # (G, positions, K/G)
    rms = torch.sqrt(torch.mean(y_rows.double() ** 2, dim=1)).float().reshape(-1)
    rms = rms.clamp_min(1e-8)
    train, held = _split(rows, prob.held_out, generator)
    p = min(batch_size, train.shape[0])
    scored = held[:4 * p]

    def score(q: _Quantizer) -> float:
        with torch.no_grad():
            return _subset_loss(prob.rec, rows, y_rows, scored, q.weight(), q.bias(), p)

    q, best, chosen, diverged = None, math.inf, 0, 0
    for params in _initial_params(prob):
        cand = _Quantizer(prob, params, rms)
        loss = score(cand)
        if q is None or loss < best:
            q, best = cand, loss
    saved = q.snapshot()
    groups = q.groups()
    for g, ratio in zip(groups, lr_ratios):
        g["lr"] = g["base_lr"] = lr * ratio
    opt = torch.optim.Adam(groups, lr=lr)
    check_at = {round(iters * (i + 1) / checkpoints) for i in range(checkpoints)}
    order, pos = train[torch.randperm(train.shape[0], generator=generator)], 0
    for step in range(iters):
        if pos + p > order.shape[0]:
            order, pos = train[torch.randperm(train.shape[0], generator=generator)], 0
        idx = order[pos:pos + p]
        pos += p
        loss = _rows_loss(prob.rec, rows, y_rows, idx, q.weight(), q.bias())
        if not torch.isfinite(loss):
            diverged = step + 1
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        decay = 0.5 * (1.0 + math.cos(math.pi * step / iters))
        for g in groups:
            g["lr"] = g["base_lr"] * decay
        opt.step()
        if step + 1 in check_at:
            loss = score(q)
            if loss < best:
                best, saved, chosen = loss, q.snapshot(), step + 1
    q.restore(saved)
    weight, bias, params = q.final()
    fit = LayerFit(weight, bias, params, step=chosen, diverged_at=diverged)
    before, after = prob.weight_fq, fit.tensors(prob.input_scale)
    chunk = max(p, 4096)
    return dataclasses.replace(
        fit, mse_before=layer_mse(prob.rec, prob.x_q, prob.target, *before),
        mse_after=layer_mse(prob.rec, prob.x_q, prob.target, *after),
        held_before=_subset_loss(prob.rec, rows, y_rows, held, *before, chunk),
        held_after=_subset_loss(prob.rec, rows, y_rows, held, *after, chunk))


def _split(rows: LayerRows, held_out: torch.Tensor | None,
           generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(training positions, held-out positions in random order): all the positions of the
    ``held_out`` samples, or without them a random quarter of the positions (with fewer than 4
    positions, all of them both train and score)."""
    if held_out is not None:
        mask = torch.zeros(rows.samples, dtype=torch.bool)
        mask[held_out] = True
        held = rows.sample_positions(held_out)
        train = rows.sample_positions(torch.nonzero(~mask).reshape(-1))
        return train, held[torch.randperm(held.shape[0], generator=generator)]
    order = torch.randperm(rows.n_rows, generator=generator)
    cut = rows.n_rows // 4
    return (order[cut:], order[:cut]) if cut else (order, order)


def _initial_params(prob: LayerProblem) -> list[QuantParams | GroupParams]:
    """The layer's current weight parameters and a minimum-weight-MSE clipping fit (per channel:
    degenerate channels settled as ``QuantizedModel`` settles them, and a channel whose bias
    codes would leave the allowed range at the fitted scale keeps its current scale; per
    group: ``fit_group`` with MSE clipping, which settles degenerate blocks)."""
    fmt = prob.params.fmt
    if isinstance(prob.params, GroupParams):
        mse = fit_group(prob.rec.weight, dataclasses.replace(fmt, clipping="mse"))
        return [prob.params, GroupParams(mse.scale, mse.zero_point, fmt)]
    mse = fit_int_params(prob.rec.weight, dataclasses.replace(fmt, clipping="mse"))
    mse = QuantParams(mse.scale, mse.zero_point, mse.axis, fmt)
    if mse.per_channel and prob.params.per_channel:
        mse = settle_channel_scales(prob.rec.weight, mse)[0]
        if prob.rec.bias is not None:
            codes = np.rint(prob.rec.bias.astype(np.float64) / (prob.input_scale * mse.scale))
            keep = np.abs(codes) > prob.bias_limit
            if keep.any():
                mse = QuantParams(np.where(keep, prob.params.scale, mse.scale),
                                  np.where(keep, prob.params.zero_point, mse.zero_point),
                                  mse.axis, fmt)
    return [prob.params, mse]


def _rows_loss(rec: LayerRecord, rows: LayerRows, y_rows: torch.Tensor, idx: torch.Tensor,
               w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """Mean squared output error (after the fused activation) at output positions ``idx`` of
    the layer with weight ``w`` and bias ``b``."""
    out = rows.product(rows.patches(idx), rows.weight_matrix(w))
    if b is not None:
        out = out + rows.channels(b)
    return torch.mean((apply_activation(rec, out) - y_rows[:, idx]) ** 2)


def _subset_loss(rec: LayerRecord, rows: LayerRows, y_rows: torch.Tensor, idx: torch.Tensor,
                 w: torch.Tensor, b: torch.Tensor | None, chunk: int) -> float:
    """``_rows_loss`` over ``idx``, ``chunk`` positions at a time, without gradients."""
    total = 0.0
    with torch.no_grad():
        for start in range(0, idx.shape[0], chunk):
            part = idx[start:start + chunk]
            total += float(_rows_loss(rec, rows, y_rows, part, w, b)) * part.shape[0]
    return total / idx.shape[0]
