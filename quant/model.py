"""``quantize(model, QuantConfig(...), calibration_data)`` -> ``QuantizedModel``.

Fake-quant semantics (the integer program matches these up to requantization rounding):

* ``fq(t) = (clamp(round_half_even(t / s) + zp, qmin, qmax) - zp) · s``, computed in float64
  from the float32 tensor ``t`` and cast back to float32.  ``quantize_input`` uses exactly this
  arithmetic (float32 input, float64 division), so its codes are those of the fake-quant input.
* input: ``fq(x)``.
* conv2d / linear: ``y = op(x_fq, w_fq) + bias_codes · s_x · s_w`` in float32 (torch CPU
  kernels), with ``w_fq = float32((codes - zp_w) · s_w)`` and the bias term computed in float64
  and cast to float32; then the fused activation clamp; then ``fq`` with the record's params.
* add: ``a_fq + b_fq``, clamp, ``fq``.  avgpool2d: ``avg(x_fq)``, ``fq``.  concat:
  ``fq(cat(...))``.  clamp: clamp, ``fq``.  maxpool2d / flatten: no new quantization (their
  output parameters are their input's).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import torch
from torch import nn

from quant._validate import check_int
from quant.calibrate import REQUANTIZING_OPS, calibrate_activations
from quant.capture import capture
from quant.errors import CalibrationError, QuantError
from quant.execute import float_params, run_graph
from quant.formats import IntFormat, QuantParams, fit_params
from quant.graph import WEIGHTED_OPS, LayerGraph, LayerRecord

DEFAULT_WEIGHT_FORMAT = IntFormat(bits=8, signed=True, symmetric=True, per_channel=True)
DEFAULT_ACTIVATION_FORMAT = IntFormat(bits=8, signed=False, symmetric=False, per_channel=False)


@dataclass(frozen=True)
class QuantConfig:
    """How to quantize a model.

    Attributes:
        weight: format of conv2d / linear weights (per-channel means axis 0, output channels).
        activation: per-tensor format of every activation (record outputs and the input).
        bias_bits: width of the bias codes (int32 by default); codes outside it are an error.
        layer_weight: per-layer weight format overrides, record name -> format.
        reservoir_size: values kept per activation for percentile / MSE calibration.
        seed: seed of the calibration reservoirs.
    """

    weight: IntFormat = DEFAULT_WEIGHT_FORMAT
    activation: IntFormat = DEFAULT_ACTIVATION_FORMAT
    bias_bits: int = 32
    layer_weight: Mapping[str, IntFormat] = field(default_factory=dict)
    reservoir_size: int = 65536
    seed: int = 0

    def __post_init__(self) -> None:
        owner = "QuantConfig"
        for attr in ("weight", "activation"):
            if not isinstance(getattr(self, attr), IntFormat):
                raise QuantError(f"The {attr!r} parameter of QuantConfig must be an IntFormat. "
                                 f"Got {getattr(self, attr)!r} instead.")
        if self.activation.per_channel:
            raise QuantError("The 'activation' parameter of QuantConfig must be a per-tensor "
                             "format (per_channel=False). Got per_channel=True instead.")
        check_int(self.bias_bits, "bias_bits", owner, 8, 32)
        check_int(self.reservoir_size, "reservoir_size", owner, 16, 2**26)
        check_int(self.seed, "seed", owner, 0, 2**63 - 1)
        if not isinstance(self.layer_weight, Mapping):
            raise QuantError("The 'layer_weight' parameter of QuantConfig must be a mapping "
                             f"from layer name to IntFormat. Got {self.layer_weight!r} instead.")
        for name, fmt in self.layer_weight.items():
            if not isinstance(fmt, IntFormat):
                raise QuantError(f"QuantConfig.layer_weight[{name!r}] must be an IntFormat; "
                                 f"got {fmt!r}")
        object.__setattr__(self, "layer_weight", MappingProxyType(dict(self.layer_weight)))

    def weight_format(self, name: str) -> IntFormat:
        return self.layer_weight.get(name, self.weight)


def _fq_tensor(t: torch.Tensor, p: QuantParams) -> torch.Tensor:
    """Per-tensor fake quantization in float64, returned as float32 (see module docstring)."""
    s, zp = float(p.scale), int(p.zero_point)
    # clamp(round(t/s) + zp, qmin, qmax) - zp == clamp(round(t/s), qmin - zp, qmax - zp):
    # integers are exact in float64, so this saves two passes over large tensors.
    q = t.to(torch.float64, copy=True).div_(s).round_().clamp_(p.fmt.qmin - zp, p.fmt.qmax - zp)
    return q.mul_(s).to(torch.float32)


class QuantizedModel:
    """A captured graph with quantization parameters for every weight and activation.

    Use ``quantize(...)`` to build one.  Record names are those of ``graph``.
    """

    def __init__(self, graph: LayerGraph, config: QuantConfig,
                 act_params: Mapping[str, QuantParams]) -> None:
        self.graph = graph
        self.config = config
        self._act = dict(act_params)
        self._w_params: dict[str, QuantParams] = {}
        self._w_codes: dict[str, np.ndarray] = {}
        self._b_codes: dict[str, np.ndarray | None] = {}
        unknown = sorted(set(config.layer_weight) - set(graph.names("conv2d"))
                         - set(graph.names("linear")))
        if unknown:
            raise QuantError(f"QuantConfig.layer_weight names {unknown} that are not conv2d or "
                             f"linear layers; e.g. {graph.names('conv2d')[:3]}")
        for rec in graph:
            if rec.op in REQUANTIZING_OPS and rec.name not in self._act:
                raise CalibrationError(f"layer {rec.name!r} has no activation parameters")
            if rec.op in WEIGHTED_OPS:
                self._quantize_weights(rec)
        self._fq_params = self._torch_params()
        self._float_params = float_params(graph)

    # ---- construction ----------------------------------------------------------------
    def _quantize_weights(self, rec: LayerRecord) -> None:
        params = fit_params(rec.weight, self.config.weight_format(rec.name))
        self._w_params[rec.name] = params
        self._w_codes[rec.name] = params.quantize(rec.weight)
        self._b_codes[rec.name] = None if rec.bias is None else self._bias_codes(rec, params)

    def _bias_scale(self, rec: LayerRecord) -> np.ndarray:
        """``s_x · s_w`` per output channel, float64 (K,)."""
        s_x = float(self.act_params(rec.inputs[0]).scale)
        s_w = np.broadcast_to(self._w_params[rec.name].scale, (rec.weight.shape[0],))
        return s_x * s_w

    def _bias_codes(self, rec: LayerRecord, params: QuantParams) -> np.ndarray:
        codes = np.rint(rec.bias.astype(np.float64) / self._bias_scale(rec))
        lim = 2 ** (self.config.bias_bits - 1)
        if np.any(codes < -lim) or np.any(codes > lim - 1):
            worst = float(np.abs(codes).max())
            raise QuantError(f"layer {rec.name!r}: bias codes reach {worst:.4g}, outside the "
                             f"int{self.config.bias_bits} range [{-lim}, {lim - 1}]")
        return codes.astype(np.int64)

    def _torch_params(self) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
        out = {}
        for name, params in self._w_params.items():
            w = torch.from_numpy(params.dequantize(self._w_codes[name]).astype(np.float32))
            b_codes = self._b_codes[name]
            b = None
            if b_codes is not None:
                b_real = b_codes.astype(np.float64) * self._bias_scale(self.graph[name])
                b = torch.from_numpy(b_real.astype(np.float32))
            out[name] = (w, b)
        return out

    # ---- parameters ------------------------------------------------------------------
    def _weighted(self, name: str) -> LayerRecord:
        rec = self.graph[name]
        if rec.op not in WEIGHTED_OPS:
            raise QuantError(f"layer {name!r} is a {rec.op} record and has no weights; "
                             f"weighted layers are conv2d / linear")
        return rec

    def weight_params(self, name: str) -> QuantParams:
        """Weight QuantParams of conv2d / linear ``name`` (per channel: scale (K,), axis 0)."""
        self._weighted(name)
        return self._w_params[name]

    def weight_codes(self, name: str) -> np.ndarray:
        """Integer weight codes, shape of the weight, dtype ``fmt.code_dtype`` (read-only)."""
        self._weighted(name)
        codes = self._w_codes[name].view()
        codes.setflags(write=False)
        return codes

    def bias_codes(self, name: str) -> np.ndarray | None:
        """int64 (K,) ``rint(bias / (s_x · s_w[k]))``, s_x the layer input's scale; None if the
        layer has no bias."""
        self._weighted(name)
        codes = self._b_codes[name]
        return None if codes is None else codes.copy()

    def act_params(self, name: str) -> QuantParams:
        """Per-tensor QuantParams of the OUTPUT of record ``name`` (the input record: the model
        input).  maxpool2d / flatten return their input's parameters."""
        rec = self.graph[name]
        while rec.op not in REQUANTIZING_OPS:
            rec = self.graph[rec.inputs[0]]
        return self._act[rec.name]

    def has_own_act_params(self, name: str) -> bool:
        """Whether record ``name`` requantizes its output (False for maxpool2d / flatten)."""
        return self.graph[name].op in REQUANTIZING_OPS

    def weight_format(self, name: str) -> IntFormat:
        self._weighted(name)
        return self.config.weight_format(name)

    # ---- execution -------------------------------------------------------------------
    def quantize_input(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        """Integer codes of the model input, shape of ``x``; same arithmetic as ``forward``."""
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().to(torch.float32).numpy()
        return self.act_params(self.graph.input_name).quantize(np.asarray(x, dtype=np.float32))

    def _post(self, rec: LayerRecord, y: torch.Tensor) -> torch.Tensor:
        if rec.op in REQUANTIZING_OPS:
            return _fq_tensor(y, self._act[rec.name])
        return y

    def run(self, x: torch.Tensor | np.ndarray, mode: str = "fake") -> dict[str, np.ndarray]:
        """Every record's output, float32 numpy, for ``mode`` "fake" (dequantized fake-quant
        values) or "float" (the BN-folded float graph)."""
        if mode not in ("fake", "float"):
            raise QuantError(f"run: mode must be 'fake' or 'float'; got {mode!r}")
        outs = self._run(x, mode, keep=True)
        return {name: t.numpy() for name, t in outs.items()}

    def _run(self, x: torch.Tensor | np.ndarray, mode: str, keep: bool) -> dict[str, torch.Tensor]:
        t = torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
        t = t.detach().cpu().to(torch.float32)
        if mode == "fake":
            return run_graph(self.graph, t, self._fq_params, post=self._post, keep=keep)
        return run_graph(self.graph, t, self._float_params, keep=keep)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fake-quant model output (float32, dequantized)."""
        return self._run(x, "fake", keep=False)[self.graph.output_name]

    __call__ = forward

    def float_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Output of the BN-folded float graph (float32)."""
        return self._run(x, "float", keep=False)[self.graph.output_name]

    def __repr__(self) -> str:
        return (f"QuantizedModel({len(self.graph)} records, weight={self.config.weight.describe()}"
                f", activation={self.config.activation.describe()})")


def quantize(model: nn.Module, config: QuantConfig | None = None,
             calibration_data: Iterable[torch.Tensor] = (),
             example_input: torch.Tensor | None = None) -> QuantizedModel:
    """Capture ``model``, calibrate activations on ``calibration_data`` and quantize weights.

    Args:
        model: torch module of supported ops (see ``quant.capture``).
        config: formats; default int8 symmetric per-channel weights, uint8 asymmetric
            per-tensor activations.
        calibration_data: batches of float input tensors (N, ...); at least one.
        example_input: input used for capture; default: the first calibration sample.
    Raises:
        CalibrationError: empty calibration data; UnsupportedOpError: capture failed.
    """
    config = QuantConfig() if config is None else config
    if not isinstance(config, QuantConfig):
        raise QuantError(f"quantize: config must be a QuantConfig; got {type(config).__name__}")
    batches = iter(calibration_data)
    first = next(batches, None)
    if first is None:
        raise CalibrationError("calibration_data is empty; pass at least one batch")
    if not isinstance(first, torch.Tensor):
        raise CalibrationError(f"calibration batch 0 is a {type(first).__name__}; expected a "
                               "torch.Tensor")
    graph = capture(model, first[:1] if example_input is None else example_input)

    def all_batches():
        yield first
        yield from batches

    act = calibrate_activations(graph, all_batches(), config.activation,
                                config.reservoir_size, config.seed)
    return QuantizedModel(graph, config, act)
