"""The default mapper: candidate mappings, their allocation to levels, and the search.

`mapper_candidates` lists (spatial unrolling, temporal order) pairs; `allocate_levels` places a
candidate's temporal loops on the levels greedily; `map_layer` prices every candidate with the
light path of hwsim/mapping/loopnest_eval.py (`search_key`: fit test plus the objective only,
stopping early once a candidate provably cannot win) and builds the full `NestCost` of the
winner alone. The counting model is stated in hwsim/mapping/loopnest.py.
"""

from __future__ import annotations

import functools
import itertools
import math
from bisect import bisect_right
from typing import Any, Mapping, Sequence

from hwsim.mapping.loopnest_eval import (
    OBJECTIVES, _bits, _chains, _evaluate, _Prep, bounds_valid, objective_value, search_key)
from hwsim.mapping.loopnest_types import (
    DIMS, OPERANDS, ConvDims, LoopNest, NestCost, NestLevel, Precisions, _check_spatial)


# ----------------------------------------------------------------------------------------------
# Allocation
# ----------------------------------------------------------------------------------------------
def allocate_levels(dims: ConvDims, order: Sequence[tuple[str, int]], spatial: Sequence,
                    hierarchy: Sequence[NestLevel], precisions: Precisions,
                    ) -> dict[str, tuple[int, ...]]:
    """ZigZag-like greedy allocation of the temporal loops `order` (innermost first) to levels.

    Levels are visited innermost first (reverse of `hierarchy`). At a level held by one operand
    (not the outermost), the operand takes the longest prefix of its remaining loops whose tile
    fits one instance (per-PE levels: temporal loops only; shared levels: times every spatial
    unroll; ofmap at psum_bits while a reduction loop remains at or above the level). At a level
    shared by several operands, the combination of prefixes that fits together and minimises
    sum over operands of (product of the loops left above x tile bits) wins (ZigZag's rule); ties
    go to the combination with more loops allocated (the later one in enumeration order, as
    ZigZag). If not even the empty prefix fits, the level gets no loop (`evaluate` then reports
    ``fits=False``). The outermost level takes the rest. Returns {operand: counts innermost first}.
    """
    prep = order if isinstance(order, _Prep) else _Prep(dims, order, spatial)
    chains = _chains(hierarchy)
    return _allocate(prep, hierarchy, chains, precisions)


def _allocate(prep: _Prep, hierarchy: Sequence[NestLevel], chains: dict[str, list[int]],
              prec: Precisions) -> dict[str, tuple[int, ...]]:
    """`allocate_levels` on a prepared nest."""
    L = prep.L
    start = {op: 0 for op in OPERANDS}
    counts: dict[str, list[int]] = {op: [] for op in OPERANDS}
    for h in range(len(hierarchy) - 1, 0, -1):
        lv = hierarchy[h]
        ops = [op for op in OPERANDS if op in lv.holds]
        if len(ops) == 1:
            op = ops[0]
            ends, _bits_l, _objs = _prefix_options(prep, op, start[op], lv, prec)
            chosen = [ends[-1] if ends else start[op]]
        else:
            options = [_prefix_options(prep, op, start[op], lv, prec) for op in ops]
            chosen = _best_combination(options, [start[op] for op in ops], lv.size_bits)
        for op, e in zip(ops, chosen):
            counts[op].append(e - start[op])
            start[op] = e
    for op in OPERANDS:
        counts[op].append(L - start[op])
    return {op: tuple(c) for op, c in counts.items()}


