"""Outlier-channel groups for FFN blocks: the few huge hidden channels get their own tensors.

Bondarenko et al., "Understanding and Overcoming the Challenges of Efficient Transformer
Quantization" (EMNLP 2021) quantize the outlier-bearing tensors of BERT per embedding group
(PEG): channels are grouped by range and each group gets its own scale.  In a BERT FFN block
``A -> GELU -> B`` (``A``: the up projection, ``B``: the down projection) a handful of hidden
channels reach 15-25 where the others stay below 5, both before GELU (``A``'s output) and
after it (``B``'s input); GELU cannot be crossed by a per-channel scale (SmoothQuant's
``quant.calibrate.smooth`` does not apply), so with one per-tensor 8-bit scale those channels
cost most of the block's precision.

Here the groups are two tensors, so every tensor stays per-tensor quantized and the integer
program is an ordinary one: with ``O`` the outlier hidden channels and ``R`` the rest,

    B(GELU(A(x))) = B[:, R] GELU(A[R](x)) + B[:, O] GELU(A[O](x))

``A`` keeps its name and the rows ``R`` (``A.outlier``: rows ``O``), the GELU keeps its name
(``<gelu>.outlier`` for the outlier group), and ``B`` becomes an add of ``B.main`` (columns
``R``, the bias, reading the GELU) and ``B.outlier`` (columns ``O``, reading the outlier GELU);
the add keeps ``B``'s name, consumers, fused activation and activation format.  Exact in real
arithmetic (float32 summation order only).  Every new record takes the activation and weight
formats of the record it came from (``QuantConfig.layer_activation`` / ``layer_weight``
entries are added when the source has one); in hardware that is one more add, on the vector
unit, per block.

Channels are ranked by ``max(a_j / median(a), g_j / median(g))`` with ``a_j``, ``g_j`` the
largest ``|A output|`` and ``|GELU output|`` of hidden channel ``j`` over the calibration data.
The number of outlier channels per block (the same for every block) is chosen on held-out
batches among ``counts``, 0 (no split) included, exactly like ``smooth``'s alpha: ranges from
the other batches, relative output error on the held-out ones; ties keep the smaller count.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from quant._validate import check_int
from quant.calibrate.bias_correction import as_batches
from quant.calibrate.smooth import channel_max, held_out_batches, held_out_errors
from quant.calibrate.state import CalibrationState
from quant.errors import QuantError
from quant.graph import LayerGraph, LayerRecord

log = logging.getLogger(__name__)

DEFAULT_COUNTS = (0, 1, 2, 4, 8)
# Element-wise ops between the two linears of a block.
_ACTIVATIONS = ("gelu",)


@dataclass(frozen=True)
class SplitBlock:
    """One split FFN block: ``up -> act -> down`` and its outlier hidden channels."""

    up: str
    act: str
    down: str
    channels: tuple[int, ...]


@dataclass(frozen=True)
class OutlierSplitReport:
    """What ``split_outliers`` did.

    Attributes:
        count: outlier channels per block (0: nothing split).
        held_out_errors: (candidate count, relative output error on the held-out batches);
            empty when ``count`` was given.
        blocks: the split blocks and their outlier channels.
        candidates: the blocks found (``up``, ``act``, ``down``), split or not.
    """

    count: int
    held_out_errors: tuple[tuple[int, float], ...]
    blocks: tuple[SplitBlock, ...]
    candidates: tuple[tuple[str, str, str], ...]

    def summary(self) -> str:
        errs = ", ".join(f"{k}: {e:.3g}" for k, e in self.held_out_errors)
        how = f" (held-out relative error {errs})" if errs else ""
        return (f"outlier split: {self.count} channels per block{how}; {len(self.blocks)} of "
                f"{len(self.candidates)} blocks split")


@dataclass(frozen=True)
class OutlierSplit:
    """The split state and its report."""

    state: CalibrationState
    report: OutlierSplitReport


def split_outliers(state: CalibrationState, data: Any, *, count: int | None = None,
                   counts: Sequence[int] = DEFAULT_COUNTS, seed: int = 0) -> CalibrationState:
    """Split the outlier hidden channels of every ``linear -> gelu -> linear`` block into a
    group of their own (see the module docstring).

    Args:
        state: the state to split; neither linear of a block may have weight parameters fixed
            by an earlier step or an input binarizer.
        data: calibration inputs (a float tensor or an iterable of batches; one batch is one
            held-out unit, e.g. one sentence).
        count: outlier channels per block, >= 0; None (default): chosen among ``counts`` on
            held-out batches (needs at least 4 batches).
        counts: the candidates, each >= 0.
        seed: seed of the held-out choice.
    Returns: the state with the split graph, the config extended with the new records'
        formats, and activation ranges observed again on ``data``; ``state`` itself when
        nothing was split.
    """
    result = split_outliers_with_report(state, data, count=count, counts=counts, seed=seed)
    log.info(result.report.summary())
    return result.state


def split_outliers_with_report(state: CalibrationState, data: Any, *, count: int | None = None,
                               counts: Sequence[int] = DEFAULT_COUNTS,
                               seed: int = 0) -> OutlierSplit:
    """``split_outliers`` that also returns what was done (same arguments)."""
    owner = "split_outliers"
    if not isinstance(state, CalibrationState):
        raise QuantError(f"{owner} expects a CalibrationState; got {type(state).__name__}")
    if count is not None:
        check_int(count, "count", owner, 0, 2**20)
    if isinstance(counts, (str, bytes)) or not isinstance(counts, Sequence) or not counts:
        raise QuantError(f"The 'counts' parameter of {owner} must be a non-empty sequence of "
                         f"ints >= 0. Got {counts!r} instead.")
    candidates = sorted({check_int(k, "counts", owner, 0, 2**20) for k in counts})
    check_int(seed, "seed", owner, 0, 2**63 - 1)
    batches = as_batches(data, owner)
    graph = state.graph
    blocks = find_blocks(graph)
    bad = sorted({n for b in blocks for n in (b[0], b[2])
                  if n in state.weight_params or n in state.config.binary_inputs})
    if bad:
        raise QuantError(f"{owner}: layers {bad} have fixed weight parameters or an input "
                         "binarizer; run split_outliers before the steps that fix them")
    errors: list[tuple[int, float]] = []
    if count is None:
        count = 0
        if blocks:
            train, test = held_out_batches(batches, seed, owner, "count")
            ranks = rank_channels(graph, blocks, train)
            built = {k: split_graph(graph, state.config, blocks, ranks, k) for k in candidates}
            errors = held_out_errors(state, train, test, {k: g for k, (g, _, _) in built.items()},
                                     {k: c for k, (_, c, _) in built.items()})
            count = min(errors, key=lambda ke: ke[1])[0]  # candidates ascending: ties keep fewer
    if count == 0 or not blocks:
        return OutlierSplit(state, OutlierSplitReport(0, tuple(errors), (), tuple(blocks)))
    ranks = rank_channels(graph, blocks, batches)
    out, config, split = split_graph(graph, state.config, blocks, ranks, count)
    report = OutlierSplitReport(count, tuple(errors), tuple(split), tuple(blocks))
    return OutlierSplit(state.replace(graph=out, config=config).recalibrated(batches), report)


def find_blocks(graph: LayerGraph) -> list[tuple[str, str, str]]:
    """Every ``(up, act, down)``: a linear whose only consumer is a GELU whose only consumer is
    a linear over all its channels (and no record already has one of the new names)."""
    found = []
    for rec in graph:
        if rec.op != "linear" or rec.name == graph.output_name:
            continue
        users = graph.consumers(rec.name)
        if len(users) != 1 or graph[users[0]].op not in _ACTIVATIONS:
            continue
        act = graph[users[0]]
        down = graph.consumers(act.name)
        if act.name == graph.output_name or len(down) != 1 or graph[down[0]].op != "linear":
            continue
        taken = {f"{rec.name}.outlier", f"{act.name}.outlier", f"{down[0]}.main",
                 f"{down[0]}.outlier"} & set(graph.records)
        if graph[down[0]].weight.shape[1] == rec.weight.shape[0] and not taken:
            found.append((rec.name, act.name, down[0]))
    return found


def rank_channels(graph: LayerGraph, blocks: list[tuple[str, str, str]],
                  batches: list[torch.Tensor]) -> dict[str, np.ndarray]:
    """Per block (keyed by ``up``), its hidden channels from most to least outlying (stable)."""
    peak = channel_max(graph, {n for up, act, _ in blocks for n in (up, act)}, batches)
    ranks = {}
    for up, act, _ in blocks:
        a, g = peak[up], peak[act]
        score = np.maximum(a / max(np.median(a), 1e-30), g / max(np.median(g), 1e-30))
        ranks[up] = np.argsort(-score, kind="stable")
    return ranks


def split_graph(graph: LayerGraph, config: Any, blocks: list[tuple[str, str, str]],
                ranks: dict[str, np.ndarray], count: int
                ) -> tuple[LayerGraph, Any, list[SplitBlock]]:
    """``graph`` with the ``count`` top-ranked hidden channels of every block split off, the
    config with the new records' formats, and the split blocks."""
    if count == 0:
        return graph, config, []
    plan: dict[str, tuple[str, str, str, np.ndarray, np.ndarray]] = {}
    split = []
    for up, act, down in blocks:
        hidden = graph[up].weight.shape[0]
        k = min(count, hidden - 1)
        outl = np.sort(ranks[up][:k])
        rest = np.setdiff1d(np.arange(hidden), outl)
        for name in (up, act, down):
            plan[name] = (up, act, down, rest, outl)
        split.append(SplitBlock(up, act, down, tuple(int(i) for i in outl)))
    records: dict[str, LayerRecord] = {}
    derived: dict[str, str] = {}  # new record -> the record whose formats it takes
    for rec in graph:
        if rec.name not in plan:
            records[rec.name] = rec
            continue
        up, act, down, rest, outl = plan[rec.name]
        for new in _split_record(rec, up, act, down, rest, outl):
            records[new.name] = new
            if new.name != rec.name:
                derived[new.name] = rec.name
    out = LayerGraph(records, graph.input_name, graph.output_name)
    return out, _with_formats(config, derived), split


