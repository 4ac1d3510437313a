"""``sensitivity_table(model, options, data, method=...)``: the one entry point."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from quant.allocate.protocol import Option
from quant.capture import capture
from quant.errors import QuantError
from quant.model import QuantConfig
from quant.sensitivity.graphrun import as_data, resolve_loss, targets, graph_params, weighted_layers
from quant.sensitivity.options import check_options, plan_options
from quant.sensitivity.table import METHODS, SensitivityTable

_COMMON = ("formats", "weight_params")
_GRADIENT = ("act_sample", "dtype")
_METHOD_OPTIONS = {
    "hutchinson": _COMMON + _GRADIENT + ("tol", "min_probes", "max_probes", "probe_block",
                                           "blockwise"),
    "fisher": _COMMON + _GRADIENT + ("chunk_size",),
    "empirical_fisher": _COMMON + _GRADIENT + ("chunk_size",),
    "measured": _COMMON + ("holdout_fraction",),
}


def sensitivity_table(model: nn.Module, options: Sequence[Option], data: Any, *,
                      method: str = "hutchinson", config: QuantConfig | None = None,
                      layers: Sequence[str] | None = None, loss: Any = None, seed: int = 0,
                      **method_options: Any) -> SensitivityTable:
    """Ω[l, k]: the predicted (or measured) loss increase of giving layer l option k.

    Args:
        model: a float ``torch.nn.Module`` that ``quant.capture`` accepts (scored in eval mode,
            on its captured, BN-folded graph).
        options: ``quant.allocate.Option`` values; their families must be registered formats.
        data: calibration batches: float tensors (N, ...), or (x, y) pairs with labels.
        method: "hutchinson" (HAWQ-V2 Hessian traces, ``quant.sensitivity.hutchinson``),
            "fisher" / "empirical_fisher" (per-sample Fisher diagonals,
            ``quant.sensitivity.fisher``) or "measured" (held-out loss changes,
            ``quant.sensitivity.measured``).
        config: the base ``QuantConfig`` (default W8A8); the template of each family's formats
            and, for "measured", the reference model.
        layers: conv2d / linear record names to score (default: all, graph order).
        loss: None (cross-entropy with labels, else KL(float ‖ model)), "ce", "kl" or a
            callable (logits, target) -> (N,) per-sample losses.  "fisher" takes none.
        seed: seeds probes, sampled labels, activation samples and the held-out split.
        method_options: ``formats`` (family -> template format or callable(bits) -> format;
            see ``quant.sensitivity.options``), ``weight_params`` (a callable (layer name,
            Option) -> the pair's fixed weight parameters, or None to fit the format, e.g.
            multipoint points assigned on calibration data; see ``quant.sensitivity.options``),
            and per method -- hutchinson: ``tol`` (0.05),
            ``min_probes`` (8), ``max_probes`` (128), ``probe_block`` (8),
            ``blockwise`` (False); fisher /
            empirical_fisher: ``chunk_size`` (16, vmap chunk); both: ``dtype``
            (torch.float32), ``act_sample`` (65536 activation values per record);
            measured: ``holdout_fraction`` (0.25).
    Returns: a ``SensitivityTable``; an option a layer cannot take is ``inf`` with the reason
        in ``details["infeasible"]``.
    Raises:
        QuantError: an unknown method / option / layer, an unregistered format family, bad data.
    """
    if method not in METHODS:
        raise QuantError(f"sensitivity_table: method must be one of {METHODS}; got {method!r}")
    if not isinstance(model, nn.Module):
        raise QuantError(f"sensitivity_table: model must be a torch.nn.Module; got "
                         f"{type(model).__name__}")
    allowed = _METHOD_OPTIONS[method]
    unknown = sorted(set(method_options) - set(allowed))
    if unknown:
        raise QuantError(f"sensitivity_table: method {method!r} takes options {list(allowed)}; "
                         f"got unknown {unknown}")
    config = QuantConfig() if config is None else config
    if not isinstance(config, QuantConfig):
        raise QuantError(f"sensitivity_table: config must be a QuantConfig; got "
                         f"{type(config).__name__}")
    opts = check_options(options)
    batches = as_data(data)
    graph = capture(model, batches.xs[0][:1])
    names = weighted_layers(graph, layers)
    formats = method_options.pop("formats", None)
    plan = plan_options(graph, config, names, opts, formats,
                        method_options.pop("weight_params", None))
    if method == "hutchinson":
        from quant.sensitivity.hutchinson import hutchinson_table

        dtype = method_options.get("dtype", torch.float32)
        loss_name, loss_fn = resolve_loss(loss, batches.ys is not None)
        tgts = targets(graph, batches, loss_name, graph_params(graph, dtype), dtype)
        omega, details = hutchinson_table(graph, batches, tgts, loss_name, loss_fn, names, opts,
                                          plan, seed=seed, **method_options)
    elif method in ("fisher", "empirical_fisher"):
        from quant.sensitivity.fisher import fisher_table

        omega, details = fisher_table(graph, batches, method, loss, names, opts, plan,
                                      seed=seed, **method_options)
    else:
        from quant.sensitivity.measured import measured_table

        omega, details = measured_table(graph, batches, config, loss, names, opts, plan,
                                        seed=seed, **method_options)
    details = {"seed": seed, "base_config": _describe(config), **details}
    if "dtype" in details:
        details["dtype"] = str(details["dtype"])
    return SensitivityTable(omega, names, opts, method, details)


def _describe(config: QuantConfig) -> str:
    w = config.weight
    return (f"weight={w.describe() if hasattr(w, 'describe') else w!r}, "
            f"activation={config.activation.describe()}, "
            f"{len(config.layer_weight)} layer_weight / {len(config.layer_activation)} "
            "layer_activation overrides")
