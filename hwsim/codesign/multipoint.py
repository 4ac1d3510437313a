"""The price of multipoint's extra rows on an accelerator, for ``quant``'s ``assign_points``.

Liu, Ye, Zhou, Liu, "Post-training Quantization with Multiple Points: Mixed Precision without
Mixed Precision", AAAI 2021: an extra point of a channel is one more row of the layer's b-bit
weight matrix.  On an accelerator that row costs what the layer with one more output row costs
more: ``C(K + m) - C(K + m - 1)`` for the m-th extra row, ``C`` the cost model's figure
(``hwsim.cost.price_options``: "latency_cycles", "energy_pj", "dram_bytes", ...) of the layer
priced as its integer form (``hwsim.workloads.multipoint.rows_layer_shape``: the same layer
with more output channels at the points' width, "int" family).  On a systolic array that is a
step function: a row that lands in an array column already paid for costs no cycles.

    cost = extra_row_cost(accel, state, "latency_cycles")
    state = assign_points(state, calib, budget=0.05 * one_point_cycles, cost=cost)

A cost model's figure need not grow with every row (its mapper may find a better tiling for a
larger layer), and ``assign_points`` needs prices >= 0: the m-th row is priced as the growth of
the running maximum, ``max_{j <= m} C(K + j) - max_{j < m} C(K + j)``, so prices sum to at least
the true difference.  The realized network is costed as any other:
``cost_network(accel, program_workload(program))``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hwsim.arch.accelerator import Accelerator
from hwsim.cost.options import RESOURCES, price_options
from hwsim.errors import WorkloadError
from hwsim.workloads.layer import LayerShape
from hwsim.workloads.multipoint import rows_layer_shape


class ExtraRowCost:
    """``cost(layer, m)``: the price of the m-th extra row of a multipoint layer (module
    docstring), in the unit of ``resource``.

    Args:
        accel: the accelerator (``hwsim.arch.load_accelerator``).
        layers: each multipoint layer with one row per output channel (``out_channels`` = K,
            ``weight_bits`` = the points' width), named by its record name.
        resource: one of ``hwsim.cost.options.RESOURCES`` (default "latency_cycles").
        convention: output-size convention ("torch").
    """

    def __init__(self, accel: Accelerator, layers: Sequence[LayerShape],
                 resource: str = "latency_cycles", convention: str = "torch") -> None:
        if resource not in RESOURCES:
            raise WorkloadError(f"resource must be one of {list(RESOURCES)}, got {resource!r}")
        self.accel, self.resource, self.convention = accel, resource, convention
        self.layers = {layer.name: layer for layer in layers}
        self._prices: dict[str, np.ndarray] = {}

    def totals(self, layer: str, rows: Sequence[int]) -> np.ndarray:
        """The resource of layer ``layer`` computed with each number of ``rows``, float64."""
        from quant.allocate import Option

        base = self._layer(layer)
        shapes = [rows_layer_shape(base, int(r)) for r in rows]
        option = Option(weight_bits=base.weight_bits, act_bits=base.act_bits)
        priced = price_options(self.accel, shapes, [option], convention=self.convention)
        values = np.asarray(priced.resources[self.resource][:, 0], dtype=np.float64)
        if not np.all(np.isfinite(values)):
            reason = priced.infeasible_reason(int(np.argmax(~np.isfinite(values))), 0)
            raise WorkloadError(f"layer {layer!r}: {self.accel.name} cannot run its integer form "
                                f"with extra rows: {reason}")
        return values

    def row_costs(self, layer: str, count: int) -> np.ndarray:
        """Prices of the 1st .. ``count``-th extra row of ``layer``, float64 (count,), >= 0."""
        have = self._prices.get(layer)
        if have is None or have.shape[0] < count:
            k = self._layer(layer).out_channels
            n = max(int(count), k if have is None else 2 * have.shape[0])
            peak = np.maximum.accumulate(self.totals(layer, range(k, k + n + 1)))
            have = np.diff(peak)
            self._prices[layer] = have
        return have[:count].copy()

    def __call__(self, layer: str, m: int) -> float:
        if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
            raise WorkloadError(f"extra row number must be an int >= 1, got {m!r}")
        return float(self.row_costs(layer, int(m))[int(m) - 1])

    def _layer(self, name: str) -> LayerShape:
        layer = self.layers.get(name)
        if layer is None:
            raise WorkloadError(f"layer {name!r} is not a multipoint layer of this pricer; "
                                f"known: {list(self.layers)[:6]}")
        return layer


def multipoint_base_layers(state: Any) -> list[LayerShape]:
    """The multipoint layers of a ``quant`` ``CalibrationState`` (or ``QuantizedModel``) as
    one-point ``LayerShape``s (batch 1): K output channels at the points' width, activations
    at the width of the tensor each layer reads."""
    from quant.calibrate import REQUANTIZING_OPS
    from quant.calibrate.multipoint import multipoint_layers

    graph, config = state.graph, state.config
    layers = []
    for name in multipoint_layers(state):
        rec = graph[name]
        src = graph[rec.inputs[0]]
        producer = src
        while producer.op not in REQUANTIZING_OPS:
            producer = graph[producer.inputs[0]]
        act_bits = config.layer_activation.get(producer.name, config.activation).bits
        common = dict(name=name, out_channels=int(rec.weight.shape[0]), act_bits=int(act_bits),
                      weight_bits=int(config.weight_format(name).bits))
        if rec.op == "linear":
            tokens = int(np.prod(src.out_shape[1:-1]))
            layers.append(LayerShape(kind="linear", in_h=1, in_w=1,
                                     in_channels=int(rec.weight.shape[1]), kernel_h=1,
                                     kernel_w=1, batch=tokens, **common))
            continue
        a = rec.attrs
        pt, pl, pb, pr = (int(p) for p in a["padding"])
        layers.append(LayerShape(
            kind="conv", in_h=int(src.out_shape[2]), in_w=int(src.out_shape[3]),
            in_channels=int(src.out_shape[1]), kernel_h=int(rec.weight.shape[2]),
            kernel_w=int(rec.weight.shape[3]), stride_h=int(a["stride"][0]),
            stride_w=int(a["stride"][1]), pad_top=pt, pad_left=pl, pad_bottom=pb, pad_right=pr,
            dilation_h=int(a["dilation"][0]), dilation_w=int(a["dilation"][1]),
            groups=int(a["groups"]), **common))
    return layers


def extra_row_cost(accel: Accelerator, state: Any, resource: str = "latency_cycles"
                   ) -> ExtraRowCost:
    """``ExtraRowCost`` of the multipoint layers of ``state`` on ``accel``."""
    return ExtraRowCost(accel, multipoint_base_layers(state), resource)


def one_point_totals(cost: ExtraRowCost) -> Mapping[str, float]:
    """Each layer's resource with one row per channel (no extra row)."""
    return {name: float(cost.totals(name, [layer.out_channels])[0])
            for name, layer in cost.layers.items()}
