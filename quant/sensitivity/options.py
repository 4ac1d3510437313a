"""From an ``Option`` (family names and widths) to number formats, and their perturbations.

Which format an option means, per layer (no family is special-cased; every family is looked up
in ``quant.formats``' registry):

* the *template* of a family: ``formats[family]`` if the caller gave one (a format value, or a
  callable ``bits -> format``); else the base config's format of that tensor when it is of that
  family (weights: ``config.weight_format(layer)``; activations: the format of the layer's input
  record); else the family's default ``format_type()``.
* its width: the template itself when ``template.bits == bits``; else
  ``dataclasses.replace(template, bits=bits)`` when ``bits`` is a field; else the first integer
  field ``f`` for which ``replace(template, f=bits).bits == bits`` (e.g. a binary format's
  number of terms ``k``).
* whether the layer can take it: ``QuantConfig`` accepts it as ``layer_weight[layer]`` /
  ``layer_activation[input record]`` and the family's ``fit`` accepts the weight.  If not, the
  pair gets ``inf`` and the reason.  An unregistered family name is an error (a typo, not an
  infeasible pair).

The perturbation of a weight is ``decode(fit(W), encode(fit(W), W)) - W`` in float64, exactly the
values ``QuantizedModel`` uses.  A caller whose option fixes the weight parameters by other
means than the family's ``fit`` (e.g. multipoint points assigned on calibration data by output
error, ``Option.weight_points``) passes ``weight_params``: a callable ``(layer name, option) ->
parameters or None`` (None: fit the format); the perturbation is then
``decode(params, encode(params, W)) - W``, and "measured" quantizes the layer with those
parameters (``QuantizedModel(weight_params=...)``).

The activation quantization noise power is *measured*: ``mean((Q(x) - x)^2)`` over a seeded
sample of the layer's input activation on the data, ``Q`` the family's fit on that sample (plus
the observed min and max, so a min-max range equals the calibrated one): for an unclipped
uniform quantizer this is ~ Δ²/12, and it also counts clipping.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from quant.allocate.protocol import Option
from quant.calibrate import REQUANTIZING_OPS
from quant.errors import QuantError
from quant.formats import registered_formats
from quant.formats import registry as _registry
from quant.formats.registry import FormatEntry
from quant.graph import LayerGraph

Formats = Mapping[str, Any]  # family -> template format, or callable(bits) -> format
WeightParams = Callable[[str, Option], Any]  # (layer, option) -> fixed weight params or None


def family_entry(name: str, what: str) -> FormatEntry:
    """The registered entry of family ``name``; ``what`` names the option in the error."""
    try:
        return _registry.family_entry(name)
    except QuantError as exc:
        raise QuantError(f"{what}: {exc}") from None


def check_options(options: Sequence[Option]) -> tuple[Option, ...]:
    """The options as a tuple; a non-Option or an unregistered family is a one-line error."""
    opts = tuple(options)
    if not opts:
        raise QuantError("sensitivity_table: options is empty; pass at least one Option")
    for i, opt in enumerate(opts):
        if not isinstance(opt, Option):
            raise QuantError(f"sensitivity_table: options[{i}] is a {type(opt).__name__}; "
                             "expected quant.allocate.Option")
        family_entry(opt.weight_format, f"options[{i}] ({opt.label}) weight_format")
        family_entry(opt.act_format, f"options[{i}] ({opt.label}) act_format")
    return opts


def act_source(graph: LayerGraph, layer: str) -> str:
    """The record whose output quantization is layer ``layer``'s input quantization: its input,
    followed up through ops that only move codes (maxpool2d / flatten / reshape / transpose)."""
    rec = graph[graph[layer].inputs[0]]
    while rec.op not in REQUANTIZING_OPS:
        rec = graph[rec.inputs[0]]
    return rec.name


def _with_width(template: Any, bits: int) -> Any:
    if getattr(template, "bits", None) == bits:
        return template
    if not dataclasses.is_dataclass(template):
        raise QuantError(f"cannot set {template!r} to {bits} bits: not a dataclass format")
    fields = {f.name: getattr(template, f.name) for f in dataclasses.fields(template)}
    if "bits" in fields:
        return dataclasses.replace(template, bits=bits)
    first_error: Exception | None = None
    for name, value in fields.items():
        if isinstance(value, bool) or not isinstance(value, int):
            continue
        try:
            cand = dataclasses.replace(template, **{name: bits})
        except (QuantError, ValueError, TypeError) as exc:
            first_error = first_error or exc
            continue
        if getattr(cand, "bits", None) == bits:
            return cand
    reason = f": {first_error}" if first_error else ""
    raise QuantError(f"cannot set {template!r} to {bits} bits{reason}")


def resolve_format(family: str, bits: int, base: Any, formats: Formats | None) -> Any:
    """The format of ``family`` at ``bits`` (see module docstring); QuantError says why not."""
    entry = family_entry(family, "format")
    given = (formats or {}).get(family)
    if callable(given) and not isinstance(given, entry.format_type):
        fmt = given(bits)
        if getattr(fmt, "bits", bits) != bits:
            raise QuantError(f"formats[{family!r}]({bits}) returned {fmt!r} with "
                             f"{fmt.bits} bits")
        return fmt
    if given is not None:
        template = given
    elif base is not None and isinstance(base, entry.format_type):
        template = base
    else:
        try:
            template = entry.format_type()
        except Exception as exc:  # a family without a default value
            raise QuantError(f"family {family!r} has no default format ({exc}); pass "
                             f"formats={{{family!r}: ...}}") from None
    return _with_width(template, bits)


@dataclasses.dataclass
class OptionPlan:
    """Per layer and option the weight and activation formats, or why the pair is infeasible.

    ``weight_fmt[l][k]`` / ``act_fmt[l][k]``: a format or None (infeasible);
    ``reasons[(l, k)]``: one line; ``source[l]``: the record whose output format is layer l's
    input format; ``configs[l][k]``: the base config with only layer l switched to option k;
    ``weight_params[(l, k)]``: the pair's fixed weight parameters (``weight_params`` of
    ``plan_options``; absent: fit the format).
    """

    weight_fmt: list[list[Any]]
    act_fmt: list[list[Any]]
    source: list[str]
    configs: list[list[Any]]
    reasons: dict[tuple[int, int], str]
    weight_params: dict[tuple[int, int], Any] = dataclasses.field(default_factory=dict)

    def feasible(self, l: int, k: int) -> bool:
        return (l, k) not in self.reasons

    def infeasible_details(self, layers: Sequence[str], options: Sequence[Option]) -> list[dict]:
        return [{"layer": layers[l], "option": k, "label": options[k].label, "reason": r}
                for (l, k), r in sorted(self.reasons.items())]


def plan_options(graph: LayerGraph, config: Any, layers: Sequence[str],
                 options: Sequence[Option], formats: Formats | None = None,
                 weight_params: WeightParams | None = None) -> OptionPlan:
    """Resolve every (layer, option) pair; see the module docstring."""
    if weight_params is not None and not callable(weight_params):
        raise QuantError(f"sensitivity_table: weight_params must be a callable (layer name, "
                         f"Option) -> weight parameters or None; got {weight_params!r}")
    fixed: dict[tuple[int, int], Any] = {}
    weight_fmt: list[list[Any]] = []
    act_fmt: list[list[Any]] = []
    configs: list[list[Any]] = []
    sources: list[str] = []
    reasons: dict[tuple[int, int], str] = {}
    for l, name in enumerate(layers):
        src = act_source(graph, name)
        sources.append(src)
        base_w = config.weight_format(name)
        base_a = config.layer_activation.get(src, config.activation)
        rows: tuple[list[Any], list[Any], list[Any]] = ([], [], [])
        for k, opt in enumerate(options):
            wf = af = cfg = None
            try:
                wf = resolve_format(opt.weight_format, opt.weight_bits, base_w, formats)
                af = resolve_format(opt.act_format, opt.act_bits, base_a, formats)
                cfg = dataclasses.replace(
                    config, layer_weight={**config.layer_weight, name: wf},
                    layer_activation={**config.layer_activation, src: af})
                given = None if weight_params is None else weight_params(name, opt)
                if given is not None:
                    fixed[(l, k)] = given
            except QuantError as exc:
                reasons[(l, k)] = str(exc).splitlines()[0]
                wf = af = cfg = None
            for row, value in zip(rows, (wf, af, cfg)):
                row.append(value)
        weight_fmt.append(rows[0])
        act_fmt.append(rows[1])
        configs.append(rows[2])
    return OptionPlan(weight_fmt, act_fmt, sources, configs, reasons, fixed)


def quantize_values(x: np.ndarray, fmt: Any) -> np.ndarray:
    """``decode(fit(x), encode(fit(x), x))`` in float64 via the registry."""
    entry = _registry.format_entry(fmt)
    xf = np.asarray(x, dtype=np.float64)
    params = entry.fit(xf, fmt)
    return np.asarray(entry.decode(params, entry.encode(params, xf)), dtype=np.float64)


class WeightErrors:
    """Cached ``(Q(W) - W)²`` per (layer, format), or per (layer, fixed parameters)."""

    def __init__(self, graph: LayerGraph) -> None:
        self.graph = graph
        self._sq: dict[tuple[Any, ...], np.ndarray] = {}
        self._keep: list[Any] = []   # fixed parameters keyed by id() stay alive

    def squared(self, layer: str, fmt: Any, params: Any = None) -> np.ndarray:
        """Elementwise ``(Q(W) - W)²``, float64 of the weight's shape (the BN-folded weight):
        ``Q`` the format's fit, or ``decode(params, encode(params, W))`` for fixed ``params``."""
        key = (layer, fmt) if params is None else (layer, "params", id(params))
        if key not in self._sq:
            w = self.graph[layer].weight.astype(np.float64)
            if params is None:
                q = quantize_values(w, fmt)
            else:
                entry = _registry.format_entry(fmt)
                q = np.asarray(entry.decode(params, entry.encode(params, w)), dtype=np.float64)
                self._keep.append(params)
            self._sq[key] = (q - w) ** 2
        return self._sq[key]