def _prefix_options(prep: _Prep, op: str, s0: int, lv: NestLevel, prec: Precisions
                    ) -> tuple[list[int], list[int], list[int]]:
    """The prefixes of `op`'s remaining loops (from loop s0) whose tile fits one instance of
    `lv` alone, shortest first: (ends, tile bits, ZigZag's objective = product of the loops left
    above x tile bits). Tile bits never shrink as the prefix grows, so the list stops at the
    first one that does not fit."""
    if op == "ofmap":
        psum = prep.irr_after[op][s0] or (lv.per_pe and prep.sp_red)
    else:
        psum = False
    bits = _bits(op, prec, psum)
    cap = lv.size_bits
    tiles = prep.tiles(op, not lv.per_pe)
    T, tprod = prep.T, prep.tprod
    ends, tbits, objs = [], [], []
    for e in range(s0, prep.L + 1):
        tb = tiles[e] * bits
        if cap is not None and tb > cap:
            break
        ends.append(e)
        tbits.append(tb)
        objs.append((T // tprod[e]) * tb)
    return ends, tbits, objs


def _best_combination(options: list[tuple[list[int], list[int], list[int]]], starts: list[int],
                      cap: int | None) -> list[int]:
    """Minimise the summed objective over prefix combinations (one `_prefix_options` entry per
    operand) fitting `cap` together; ties to the later combination in enumeration order (the
    first operand outermost). The last operand is chosen by a prefix-minimum + bisect; the
    operand before it stops at its first option leaving no room (its bits only grow)."""
    if any(not ends for ends, _b, _o in options):
        return [ends[-1] if ends else s for (ends, _b, _o), s in zip(options, starts)]
    l_ends, l_bits, l_objs = options[-1]
    # prefix minimum of the last operand's objective, ties to the later index
    pmin = []
    best_i = 0
    for i, obj in enumerate(l_objs):
        if obj <= l_objs[best_i]:
            best_i = i
        pmin.append(best_i)
    n_last = len(l_ends) - 1
    m_ends, m_bits, m_objs = options[-2]
    best = None
    best_combo = None
    for outer in itertools.product(*(range(len(o[0])) for o in options[:-2])):
        used0 = obj0 = 0
        for (_e, b, o), i in zip(options, outer):
            used0 += b[i]
            obj0 += o[i]
        for i in range(len(m_ends)):
            if cap is None:
                k = n_last
            else:
                k = bisect_right(l_bits, cap - used0 - m_bits[i]) - 1
                if k < 0:
                    break
            j = pmin[k]
            obj = obj0 + m_objs[i] + l_objs[j]
            if best is None or obj <= best:
                best = obj
                best_combo = (outer, i, j)
    if best_combo is None:
        return list(starts)
    outer, i, j = best_combo
    return [o[0][x] for o, x in zip(options, outer)] + [m_ends[i], l_ends[j]]


# ----------------------------------------------------------------------------------------------
# Candidates
# ----------------------------------------------------------------------------------------------
#: Temporal orders the mapper tries, innermost first (each dim's remaining bound is split into
#: its prime factors, ascending, kept together, so the greedy allocation can cut inside a dim).
ORDERS: dict[str, tuple[str, ...]] = {
    "weight_stationary": ("OX", "OY", "B", "FX", "FY", "C", "K"),
    "output_stationary": ("FX", "FY", "C", "OX", "OY", "B", "K"),
    "input_stationary": ("K", "FX", "FY", "OX", "OY", "B", "C"),
    "row_stationary": ("FX", "C", "K", "OX", "OY", "B", "FY"),
}


def _primes(n: int) -> list[int]:
    out = []
    p = 2
    while p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    if n > 1:
        out.append(n)
    return out


def _spatials(dims: ConvDims, array_rows: int, array_cols: int) -> list[tuple[str, tuple]]:
    """The spatial unrollings tried: "K|C" (cols = K, rows = C; TPU-like), "K|OX" (cols = K,
    rows = OX; for few input channels), "OY|FY.K" (cols = OY, rows = FY x K replicas;
    row-stationary-like). Each factor is min(dim, array size) (a partial last tile by ceil);
    factor-1 entries are dropped and duplicates removed (first kept)."""
    d = dims
    fy = min(d.FY, array_rows)
    raw = [
        ("K|C", (("cols", (("K", min(d.K, array_cols)),)), ("rows", (("C", min(d.C, array_rows)),)))),
        ("K|OX", (("cols", (("K", min(d.K, array_cols)),)), ("rows", (("OX", min(d.OX, array_rows)),)))),
        ("OY|FY.K", (("cols", (("OY", min(d.OY, array_cols)),)),
                     ("rows", (("FY", fy), ("K", min(d.K, max(1, array_rows // fy))))))),
    ]
    out, seen = [], set()
    for name, sp in raw:
        sp = tuple((a, tuple((x, f) for x, f in loops if f > 1)) for a, loops in sp)
        sp = tuple((a, loops) for a, loops in sp if loops)
        if sp in seen:
            continue
        seen.add(sp)
        out.append((name, sp))
    return out


def _sp_factors(spatial: tuple) -> dict[str, int]:
    sp = {x: 1 for x in DIMS}
    for _a, loops in spatial:
        for x, f in loops:
            sp[x] *= f
    return sp


def _temporal(dims: ConvDims, spatial: tuple, order: Sequence[str]) -> tuple[tuple[str, int], ...]:
    sp = {x: 1 for x in DIMS}
    for _a, loops in spatial:
        for x, f in loops:
            sp[x] *= f
    loops = []
    for x in order:
        rem = -(-getattr(dims, x) // sp[x])
        for p in _primes(rem):
            loops.append((x, p))
    return tuple(loops)


def mapper_candidates(dims: ConvDims, array_rows: int, array_cols: int
                      ) -> list[tuple[str, tuple, tuple[tuple[str, int], ...]]]:
    """The default search space: (name, spatial, temporal order) for every spatial unrolling of
    `_spatials` x every order of `ORDERS` (names "K|C/weight_stationary", ...). Unrollings
    needing more than twice the temporal iterations of the best one (poor PE use, e.g. C = 3
    on the rows) are dropped before any evaluation."""
    sps = _spatials(dims, array_rows, array_cols)
    ts = [math.prod(-(-getattr(dims, x) // f) for x, f in _sp_factors(sp).items()) for _n, sp in sps]
    t_best = min(ts)
    out = []
    for (sname, sp), t in zip(sps, ts):
        if t > 2 * t_best:
            continue
        for oname, order in ORDERS.items():
            out.append((f"{sname}/{oname}", sp, _temporal(dims, sp, order)))
    return out


def _merge_loops(temporal: Sequence[tuple[str, int]], levels: Mapping[str, Sequence[int]]
                 ) -> tuple[tuple[tuple[str, int], ...], dict[str, tuple[int, ...]]]:
    """Merge adjacent loops of one dim that no operand's level boundary separates (cost-neutral)."""
    cuts = set()
    for counts in levels.values():
        cuts.update(itertools.accumulate(counts))
    new: list[list] = []
    index_map = [0] * (len(temporal) + 1)
    for k, (x, b) in enumerate(temporal):
        if new and new[-1][0] == x and k not in cuts:
            new[-1][1] *= b
        else:
            new.append([x, b])
        index_map[k + 1] = len(new)
    out_levels = {}
    for op, counts in levels.items():
        ends = [index_map[e] for e in itertools.accumulate(counts)]
        out_levels[op] = tuple(e - s for s, e in zip([0] + ends[:-1], ends))
    return tuple((x, b) for x, b in new), out_levels


def map_layer(dims: ConvDims, hierarchy: Sequence[NestLevel], precisions: Precisions,
              array_rows: int, array_cols: int, mac_energy_pj: float, objective: str = "energy",
              candidates: Sequence[tuple[tuple, Sequence[tuple[str, int]]]] | None = None, *,
              psum_reads: str = "exact") -> tuple[LoopNest, NestCost]:
    """The default mapper: a small, deterministic search.

    Candidates are (spatial, temporal order) pairs -- by default `mapper_candidates` (3 spatial
    unrollings x 4 canonical orders, each dim split into prime-factor loops). Each is placed on
    the levels by `allocate_levels` and priced as `evaluate` would (through its light path,
    which skips a candidate once a lower bound shows it cannot win); the fitting candidate with
    the smallest `objective` ("energy", "latency" or "edp") wins, ties to the first. If none
    fits, the best non-fitting one is returned (``cost.fits`` is False: callers should refuse it).
    Adjacent loops of one dim inside one level are merged in the returned nest (cost-neutral).
    With the default candidates the result is memoised per (dims, hierarchy, ...) -- see
    `clear_mapper_cache`; the returned objects are shared, treat them as read-only.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective: expected one of {list(OBJECTIVES)}, got {objective!r}")
    if psum_reads not in ("exact", "zigzag"):
        raise ValueError(f"psum_reads: expected 'exact' or 'zigzag', got {psum_reads!r}")
    if candidates is None:
        return _map_default(dims, tuple(hierarchy), precisions, array_rows, array_cols,
                            float(mac_energy_pj), objective, psum_reads)
    return _map(dims, hierarchy, precisions, array_rows, array_cols, mac_energy_pj, objective,
                candidates, psum_reads)


@functools.lru_cache(maxsize=4096)
def _map_default(dims: ConvDims, hierarchy: tuple[NestLevel, ...], precisions: Precisions,
                 array_rows: int, array_cols: int, mac_energy_pj: float, objective: str,
                 psum_reads: str) -> tuple[LoopNest, NestCost]:
    """`map_layer` with the default candidates, memoised: layers of one shape (common within a
    network) are searched once. The returned objects are shared: treat them as read-only."""
    return _map(dims, hierarchy, precisions, array_rows, array_cols, mac_energy_pj, objective,
                None, psum_reads)


def clear_mapper_cache() -> None:
    """Forget `map_layer`'s memoised results (for benchmarks)."""
    _map_default.cache_clear()


def _map(dims: ConvDims, hierarchy: Sequence[NestLevel], precisions: Precisions, array_rows: int,
         array_cols: int, mac_energy_pj: float, objective: str, candidates: Any,
         psum_reads: str) -> tuple[LoopNest, NestCost]:
    """Search `candidates` (None: `mapper_candidates`) in order; see `map_layer`."""
    chains = _chains(hierarchy)
    if candidates is None:
        # valid by construction (each dim's factors are its unroll and the prime factors of the
        # ceil-divided rest, ascending; unrolls within the array): checked on the winner only
        cands = [(sp, t) for _n, sp, t in mapper_candidates(dims, array_rows, array_cols)]
    else:
        cands = []
        for sp, t in candidates:
            nest0 = LoopNest(spatial=tuple(sp), temporal=tuple(t), levels={})
            nest0.check(dims)
            _check_spatial(nest0, array_rows, array_cols)
            cands.append((nest0.spatial, nest0.temporal))
    if not cands:
        raise ValueError("candidates: expected at least one (spatial, temporal) candidate")
    exact = psum_reads == "exact"
    prune = bounds_valid(hierarchy, mac_energy_pj)
    best = None  # (key, prep, levels, spatial)
    for sp, temporal in cands:
        prep = _Prep(dims, temporal, sp)
        beat = best[0] if best is not None and prune else None
        if beat is not None and not beat[0] and _value_floor(prep, mac_energy_pj, objective) >= beat[1]:
            continue  # fits or not, it cannot compare below the fitting best
        levels = _allocate(prep, hierarchy, chains, precisions)
        key = search_key(prep, levels, hierarchy, chains, precisions, mac_energy_pj, exact,
                         objective, beat)
        if key is not None and (best is None or key < best[0]):
            best = (key, prep, levels, sp)
    key, prep, levels, sp = best
    cost = _evaluate(prep, levels, hierarchy, chains, precisions, mac_energy_pj, exact)
    assert _same_key(key, (not cost.fits, objective_value(cost, objective))), (key, cost)
    if candidates is None:
        nest0 = LoopNest(spatial=sp, temporal=prep.loops, levels={})
        nest0.check(dims)
        _check_spatial(nest0, array_rows, array_cols)
    temporal, levels = _merge_loops(prep.loops, levels)
    return LoopNest(spatial=sp, temporal=temporal, levels=levels), cost


def _value_floor(prep: _Prep, mac_energy_pj: float, objective: str) -> float:
    """A lower bound of the candidate's objective known before allocation (valid when
    `bounds_valid`): energy >= the MACs' (pJ), latency >= the temporal cycles, edp >= both's
    product."""
    mac = prep.dims.macs * mac_energy_pj
    if objective == "energy":
        return mac
    if objective == "latency":
        return float(prep.T)
    return mac * float(prep.T)


def _same_key(a: tuple[bool, float], b: tuple[bool, float]) -> bool:
    """Keys equal (NaN equal to NaN)."""
    return a[0] == b[0] and (a[1] == b[1] or (a[1] != a[1] and b[1] != b[1]))
