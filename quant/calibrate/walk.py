"""Evaluate a ``LayerGraph`` one record at a time, keeping only the values still needed.

Calibration steps that work layer by layer (AdaQuant) stop before a layer, read its input,
change its weights and go on; a step that trains through the whole graph (bias tuning) needs
the forward pass with autograd enabled.  ``quant.execute.run_graph`` runs the whole graph under
``torch.no_grad()``, so this walker reuses its op table (``OP_TABLE``, ``apply_activation``)
with the same hooks and leaves gradient recording to the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from quant.errors import QuantError
from quant.execute import OP_TABLE, apply_activation
from quant.graph import LayerGraph, LayerRecord

ParamMap = Mapping[str, tuple[torch.Tensor, torch.Tensor | None]]
Post = Callable[[LayerRecord, torch.Tensor], torch.Tensor]
Pre = Callable[[LayerRecord, list[torch.Tensor]], list[torch.Tensor]]


class GraphWalk:
    """A forward pass over ``graph`` that can pause before any record.

    ``post`` and ``pre`` are the hooks of ``run_graph`` (applied after the fused activation,
    also to the input record; applied to a record's input tensors).  Values are dropped as soon
    as every consumer has run, so peak memory is the live frontier of the graph, not all of it.
    Autograd records the pass whenever it is enabled by the caller.
    """

    def __init__(self, graph: LayerGraph, x: torch.Tensor, params: ParamMap,
                 post: Post | None = None, pre: Pre | None = None) -> None:
        expected = graph[graph.input_name].out_shape
        if x.dim() != len(expected) or tuple(x.shape[1:]) != tuple(expected[1:]):
            raise QuantError(f"input of shape {tuple(x.shape)} does not match the captured "
                             f"input shape (N, {', '.join(map(str, expected[1:]))})")
        self.graph = graph
        self.params = dict(params)
        self._post, self._pre = post, pre
        self._order = list(graph.records)
        self._next = 0
        self._values: dict[str, torch.Tensor] = {}
        self._remaining: dict[str, int] = {}
        for rec in graph:
            for s in rec.inputs:
                self._remaining[s] = self._remaining.get(s, 0) + 1
        self._x = x.to(torch.float32)

    @property
    def done(self) -> bool:
        return self._next == len(self._order)

    def inputs_of(self, name: str) -> list[torch.Tensor]:
        """Run every record before ``name`` (which must not have run yet) and return its input
        tensors, as the record will see them (after ``pre``)."""
        target = self._order.index(self.graph[name].name)
        if target < self._next:
            raise QuantError(f"GraphWalk: record {name!r} has already been computed")
        while self._next < target:
            self.step()
        return self._inputs(self.graph[name])

    def step(self, weight: torch.Tensor | None = None,
             bias: torch.Tensor | None = None) -> torch.Tensor:
        """Compute the next record and return its output (after ``post``).  With ``weight``
        given, ``(weight, bias)`` replaces the record's entry in ``params`` from now on."""
        if self.done:
            raise QuantError("GraphWalk: the whole graph has already been computed")
        rec = self.graph[self._order[self._next]]
        if weight is not None:
            self.params[rec.name] = (weight, bias)
        if rec.op == "input":
            y = self._x
        else:
            w, b = self.params.get(rec.name, (None, None))
            y = apply_activation(rec, OP_TABLE[rec.op](rec, self._inputs(rec), w, b))
        y = self._post(rec, y) if self._post is not None else y
        self._values[rec.name] = y
        for s in rec.inputs:
            self._remaining[s] -= 1
            if self._remaining[s] == 0 and s != self.graph.output_name:
                del self._values[s]
        self._next += 1
        return y

    def run(self) -> torch.Tensor:
        """Compute the remaining records; the graph output."""
        while not self.done:
            self.step()
        return self._values[self.graph.output_name]

    def _inputs(self, rec: LayerRecord) -> list[torch.Tensor]:
        xs = [self._values[s] for s in rec.inputs]
        return self._pre(rec, xs) if self._pre is not None else xs
