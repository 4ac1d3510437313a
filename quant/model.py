"""``quantize(model, QuantConfig(...), calibration_data)`` -> ``QuantizedModel``.

Fake-quant semantics (the integer program matches these up to requantization rounding):

* ``fq(t) = (clamp(round_half_even(t / s) + zp, qmin, qmax) - zp) · s``, computed in float64
  from the float32 tensor ``t`` and cast back to float32.  ``quantize_input`` uses exactly this
  arithmetic (float32 input, float64 division), so its codes are those of the fake-quant input.
* input: ``fq(x)``.
* conv2d / linear: ``y = op(x_fq, w_fq) + bias_codes · s_x · s_w`` in float32 (torch CPU
  kernels), with ``w_fq = float32((codes - zp_w) · s_w)`` and the bias term computed in float64
  and cast to float32; then the fused activation clamp; then ``fq`` with the record's params.
* conv_transpose2d: as conv2d, with ``F.conv_transpose2d`` (the record's output-channel-major
  weight codes are quantized per output channel, axis 0, and laid out back as torch's).
* binary conv2d / linear (a ``BinaryFormat`` weight): ``w_fq = float32(sum_j v_j b_j)`` and the
  float32 bias unchanged; a layer with an input binarizer (``QuantConfig.binary_inputs``) first
  turns its input codes ``c = round(x_fq / s_x)`` (centred) into sign planes and scales
  (``quant.binary_input.binarize_codes``) and uses ``x_b = float32(s_x · sum_i v_i b_i)``.
* add: ``a_fq + b_fq``, clamp, ``fq``.  avgpool2d: ``avg(x_fq)``, ``fq``.  concat:
  ``fq(cat(...))``.  clamp: clamp, ``fq``.  maxpool2d / flatten / reshape / transpose: no new
  quantization (their output parameters are their input's).
* matmul: ``fq(a_fq @ b_fq)`` (float32).  layernorm / gelu / softmax / lrn: the float32 torch
  op on the fake-quant input (float parameters: LayerNorm's gamma and beta are not quantized),
  then ``fq``: they run in float on a vector unit (hwsim computes lrn in float64: within one
  LSB).  slice: no new quantization.
* pointwise (sigmoid, hardsigmoid, hardswish, silu, tanh): a lookup table over the input codes,
  ``T[c] = clamp(round_half_even(fn((c - zp_x) s_x) / s_y) + zp_y)`` with the real value
  computed exactly (``quant.pointwise``; ``lookup_table(name)``): the output is
  ``(T[c] - zp_y) · s_y`` for the input code ``c`` of every element, as integer hardware with
  the same table computes it.  (The float model runs the float32 torch function.)
* mul: ``fq(a_fq · b_fq)`` (float32 product, numpy broadcasting), then the fused clamp.
  resize: nearest, the gather torch's interpolate performs (no new quantization); bilinear,
  torch's float32 interpolation of ``x_fq``, then ``fq`` with the input's parameters (the
  output stays on the input's grid).

Degenerate channels of per-channel int weights (e.g. a BatchNorm channel with gamma ~ 0 folded
into its conv: weights ~1e-9 beside ~1e-1, and a bias of order 1).  Fitted on its own, such a
channel's scale is so small that its bias codes ``rint(b / (s_x · s_w))`` overflow int32 and its
requantization multiplier ``s_x · s_w / s_y`` is too small for an integer program to store.
After fitting, with ``S`` the layer's largest channel scale and ``B = bias_bits``:

1. an all-zero channel gets scale ``S`` (not the placeholder 1.0 an empty range is given), so
   its bias is stored on the same step as its neighbours';
2. a scale below ``2^-16 · S`` is raised to ``2^-16 · S`` (``DEGENERATE_SCALE_RATIO``): the
   channel's requantization multiplier stays within 2^16 of the layer's largest (a dyadic
   ``m · 2^-shift`` holds nothing below 2^-33), and only weights 2^16 times smaller than the
   layer's widest channel's (typically far below an output step) are quantized more coarsely;
3. a channel whose bias codes leave the int``B`` range gets the smallest float32 scale that keeps
   them within ``±2^(B-2)``, half the range.  Its weight codes then use at most about half
   the code range (a dead channel's round to 0), so bias plus products fits a B-bit
   accumulator whenever a healthy channel's products do.  ONNX Runtime's ``quantize_static``
   raises the weight scale the same way (to the full int32 range).  The channel computes
   ``bias + (coarse weights) · x``, its float output to within its weights' size.  A scale
   needed above ``S`` means the bias is too large for int``B`` codes at the layer's scales:
   QuantError, naming the ``bias_bits`` that would do.

A ``DegenerateChannelWarning`` names the layer and the channels of each case.  Other channels
keep their fitted scales, and the adjusted scales are ordinary per-channel ``QuantParams``
scales, so lowering, the integer program and the fake-quant model need nothing else.  Weight
parameters fixed by a calibration step (``weight_params``) and other families (APoT, binary,
per-tensor) are used as fitted; a bias they cannot hold is an error.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from torch import nn

from quant._validate import check_int
from quant.binary_input import BinaryInput, binarize_codes
from quant.calibrate import REQUANTIZING_OPS, CalibrationState, calibrate
from quant.calibrate.pipeline_config import PipelineConfig
from quant.capture import capture
from quant.errors import CalibrationError, DegenerateChannelWarning, QuantError
from quant.execute import float_params, run_graph
from quant.formats import BinaryParams, IntFormat, QuantParams
from quant.formats.registry import FormatEntry, format_entry
from quant.formats.uniform_fit import float32_at_least, settle_channel_scales, with_channel_scales
from quant.graph import QUANTIZED_WEIGHT_OPS, LayerGraph, LayerRecord
from quant.pointwise import lookup_table

DEFAULT_WEIGHT_FORMAT = IntFormat(bits=8, signed=True, symmetric=True, per_channel=True)
DEFAULT_ACTIVATION_FORMAT = IntFormat(bits=8, signed=False, symmetric=False, per_channel=False)


@dataclass(frozen=True)
class QuantConfig:
    """How to quantize a model.

    Attributes:
        weight: format of conv2d / linear weights, any registered format (``IntFormat``:
            per-channel means axis 0, output channels; ``BinaryFormat``: axis 0 or None).
        activation: per-tensor format of every activation (record outputs and the input).
        bias_bits: width of the bias codes (int32 by default).  A per-channel int weight
            channel whose bias codes would leave this range at its fitted scale gets a larger
            weight scale instead (see "Degenerate channels" below); a bias that no scale up
            to the layer's largest holds, or one of another weight format, is an error naming
            the width that would do.  Binary layers keep a float bias (their output scale is
            not a product of two static scales).
        layer_weight: per-layer weight format overrides, record name -> format.
        layer_activation: per-record output format overrides (per-tensor IntFormat), record
            name -> format; e.g. 16-bit residual streams beside 8-bit layer inputs.
        binary_inputs: record name -> ``BinaryInput``: that conv2d / linear layer binarizes its
            input (per sample, or with running scales calibrated here).
        reservoir_size: values kept per activation for percentile / MSE calibration.
        seed: seed of the calibration reservoirs.
        calibration: what ``quantize`` does after capture: "none" (range calibration only,
            weights rounded to nearest), "light" or "advanced" (the post-training pipelines of
            ``quant.calibrate.pipeline``, with their defaults), or a
            ``quant.calibrate.PipelineConfig`` (candidate options, budgets, steps).

    Degenerate channels (per-channel int weights; the module docstring of ``quant.model`` has
    the details): an all-zero channel gets the layer's largest channel scale ``S``; a channel
    scale below ``2^-16 · S`` is raised to it; a channel whose bias codes leave the
    ``bias_bits`` range gets the smallest scale, up to ``S``, that keeps them within half of it
    (a dead channel, e.g. BatchNorm with gamma ~ 0 folded into the conv, then has weight codes
    near 0 and outputs its bias, as in float).  Each case warns with a
    ``quant.DegenerateChannelWarning`` naming the layer and channels; make it an error with
    ``warnings.simplefilter("error", quant.DegenerateChannelWarning)``.
    """

    weight: Any = DEFAULT_WEIGHT_FORMAT
    activation: IntFormat = DEFAULT_ACTIVATION_FORMAT
    bias_bits: int = 32
    layer_weight: Mapping[str, Any] = field(default_factory=dict)
    binary_inputs: Mapping[str, BinaryInput] = field(default_factory=dict)
    layer_activation: Mapping[str, IntFormat] = field(default_factory=dict)
    reservoir_size: int = 65536
    seed: int = 0
    calibration: Any = "none"

    def __post_init__(self) -> None:
        owner = "QuantConfig"
        PipelineConfig.of(self.calibration)
        if not isinstance(self.activation, IntFormat):
            raise QuantError("The 'activation' parameter of QuantConfig must be an IntFormat. "
                             f"Got {self.activation!r} instead.")
        _check_weight_format(self.weight, "The 'weight' parameter of QuantConfig")
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
            _check_weight_format(fmt, f"QuantConfig.layer_weight[{name!r}]")
        if not isinstance(self.binary_inputs, Mapping):
            raise QuantError("The 'binary_inputs' parameter of QuantConfig must be a mapping "
                             f"from layer name to BinaryInput. Got {self.binary_inputs!r} instead.")
        for name, b in self.binary_inputs.items():
            if not isinstance(b, BinaryInput):
                raise QuantError(f"QuantConfig.binary_inputs[{name!r}] must be a BinaryInput; "
                                 f"got {b!r}")
        if not isinstance(self.layer_activation, Mapping):
            raise QuantError("The 'layer_activation' parameter of QuantConfig must be a mapping "
                             f"from record name to IntFormat. Got {self.layer_activation!r} instead.")
        for name, fmt in self.layer_activation.items():
            if not isinstance(fmt, IntFormat) or fmt.per_channel:
                raise QuantError(f"QuantConfig.layer_activation[{name!r}] must be a per-tensor "
                                 f"IntFormat; got {fmt!r}")
        object.__setattr__(self, "layer_weight", MappingProxyType(dict(self.layer_weight)))
        object.__setattr__(self, "binary_inputs", MappingProxyType(dict(self.binary_inputs)))
        object.__setattr__(self, "layer_activation",
                           MappingProxyType(dict(self.layer_activation)))

    def weight_format(self, name: str) -> Any:
        return self.layer_weight.get(name, self.weight)


def _check_weight_format(fmt: Any, where: str) -> None:
    """A registered format that its family accepts for weights."""
    try:
        entry = format_entry(fmt)
    except QuantError as exc:
        raise QuantError(f"{where} must be a registered number format: {exc}") from None
    problem = entry.check_weight(fmt)
    if problem is not None:
        raise QuantError(f"{where}: {problem}")

def _in_bias_range(codes: np.ndarray, bits: int) -> bool:
    lim = 2 ** (bits - 1)
    return bool(np.all(codes >= -lim) and np.all(codes <= lim - 1))


def _bias_overflow(name: str, codes: np.ndarray, bits: int) -> str:
    lim = 2 ** (bits - 1)
    return (f"layer {name!r}: bias codes reach {float(np.abs(codes).max()):.4g}, outside the "
            f"int{bits} range [{-lim}, {lim - 1}]")


def _channels(mask: np.ndarray, shown: int = 8) -> str:
    """'channel 3' or 'channels [0, 5, ...] (12 of 64)'."""
    idx = np.flatnonzero(mask).tolist()
    if len(idx) == 1:
        return f"channel {idx[0]}"
    listed = ", ".join(map(str, idx[:shown])) + (", ..." if len(idx) > shown else "")
    return f"channels [{listed}] ({len(idx)} of {mask.size})"


def _scales_for_bias(bias: np.ndarray, s_x: float, scale: np.ndarray, bits: int,
                     cap: float) -> tuple[np.ndarray | None, np.ndarray]:
    """Per-channel weight scales with which the bias codes ``rint(bias / (s_x · scale))`` fit
    int``bits``: a channel outside it gets the smallest float32 scale that keeps its codes
    within ``±2^(bits-2)``.  Returns (scales, mask of the channels raised); scales is None when
    a channel would need more than ``cap``."""
    codes = np.rint(bias / (s_x * scale))
    lim = 2 ** (bits - 1)
    over = (codes < -lim) | (codes > lim - 1)
    if not over.any():
        return scale, over
    need = np.abs(bias) / (s_x * 2.0 ** (bits - 2))
    if np.any(need[over] > cap):
        return None, over & (need > cap)
    return np.where(over, np.maximum(scale, float32_at_least(need)), scale), over


def _warn_degenerate(rec: LayerRecord, zero: np.ndarray, floored: np.ndarray,
                     raised: np.ndarray, bits: int) -> None:
    """One DegenerateChannelWarning naming layer ``rec`` and the channels of each case."""
    parts = []
    if raised.any():
        parts.append(f"{_channels(raised)}: bias codes beyond int{bits} at the fitted scale, "
                     "scale raised until they fit in half of it (tiny weights round to 0: the "
                     "output is the bias)")
    if zero.any():
        parts.append(f"{_channels(zero)}: all-zero weights, given the layer's largest scale")
    if floored.any():
        parts.append(f"{_channels(floored)}: scale below 2^-16 of the layer's largest, raised "
                     "to that floor")
    where = f" ({rec.module_path})" if rec.module_path not in ("", rec.name) else ""
    warnings.warn(DegenerateChannelWarning(
        f"layer {rec.name!r}{where}: degenerate weight channels: {'; '.join(parts)}"),
        stacklevel=4)


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
                 act_params: Mapping[str, QuantParams],
                 binary_scales: Mapping[str, np.ndarray] | None = None,
                 weight_params: Mapping[str, Any] | None = None) -> None:
        """``binary_scales``: running input-binarizer scales (k,) in real units, per layer.
        ``weight_params``: layer name -> weight parameters fixed by a calibration step (e.g.
        AdaQuant's optimized scales), in the form the layer's format family fits them; those
        layers' weights are encoded with them instead of being fitted."""
        self.graph = graph
        self.config = config
        self._act = dict(act_params)
        self._w_params: dict[str, Any] = {}
        self._w_codes: dict[str, np.ndarray] = {}
        self._b_codes: dict[str, np.ndarray | None] = {}
        self._fixed_w_params = dict(weight_params or {})
        weighted = {r.name for r in graph if r.op in QUANTIZED_WEIGHT_OPS}
        for what, names in (("layer_weight", config.layer_weight),
                            ("binary_inputs", config.binary_inputs),
                            ("weight_params", self._fixed_w_params)):
            unknown = sorted(set(names) - weighted)
            if unknown:
                owner = "QuantizedModel" if what == "weight_params" else "QuantConfig"
                raise QuantError(f"{owner}.{what} names {unknown} that are not conv2d or "
                                 f"linear (or conv_transpose2d) layers; e.g. "
                                 f"{graph.names('conv2d')[:3]}")
        own = {r.name for r in graph if r.op in REQUANTIZING_OPS}
        unknown = sorted(set(config.layer_activation) - own)
        if unknown:
            raise QuantError(f"QuantConfig.layer_activation names {unknown} that are not records "
                             f"with their own output quantization; e.g. {sorted(own)[:3]}")
        for rec in graph:
            if rec.op in REQUANTIZING_OPS and rec.name not in self._act:
                raise CalibrationError(f"layer {rec.name!r} has no activation parameters")
            if rec.op in QUANTIZED_WEIGHT_OPS:
                self._quantize_weights(rec)
            elif rec.op == "pointwise":
                self.lookup_table(rec.name)  # built (and checked) once, here
        self._binary_scales = self._static_binary_scales(binary_scales or {})
        self._float_params = float_params(graph)
        # float ops (layernorm) keep their float parameters in the fake-quant model
        self._fq_params = {name: p for name, p in self._float_params.items()
                           if graph[name].op not in QUANTIZED_WEIGHT_OPS}
        self._fq_params.update(self._torch_params())

    # ---- construction ----------------------------------------------------------------
    def _quantize_weights(self, rec: LayerRecord) -> None:
        fmt = self.config.weight_format(rec.name)
        entry = format_entry(fmt)
        fixed = self._fixed_w_params.get(rec.name)
        try:
            params = entry.fit(rec.weight, fmt) if fixed is None else fixed
        except QuantError as exc:
            raise QuantError(f"layer {rec.name!r} ({fmt.describe()} weights): {exc}") from None
        if rec.name in self.config.binary_inputs and entry.name != "binary":
            raise QuantError(f"layer {rec.name!r}: an input binarizer needs binary weights; the "
                             f"layer's weight format is {fmt.describe()}")
        if fixed is None and isinstance(params, QuantParams) and params.per_channel:
            params = self._settle_channels(rec, params)
        self._w_params[rec.name] = params
        self._w_codes[rec.name] = entry.encode(params, rec.weight)
        has_int_bias = rec.bias is not None and entry.code_scale(params) is not None
        self._b_codes[rec.name] = self._bias_codes(rec) if has_int_bias else None

    def _static_binary_scales(self, real: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Running binarizer scales in input code units: real scales / s_x, float64 (k,)."""
        out = {}
        for name, b in self.config.binary_inputs.items():
            if b.scaling != "running":
                continue
            if name not in real:
                raise CalibrationError(f"layer {name!r}: running binarizer scales were not "
                                       "calibrated")
            s_x = float(self.act_params(self.graph[name].inputs[0]).scale)
            v = np.asarray(real[name], dtype=np.float64) / s_x
            v.setflags(write=False)
            out[name] = v
        return out

    def _bias_scale(self, rec: LayerRecord) -> np.ndarray:
        """``s_x · s_w`` per output channel, float64 (K,): s_w the real value of one weight code
        step (the family's ``code_scale``)."""
        s_x = float(self.act_params(rec.inputs[0]).scale)
        code_scale = self.weight_entry(rec.name).code_scale(self._w_params[rec.name])
        return s_x * np.broadcast_to(np.asarray(code_scale, dtype=np.float64),
                                     (rec.weight.shape[0],))

    def _bias_codes(self, rec: LayerRecord) -> np.ndarray:
        codes = np.rint(rec.bias.astype(np.float64) / self._bias_scale(rec))
        bits = self.config.bias_bits
        if not _in_bias_range(codes, bits):
            wide = next((n for n in range(bits + 1, 33) if _in_bias_range(codes, n)), None)
            hint = (f"set QuantConfig.bias_bits to at least {wide}" if wide is not None else
                    "they need more than 32 bits; a per-channel int weight format raises a "
                    "channel's scale to fit its bias (QuantConfig.layer_weight)")
            raise QuantError(f"{_bias_overflow(rec.name, codes, bits)}; {hint}")
        return codes.astype(np.int64)

    def _settle_channels(self, rec: LayerRecord, params: QuantParams) -> QuantParams:
        """Per-channel int weight parameters with degenerate channels given usable scales and
        a warning naming them (the policy of the module docstring)."""
        params, zero, floored = settle_channel_scales(rec.weight, params)
        raised = np.zeros(zero.shape, dtype=bool)
        if rec.bias is not None:
            params, raised = self._scales_for_bias(rec, params)
        if zero.any() or floored.any() or raised.any():
            _warn_degenerate(rec, zero, floored & ~raised, raised, self.config.bias_bits)
        return params

    def _scales_for_bias(self, rec: LayerRecord, params: QuantParams
                         ) -> tuple[QuantParams, np.ndarray]:
        """``params`` with the channels whose bias codes leave the ``bias_bits`` range raised
        (``_scales_for_bias``), and the mask of those channels; QuantError naming the width to
        use when a channel would need more than the layer's largest scale."""
        bias = rec.bias.astype(np.float64)
        s_x = float(self.act_params(rec.inputs[0]).scale)
        bits, cap = self.config.bias_bits, float(params.scale.max())
        scale, raised = _scales_for_bias(bias, s_x, params.scale, bits, cap)
        if scale is None:
            codes = np.rint(bias / (s_x * params.scale))
            wide = next((n for n in range(bits + 1, 33)
                         if _scales_for_bias(bias, s_x, params.scale, n, cap)[0] is not None),
                        None)
            hint = (f"set QuantConfig.bias_bits to at least {wide}" if wide is not None else
                    "no bias width up to 32 bits holds them: the bias is too large for the "
                    "layer's input and weight scales")
            raise QuantError(f"{_bias_overflow(rec.name, codes, bits)}, and raising the weight "
                             f"scale of {_channels(raised)} until they fit would exceed the "
                             f"layer's largest channel scale; {hint}")
        if raised.any():
            params = with_channel_scales(params, scale)
        return params, raised

    def _torch_params(self) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
        """Per weighted layer, the fake-quant weight (the family's decoded codes) and bias
        (integer bias codes times ``s_x s_w``, or the float bias when the family has none)."""
        out = {}
        for name, params in self._w_params.items():
            entry = self.weight_entry(name)
            w_real = entry.decode(params, self._w_codes[name])
            w = torch.from_numpy(np.asarray(w_real, dtype=np.float64).astype(np.float32))
            b_codes, bias = self._b_codes[name], self.graph[name].bias
            if b_codes is not None:
                b_real = b_codes.astype(np.float64) * self._bias_scale(self.graph[name])
                b = torch.from_numpy(b_real.astype(np.float32))
            else:
                b = None if bias is None else torch.from_numpy(bias.astype(np.float32))
            out[name] = (w, b)
        return out

    # ---- parameters ------------------------------------------------------------------
    def _weighted(self, name: str) -> LayerRecord:
        rec = self.graph[name]
        if rec.op not in QUANTIZED_WEIGHT_OPS:
            raise QuantError(f"layer {name!r} is a {rec.op} record and has no weights; "
                             f"weighted layers are conv2d / conv_transpose2d / linear")
        return rec

    def weight_params(self, name: str) -> Any:
        """Weight parameters of conv2d / linear ``name``, as its format family fitted them
        (uniform: QuantParams, per channel: scale (K,), axis 0; binary: BinaryParams ``v``
        (K, k) or (1, k); APoT: APoTParams)."""
        self._weighted(name)
        return self._w_params[name]

    def weight_entry(self, name: str) -> FormatEntry:
        """The registered format family of layer ``name``'s weights."""
        return format_entry(self.weight_format(name))

    def weight_family(self, name: str) -> str:
        """Family name of layer ``name``'s weight format ("int", "binary", "apot", ...)."""
        return self.weight_entry(name).name

    def binary_input(self, name: str) -> BinaryInput | None:
        """The input binarizer of layer ``name``, or None when it takes integer codes."""
        self._weighted(name)
        return self.config.binary_inputs.get(name)

    def binary_input_scales(self, name: str) -> np.ndarray | None:
        """Running binarizer scales of layer ``name``, float64 (k,) in input code units; None
        for per-sample scaling or no binarizer."""
        self._weighted(name)
        return self._binary_scales.get(name)

    def binarize_input(self, name: str, codes: np.ndarray) -> BinaryParams:
        """Sign planes and scales (code units, (N, k)) of layer ``name``'s input codes (N, ...),
        exactly as the fake-quant forward and the integer program compute them."""
        binarizer = self.binary_input(name)
        if binarizer is None:
            raise QuantError(f"layer {name!r} has no input binarizer")
        zp = int(np.asarray(self.act_params(self.graph[name].inputs[0]).zero_point))
        centred = np.asarray(codes, dtype=np.float64) - zp
        return binarize_codes(centred, binarizer, self._binary_scales.get(name))

    def weight_codes(self, name: str) -> np.ndarray:
        """The integer codes the family encodes the weight to (read-only): uniform and APoT
        codes have the weight's shape (``fmt.code_dtype``); binary sign planes are int8
        (k, *weight.shape) in {-1, +1}."""
        self._weighted(name)
        codes = self._w_codes[name].view()
        codes.setflags(write=False)
        return codes

    def bias_codes(self, name: str) -> np.ndarray | None:
        """int64 (K,) ``rint(bias / (s_x · s_w[k]))``, s_x the layer input's scale; None if the
        layer has no bias or its family keeps a float bias (binary)."""
        self._weighted(name)
        codes = self._b_codes[name]
        return None if codes is None else codes.copy()

    def lookup_table(self, name: str) -> np.ndarray:
        """The table of ``pointwise`` record ``name``: int64 output codes (read-only), entry i
        for input code ``qmin_x + i`` (``quant.pointwise``)."""
        rec = self.graph[name]
        if rec.op != "pointwise":
            raise QuantError(f"layer {name!r} is a {rec.op} record; lookup tables belong to "
                             "pointwise records (sigmoid, hardsigmoid, hardswish, silu, tanh)")
        try:
            return lookup_table(rec.attrs["fn"], self.act_params(rec.inputs[0]),
                                self.act_params(name))
        except QuantError as exc:
            raise QuantError(f"layer {name!r} ({rec.module_path}): {exc}") from None

    def _pointwise_fq(self, rec: LayerRecord, xs: list[torch.Tensor], w, b) -> torch.Tensor:
        """Fake-quant pointwise record: the table applied to the input codes."""
        p_x, p_y = self.act_params(rec.inputs[0]), self.act_params(rec.name)
        s_x, zp_x = float(p_x.scale), int(p_x.zero_point)
        codes = torch.round(xs[0].to(torch.float64) / s_x).to(torch.int64) + zp_x
        codes = codes.clamp_(p_x.fmt.qmin, p_x.fmt.qmax) - p_x.fmt.qmin
        table = torch.from_numpy(self.lookup_table(rec.name).copy())
        out = (table[codes] - int(p_y.zero_point)).to(torch.float64) * float(p_y.scale)
        return out.to(torch.float32)

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

    def weight_format(self, name: str) -> Any:
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
        if rec.op == "resize" and rec.attrs["mode"] == "bilinear":  # back onto the input's grid
            return _fq_tensor(y, self.act_params(rec.name))
        return y

    def run(self, x: torch.Tensor | np.ndarray, mode: str = "fake") -> dict[str, np.ndarray]:
        """Every record's output, float32 numpy, for ``mode`` "fake" (dequantized fake-quant
        values) or "float" (the BN-folded float graph)."""
        if mode not in ("fake", "float"):
            raise QuantError(f"run: mode must be 'fake' or 'float'; got {mode!r}")
        outs = self._run(x, mode, keep=True)
        return {name: t.numpy() for name, t in outs.items()}

    def _pre(self, rec: LayerRecord, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Binarize the input of a layer with an input binarizer (see module docstring)."""
        if rec.name not in self.config.binary_inputs:
            return xs
        s_x = float(self.act_params(rec.inputs[0]).scale)
        codes = torch.round(xs[0].to(torch.float64) / s_x).numpy()  # centred codes, exact
        params = binarize_codes(codes, self.config.binary_inputs[rec.name],
                                self._binary_scales.get(rec.name))
        return [torch.from_numpy((params.dequantize() * s_x).astype(np.float32))]

    def _run(self, x: torch.Tensor | np.ndarray, mode: str, keep: bool) -> dict[str, torch.Tensor]:
        t = torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
        t = t.detach().cpu().to(torch.float32)
        if mode == "fake":
            return run_graph(self.graph, t, self._fq_params, post=self._post, keep=keep,
                             pre=self._pre, ops={"pointwise": self._pointwise_fq})
        return run_graph(self.graph, t, self._float_params, keep=keep)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fake-quant model output (float32, dequantized)."""
        return self._run(x, "fake", keep=False)[self.graph.output_name]

    __call__ = forward

    def float_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Output of the BN-folded float graph (float32)."""
        return self._run(x, "float", keep=False)[self.graph.output_name]

    def __repr__(self) -> str:
        binary = len(self.config.binary_inputs)
        return (f"QuantizedModel({len(self.graph)} records, weight={self.config.weight.describe()}"
                f", activation={self.config.activation.describe()}"
                + (f", {binary} binarized inputs" if binary else "") + ")")


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

    ``config.calibration`` other than "none" runs that pipeline (``quant.calibrate.pipeline.
    run_pipeline``, which also returns its report).
    """
    if config is not None and isinstance(config, QuantConfig) and config.calibration != "none":
        from quant.calibrate.pipeline import run_pipeline

        return run_pipeline(model, config, calibration_data, example_input).state.model()
    return initial_state(model, config, calibration_data, example_input).model()


def initial_state(model: nn.Module, config: QuantConfig | None = None,
                  calibration_data: Iterable[torch.Tensor] = (),
                  example_input: torch.Tensor | None = None) -> CalibrationState:
    """Capture and range calibration (the arguments of ``quantize``): the state every
    post-training step starts from."""
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
    for rec in graph:
        if rec.op in QUANTIZED_WEIGHT_OPS:
            bad = int(np.count_nonzero(~np.isfinite(rec.weight)))
            if bad:
                raise QuantError(f"layer {rec.name!r} ({rec.module_path}): {bad} of "
                                 f"{rec.weight.size} weights are NaN or inf; expected finite")

    def all_batches():
        yield first
        yield from batches

    act, binary_scales = calibrate(graph, all_batches(), config.activation,
                                   config.reservoir_size, config.seed, config.binary_inputs,
                                   config.layer_activation)
    return CalibrationState(graph, config, act, binary_scales)