def _narrow(shape: tuple[int, ...], n: int) -> tuple[int, ...]:
    return tuple(shape[:-1]) + (n,)


def _split_record(rec: LayerRecord, up: str, act: str, down: str, rest: np.ndarray,
                  outl: np.ndarray) -> list[LayerRecord]:
    rep = dataclasses.replace
    if rec.name == up:
        bias = rec.bias
        return [rep(rec, weight=np.ascontiguousarray(rec.weight[idx]),
                    bias=None if bias is None else np.ascontiguousarray(bias[idx]),
                    out_shape=_narrow(rec.out_shape, idx.size), name=name)
                for name, idx in ((up, rest), (f"{up}.outlier", outl))]
    if rec.name == act:
        return [rep(rec, out_shape=_narrow(rec.out_shape, rest.size)),
                rep(rec, name=f"{act}.outlier", inputs=(f"{up}.outlier",),
                    out_shape=_narrow(rec.out_shape, outl.size))]
    main = rep(rec, name=f"{down}.main", weight=np.ascontiguousarray(rec.weight[:, rest]),
               activation=None)
    side = rep(rec, name=f"{down}.outlier", inputs=(f"{act}.outlier",),
               weight=np.ascontiguousarray(rec.weight[:, outl]), bias=None, activation=None)
    total = LayerRecord(down, "add", (main.name, side.name), rec.module_path,
                        activation=rec.activation, out_shape=rec.out_shape)
    return [main, side, total]


def _with_formats(config: Any, derived: dict[str, str]) -> Any:
    """``config`` whose per-record overrides also cover the new records."""
    act = dict(config.layer_activation)
    weight = dict(config.layer_weight)
    for new, src in derived.items():
        if src in act:
            act[new] = act[src]
        if src in weight:
            weight[new] = weight[src]
    # each down projection's name is now its add: its weight override moves to its halves
    downs = {src for new, src in derived.items() if new == f"{src}.main"}
    return dataclasses.replace(config, layer_activation=act,
                               layer_weight={k: v for k, v in weight.items() if k not in downs})
