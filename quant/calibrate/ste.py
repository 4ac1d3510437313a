"""Differentiable fake quantization with the straight-through estimator (STE).

The forward values are exactly those of ``QuantizedModel.forward`` (see ``quant.model``: the
float64 activation rounding, the decoded weight codes, the integer bias codes times
``s_x · s_w``); the backward pass treats rounding as the identity (Bengio et al., "Estimating
or Propagating Gradients Through Stochastic Neurons for Conditional Computation", 2013) and
passes no gradient where a value was clamped to the end of its code range.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from quant.calibrate.bias_correction import _layer_of, _torch_weights
from quant.calibrate.observers import REQUANTIZING_OPS
from quant.calibrate.walk import GraphWalk, ParamMap
from quant.execute import float_params
from quant.formats import QuantParams
from quant.graph import WEIGHTED_OPS, LayerRecord


class _FakeQuant(torch.autograd.Function):
    """Per-tensor ``fq(t)`` of ``quant.model`` (float64 arithmetic, float32 result); gradient
    1 where the code was not clamped, 0 where it was."""

    @staticmethod
    def forward(ctx: Any, t: torch.Tensor, scale: float, lo: int,  # type: ignore[override]
                hi: int) -> torch.Tensor:
        q = t.detach().to(torch.float64, copy=True).div_(scale).round_()
        ctx.save_for_backward((q >= lo) & (q <= hi))
        return q.clamp_(lo, hi).mul_(scale).to(torch.float32)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        (inside,) = ctx.saved_tensors
        return grad * inside, None, None, None


def fake_quant_act(t: torch.Tensor, params: QuantParams) -> torch.Tensor:
    """Per-tensor fake quantization of ``t`` (any shape) with STE gradients; values bit-equal
    to the fake-quant model's."""
    zp = int(params.zero_point)
    return _FakeQuant.apply(t, float(params.scale), params.fmt.qmin - zp, params.fmt.qmax - zp)


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """``round(x)`` (half to even) forward, identity backward."""
    return x + (torch.round(x) - x).detach()


def bias_scale(model: Any, name: str) -> np.ndarray:
    """``s_x · s_w`` per output channel of weighted layer ``name``, float64 (K,): the real value
    of one bias code (the same arithmetic as ``QuantizedModel``)."""
    rec = model.graph[name]
    s_x = float(model.act_params(rec.inputs[0]).scale)
    code_scale = model.weight_entry(name).code_scale(model.weight_params(name))
    return s_x * np.broadcast_to(np.asarray(code_scale, dtype=np.float64), (rec.weight.shape[0],))


def bias_code_limit(bits: int) -> int:
    """Largest bias code magnitude a step may produce at ``bits`` (``QuantConfig.bias_bits``):
    the signed range less a margin where float32 cannot hold every integer, so that
    ``rint(float32(code · scale) / scale)`` stays in range."""
    lim = 2 ** (bits - 1) - 1
    return lim - (lim >> 22)


def bias_in_range(b: np.ndarray, scale: np.ndarray, limit: int) -> np.ndarray:
    """A float32 copy of bias ``b`` (K,) whose codes ``rint(b / scale)`` (float64) lie in
    ``[-limit, limit]``: out-of-range entries are set to the decoded limit code."""
    b = np.asarray(b, dtype=np.float32).copy()
    codes = np.rint(b.astype(np.float64) / scale)
    over = np.abs(codes) > limit
    if over.any():
        b[over] = (np.clip(codes[over], -limit, limit) * scale[over]).astype(np.float32)
    return b


def fake_quant_bias(b: torch.Tensor, scale: torch.Tensor, limit: int) -> torch.Tensor:
    """``float32(clamp(rint(b / scale), -limit, limit) · scale)`` computed in float64, STE
    gradient.  ``b``: float32 (K,); ``scale``: float64 (K,) (``bias_scale``)."""
    codes = round_ste(b.to(torch.float64) / scale).clamp(-limit, limit)
    return (codes * scale).to(torch.float32)


def model_tensors(model: Any) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
    """The parameter tensors the fake-quant forward of ``model`` (a ``QuantizedModel``) uses:
    per weighted layer the decoded weight codes and the bias (integer codes times
    ``s_x · s_w``, or the float bias of a family without integer bias); float ops (layernorm)
    keep their float parameters.  float32 tensors, no gradient."""
    out = {name: p for name, p in float_params(model.graph).items()
           if model.graph[name].op not in WEIGHTED_OPS}
    for rec in model.graph:
        if rec.op in WEIGHTED_OPS:
            out[rec.name] = _torch_weights(_layer_of(model, rec.name))
    return out


class _Hooks:
    """The fake-quant model's ``post`` (STE output quantization) and ``pre`` (input binarizers,
    STE through the binarization) hooks."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def post(self, rec: LayerRecord, y: torch.Tensor) -> torch.Tensor:
        if rec.op in REQUANTIZING_OPS:
            return fake_quant_act(y, self.model.act_params(rec.name))
        return y

    def pre(self, rec: LayerRecord, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        if rec.op not in WEIGHTED_OPS or self.model.binary_input(rec.name) is None:
            return xs
        x = xs[0]
        s_x = float(self.model.act_params(rec.inputs[0]).scale)
        centred = torch.round(x.detach().to(torch.float64) / s_x).numpy()
        zp = int(np.asarray(self.model.act_params(rec.inputs[0]).zero_point))
        planes = self.model.binarize_input(rec.name, centred + zp)
        xb = torch.from_numpy((planes.dequantize() * s_x).astype(np.float32))
        return [x + (xb - x).detach()]


def fake_quant_walk(model: Any, x: torch.Tensor,
                    params: ParamMap | None = None) -> GraphWalk:
    """A ``GraphWalk`` of the fake-quant forward of ``model`` on float input ``x`` (N, ...),
    with STE gradients; ``params`` (default ``model_tensors(model)``) may hold tensors that
    require grad."""
    hooks = _Hooks(model)
    return GraphWalk(model.graph, x, model_tensors(model) if params is None else params,
                     post=hooks.post, pre=hooks.pre)


def ste_forward(model: Any, x: torch.Tensor, params: Mapping[str, tuple[torch.Tensor,
                torch.Tensor | None]] | None = None) -> torch.Tensor:
    """Output of the fake-quant forward of ``model`` (float32), differentiable with respect to
    any tensor in ``params`` that requires grad; with ``params=None`` it equals
    ``model.forward(x)`` exactly."""
    return fake_quant_walk(model, x, params).run()