def act_noise_power(sample: np.ndarray, extremes: tuple[float, float], fmt: Any) -> float:
    """Measured ``mean((Q(x) - x)^2)`` of an activation sample (see module docstring)."""
    xs = np.asarray(sample, dtype=np.float64).reshape(-1)
    fit_on = np.concatenate([xs, np.asarray(extremes, dtype=np.float64)])
    entry = _registry.format_entry(fmt)
    params = entry.fit(fit_on, fmt)
    q = np.asarray(entry.decode(params, entry.encode(params, xs)), dtype=np.float64)
    return float(np.mean((q - xs) ** 2))


def fill_terms(plan: OptionPlan, layers: Sequence[str], options: Sequence[Option],
               weight_term: Callable[[int, int], float],
               act_term: Callable[[int, int], float]) -> tuple[np.ndarray, np.ndarray]:
    """(L, K) weight and activation terms, ``weight_term(l, k)`` and ``act_term(l, k)`` of the
    feasible pairs; an infeasible pair, or one whose fit refuses the
    tensor (QuantError), is ``inf`` in both with its reason added to ``plan.reasons``."""
    shape = (len(layers), len(options))
    w_term = np.full(shape, np.inf)
    a_term = np.full(shape, np.inf)
    for l in range(len(layers)):
        for k in range(len(options)):
            if not plan.feasible(l, k):
                continue
            try:
                w_term[l, k] = weight_term(l, k)
                a_term[l, k] = act_term(l, k)
            except QuantError as exc:
                plan.reasons[(l, k)] = str(exc).splitlines()[0]
                w_term[l, k] = a_term[l, k] = np.inf
    return w_term, a_term
