"""Pricing of one mapping: the counting model stated in hwsim/mapping/loopnest.py.

`evaluate` builds the full `NestCost` of a nest. `search_key` prices a candidate of the mapper's
search through the same steps (`_operand_info`, `_specs`, `_double_buffering`, `_stall`,
`_chain_load`) but computes only what the search compares -- whether the tiles fit, the energy
(pJ) and/or the latency (cycles) -- and builds no result objects; it may also stop as soon as a
lower bound shows the candidate cannot beat the best so far. Both paths add the same numbers in
the same order, so their figures are bit-identical.
"""

from __future__ import annotations

import itertools
import math
from typing import Callable, Mapping, Sequence

from hwsim.mapping.loopnest_types import (
    _B, _C, _DI, _DIRS, _FULLREL, _FX, _FY, _IS_READ, _K, _OX, _OY, _REL, OPERANDS, ConvDims,
    LevelCost, LoopNest, NestCost, NestLevel, OperandLevelCost, Precisions, Transfer,
    _check_spatial)


# ----------------------------------------------------------------------------------------------
# Tiles
# ----------------------------------------------------------------------------------------------
def _ext(o: int, f: int, s: int, d: int, full: int) -> int:
    """Input rows touched by ``o`` outputs x ``f`` taps (stride s, dilation d), clipped to the
    whole-layer extent ``full`` (see "Input tiles" in the model)."""
    e = s * (o - 1) + d * (f - 1) + 1
    p = o * f
    if p < e:
        e = p
    return e if e < full else full


def _elements(op: str, p: Sequence[int], dm: ConvDims) -> int:
    """Elements of `op`'s tile spanning ``p[i]`` of every dim i (already clipped to the sizes)."""
    if op == "ofmap":
        return p[_B] * p[_K] * p[_OY] * p[_OX]
    if op == "filter":
        return p[_K] * p[_C] * p[_FY] * p[_FX]
    return (p[_B] * p[_C] * _ext(p[_OY], p[_FY], dm.stride_y, dm.dilation_y, dm.in_y)
            * _ext(p[_OX], p[_FX], dm.stride_x, dm.dilation_x, dm.in_x))


def _chains(hierarchy: Sequence[NestLevel]) -> dict[str, list[int]]:
    """{operand: indices into `hierarchy` of the levels holding it, innermost first}; raises
    ValueError on a malformed hierarchy."""
    if not hierarchy:
        raise ValueError("hierarchy: expected at least one level (DRAM)")
    top = hierarchy[0]
    if set(top.holds) != set(OPERANDS) or top.per_pe:
        raise ValueError(f"hierarchy[0] ({top.name!r}): the outermost level must be shared and hold every operand")
    names = [lv.name for lv in hierarchy]
    if len(set(names)) != len(names):
        raise ValueError(f"hierarchy: level names must be unique, got {names}")
    chains = {}
    for op in OPERANDS:
        chain = [i for i in range(len(hierarchy) - 1, -1, -1) if op in hierarchy[i].holds]
        seen_shared = False
        for i in chain:
            if not hierarchy[i].per_pe:
                seen_shared = True
            elif seen_shared:
                raise ValueError(f"hierarchy: per-PE level {hierarchy[i].name!r} lies above a shared level of {op}")
        chains[op] = chain
    return chains


class _Prep:
    """Per-(dims, loops, spatial) prefix data shared by allocation and evaluation.

    di/bounds: dim index and bound of every temporal loop, innermost first; tprod[e]: product of
    loops[:e] (the period, in cycles, of a level owning them); T = tprod[L]; sp: per-dim spatial
    unroll; n_pe: PEs used; sp_red: a reduction dim is unrolled; orel_suffix[e]: product of the
    ofmap-relevant loops in loops[e:]; irr_after[op][e]: a loop with bound > 1 irrelevant to op
    lies in loops[e:]. Tiles: `tiles`.
    """

    __slots__ = ("dims", "sizes", "loops", "di", "bounds", "tprod", "sp", "n_pe", "L", "T",
                 "orel_suffix", "sp_red", "irr_after", "_tables")

    def __init__(self, dims: ConvDims, loops: Sequence[tuple[str, int]], spatial: Sequence) -> None:
        self.dims = dims
        self.sizes = dims.sizes
        self.loops = tuple(loops)
        self.di = di = [_DI[d] for d, _ in loops]
        self.bounds = bounds = [b for _, b in loops]
        sp = [1] * 7
        for _a, ls in spatial:
            for d, f in ls:
                sp[_DI[d]] *= f
        self.sp = sp
        self.n_pe = math.prod(sp)
        self.sp_red = sp[_C] * sp[_FY] * sp[_FX] > 1
        self.tprod = tprod = [1]
        for b in bounds:
            tprod.append(tprod[-1] * b)
        self.L = L = len(bounds)
        self.T = tprod[L]
        orel = _REL["ofmap"]
        suf = [1] * (L + 1)
        for k in range(L - 1, -1, -1):
            suf[k] = suf[k + 1] * (bounds[k] if orel[di[k]] else 1)
        self.orel_suffix = suf
        self.irr_after = {}
        for op in OPERANDS:
            rel = _REL[op]
            flags = [False] * (L + 1)
            for k in range(L - 1, -1, -1):
                flags[k] = flags[k + 1] or (bounds[k] > 1 and not rel[di[k]])
            self.irr_after[op] = flags
        self._tables: dict[tuple[str, bool], list[int]] = {}

    def tiles(self, op: str, with_spatial: bool) -> list[int]:
        """Elements of `op`'s tile over loops[:e] for every e = 0..L (times every spatial unroll
        if `with_spatial`), each dim's extent clipped to its size; memoised."""
        key = (op, with_spatial)
        table = self._tables.get(key)
        if table is None:
            table = self._tables[key] = self._tile_table(op, with_spatial)
        return table

    def _tile_table(self, op: str, with_spatial: bool) -> list[int]:
        size = self.sizes
        ext = list(self.sp) if with_spatial else [1] * 7  # unclipped extents over loops[:e]
        clipped = [min(x, s) for x, s in zip(ext, size)]
        rel = _REL[op]
        out = [_elements(op, clipped, self.dims)]
        for d, b in zip(self.di, self.bounds):
            if rel[d]:
                ext[d] *= b
                v = min(ext[d], size[d])
                if v != clipped[d]:
                    clipped[d] = v
                    out.append(_elements(op, clipped, self.dims))
                    continue
            out.append(out[-1])
        return out


def _bits(op: str, prec: Precisions, psum: bool) -> int:
    """Bits per element of `op` (the ofmap at psum bits while it holds partial sums)."""
    if op == "ifmap":
        return prec.ifmap
    if op == "filter":
        return prec.filter
    return prec.psum if psum else prec.ofmap


# ----------------------------------------------------------------------------------------------
# Per-operand steps shared by `evaluate` and `search_key`
# ----------------------------------------------------------------------------------------------
class _OpInfo:
    """One operand on its chain after the merge-down; lists are indexed by chain level j
    (innermost first).

    chain: hierarchy indices; at: {hierarchy index: j}; ends/starts: the slice of temporal loops
    each level owns; s_pe: how many levels are per-PE; S: tile elements per instance; bits: bits
    per element held; psum: the level holds partial sums; top_ir / top_r: product of the
    operand-irrelevant / fully relevant loops at the level's top (only with ``windows``); p_m1
    (cycles) and end_m1: period and loop count of the array's reads (stationarity); a_m1:
    elements the array uses in one step.
    """

    __slots__ = ("op", "chain", "at", "ends", "starts", "s_pe", "S", "bits", "psum", "top_ir",
                 "top_r", "p_m1", "end_m1", "a_m1")


def _operand_info(prep: _Prep, op: str, counts: Sequence[int], chain: list[int],
                  hierarchy: Sequence[NestLevel], prec: Precisions, windows: bool) -> _OpInfo:
    """Pass 1 of the model for `op`: level boundaries (after the merge-down of irrelevant loops),
    tiles, psum flags; with `windows` also the top-of-level loop products the latency needs."""
    di, bounds = prep.di, prep.bounds
    rel = _REL[op]
    n = len(chain)
    ends = list(itertools.accumulate(counts))
    # merge-down of operand-irrelevant loops at the bottom of each level j >= 1
    for j in range(1, n):
        while ends[j - 1] < ends[j] and not rel[di[ends[j - 1]]]:
            ends[j - 1] += 1
    starts = [0] + ends[:-1]
    s_pe = sum(1 for i in chain if hierarchy[i].per_pe)
    S, bits_l, psum_l = [], [], []
    for j in range(n):
        S.append(prep.tiles(op, j >= s_pe)[ends[j]])
        if op == "ofmap":
            ps = prep.irr_after[op][starts[j]] or (j < s_pe and prep.sp_red)
        else:
            ps = False
        psum_l.append(ps)
        bits_l.append(_bits(op, prec, ps))
    inf = _OpInfo()
    inf.op, inf.chain, inf.ends, inf.starts, inf.s_pe = op, chain, ends, starts, s_pe
    inf.at = {h: j for j, h in enumerate(chain)}
    inf.S, inf.bits, inf.psum = S, bits_l, psum_l
    if windows:
        frel = _FULLREL[op]
        inf.top_ir, inf.top_r = [], []
        for j in range(n):
            ti = tr = 1
            k = ends[j] - 1
            while k >= starts[j] and not rel[di[k]]:
                ti *= bounds[k]
                k -= 1
            k = ends[j] - 1
            while k >= starts[j] and frel[di[k]]:
                tr *= bounds[k]
                k -= 1
            inf.top_ir.append(ti)
            inf.top_r.append(tr)
    k = 0
    p_m1 = 1
    if op != "ofmap":
        while k < ends[0] and not rel[di[k]]:
            p_m1 *= bounds[k]
            k += 1
    inf.p_m1, inf.end_m1 = p_m1, k
    inf.a_m1 = prep.tiles(op, True)[0]
    return inf


def _level_tile_bits(hierarchy: Sequence[NestLevel], infos: Mapping[str, _OpInfo]) -> list[int]:
    """Bits one instance of every level holds (its operands' tiles summed)."""
    out = []
    for h, lv in enumerate(hierarchy):
        total = 0
        for op in lv.holds:
            inf = infos[op]
            j = inf.at[h]
            total += inf.S[j] * inf.bits[j]
        out.append(total)
    return out


def _double_buffering(hierarchy: Sequence[NestLevel], infos: Mapping[str, _OpInfo]
                      ) -> dict[tuple[int, str], bool]:
    """{(level index, operand): double-buffered} by ZigZag's shared-memory rule (see Latency)."""
    dbuf: dict[tuple[int, str], bool] = {}
    for h, lv in enumerate(hierarchy):
        ops = [op for op in ("ofmap", "filter", "ifmap") if op in lv.holds]
        if lv.size_bits is None:
            for op in ops:
                dbuf[(h, op)] = True
            continue
        eff = {}
        for op in ops:
            inf = infos[op]
            j = inf.at[h]
            # the second buffer holds the tile exchanged with the parent, at the precision it
            # moves (a final ofmap tile leaves at ofmap_bits even if it accumulated at psum_bits)
            xb = inf.bits[j + 1] if op == "ofmap" and j + 1 < len(inf.chain) else inf.bits[j]
            eff[op] = inf.S[j] * xb / inf.top_r[j]
        shared_u = sum(eff.values()) / lv.size_bits
        for op in ops:
            ind = eff[op] / lv.size_bits
            if shared_u <= 0.5:
                dbuf[(h, op)] = True
            elif ind <= 1 - shared_u:
                dbuf[(h, op)] = True
                shared_u += ind
            else:
                dbuf[(h, op)] = False
    return dbuf


#: One transfer of a (level, operand) before pricing: (direction, elements per period per
#: instance, bits per element, period in cycles, charged periods per instance, receiver), the
#: receiver being the chain level whose window bounds it (-1: the array).
_Spec = tuple[str, int, int, int, int, int]
#: The transfers of (operand info, chain level j), memoised within one `search_key` call.
_SpecsOf = Callable[["_OpInfo", int], "list[_Spec]"]


def _specs(prep: _Prep, inf: _OpInfo, j: int, exact: bool) -> list[_Spec]:
    """The transfers of chain level j of `inf`'s operand (see "Counting model")."""
    op, S, ends, T, tprod = inf.op, inf.S, inf.ends, prep.T, prep.tprod
    top = j == len(inf.chain) - 1
    if j == 0:
        p_below, end_below = inf.p_m1, inf.end_m1
    else:
        end_below = ends[j - 1]
        p_below = tprod[end_below]
    if j < inf.s_pe:
        e_down = 1 if j == 0 else S[j - 1]
    else:
        e_down = inf.a_m1 if j == 0 else prep.tiles(op, True)[ends[j - 1]]
    p_own = tprod[ends[j]]
    below = j - 1
    if op != "ofmap":
        out = [("read_down", e_down, inf.bits[j], p_below, T // p_below, below)]
        if not top:
            out.append(("write_fill", S[j], inf.bits[j], p_own, T // p_own, j))
        return out
    wb = inf.bits[j]
    out = [("write_from_below", e_down, wb, p_below, T // p_below, below)]
    if inf.psum[j]:
        cnt = T // p_below
        if exact:
            cnt -= prep.orel_suffix[end_below]
        out.append(("read_down", e_down, wb, p_below, cnt, below))
    if not top:
        ub = inf.bits[j + 1]
        out.append(("read_up", S[j], ub, p_own, T // p_own, j))
        if inf.psum[j + 1]:
            cnt = T // p_own
            if exact:
                cnt -= prep.orel_suffix[ends[j]]
            out.append(("write_fill", S[j], ub, p_own, cnt, j))
    return out


def _window(inf: _OpInfo, receiver: int, period: int, dbuf: Mapping[tuple[int, str], bool]) -> float:
    """Cycles a transfer may take per period: the whole period if the receiving chain level is
    double-buffered (or is the array, ``receiver = -1``), else period / its top irrelevant loops."""
    if receiver < 0 or dbuf[(inf.chain[receiver], inf.op)]:
        return float(period)
    return period / inf.top_ir[receiver]


def _real_cycles(pbits: int, lv: NestLevel) -> float:
    """Cycles one period's ``pbits`` bits take on one port of `lv` (0.0 if unlimited)."""
    bw = lv.bandwidth_bits_per_cycle
    return math.ceil(pbits / bw) if bw != math.inf else 0.0


def _port(ports: int, direction: str) -> int:
    """Index of the port of a level with `ports` ports that carries `direction`."""
    if ports == 1:
        return 0
    if ports == 2:
        return 0 if _IS_READ[direction] else 1
    return _DIRS.index(direction)


def _stall(port_acts: Mapping[tuple[int, int], list[tuple[float, float, int]]], T: int
           ) -> dict[int, float]:
    """{level index: stall cycles} from each port's (real, allowed, periods) transfers: the
    overruns plus the time the port is busier than the computation lasts; a level stalls by its
    worst port."""
    stall_level: dict[int, float] = {}
    for (h, _port_i), acts in port_acts.items():
        pos = 0.0
        busy = 0.0
        for real, allowed, pc in acts:
            if pc <= 1:
                continue
            if real > allowed:
                pos += (real - allowed) * (pc - 1)
                busy += allowed * (pc - 1)
            else:
                busy += real * (pc - 1)
        st = pos + max(0.0, busy - T)
        stall_level[h] = max(stall_level.get(h, 0.0), st)
    return stall_level


def _chain_load(reals: Sequence[Mapping[str, float]], op: str) -> float:
    """Cycles of one period of every link of `op`'s chain (`reals[j]`: {direction: real cycles}
    of chain level j); a link costs the slower of its two ends. ifmap/filter: parent read_down vs
    child write_fill (and level 0 -> array); ofmap: child read_up vs parent write_from_below (and
    array -> level 0)."""
    total = 0.0
    if op == "ofmap":
        total += reals[0].get("write_from_below", 0.0)
        for j in range(len(reals) - 1):
            total += max(reals[j].get("read_up", 0.0), reals[j + 1].get("write_from_below", 0.0))
    else:
        total += reals[0].get("read_down", 0.0)
        for j in range(len(reals) - 1):
            total += max(reals[j].get("write_fill", 0.0), reals[j + 1].get("read_down", 0.0))
    return total


# ----------------------------------------------------------------------------------------------
# Full evaluation
# ----------------------------------------------------------------------------------------------
def evaluate(dims: ConvDims, nest: LoopNest, hierarchy: Sequence[NestLevel], precisions: Precisions,
             *, array_rows: int, array_cols: int, mac_energy_pj: float,
             psum_reads: str = "exact") -> NestCost:
    """Count accesses, energy and latency of `nest` (see hwsim/mapping/loopnest.py for the model).

    psum_reads: "exact" (the first accumulation pass reads nothing; hwsim's default) or
    "zigzag" (every psum write is matched by a read back, as ZigZag 3.9.1 counts).
    """
    if psum_reads not in ("exact", "zigzag"):
        raise ValueError(f"psum_reads: expected 'exact' or 'zigzag', got {psum_reads!r}")
    nest.check(dims)
    _check_spatial(nest, array_rows, array_cols)
    chains = _chains(hierarchy)
    for op in OPERANDS:
        if op not in nest.levels:
            raise ValueError(f"loop nest: levels.{op}: missing (one count per level holding {op})")
        if len(nest.levels[op]) != len(chains[op]):
            raise ValueError(f"loop nest: levels.{op}: {len(nest.levels[op])} counts for {len(chains[op])} levels "
                             f"({[hierarchy[i].name for i in chains[op]]})")
    prep = _Prep(dims, nest.temporal, nest.spatial)
    return _evaluate(prep, nest.levels, hierarchy, chains, precisions, mac_energy_pj,
                     psum_reads == "exact")


def _evaluate(prep: _Prep, levels: Mapping[str, Sequence[int]], hierarchy: Sequence[NestLevel],
              chains: dict[str, list[int]], prec: Precisions, mac_energy_pj: float,
              exact: bool) -> NestCost:
    """The full `NestCost` of the loop counts `levels` on `prep`'s nest."""
    T = prep.T
    infos = {op: _operand_info(prep, op, levels[op], chains[op], hierarchy, prec, True)
             for op in OPERANDS}
    dbuf = _double_buffering(hierarchy, infos)
    per_operand: dict[tuple[str, str], OperandLevelCost] = {}
    port_acts: dict[tuple[int, int], list[tuple[float, float, int]]] = {}
    reals: dict[str, list[dict[str, float]]] = {op: [] for op in OPERANDS}
    for op in OPERANDS:
        inf = infos[op]
        for j, h in enumerate(inf.chain):
            lv = hierarchy[h]
            inst = prep.n_pe if j < inf.s_pe else 1
            transfers = []
            rd = wr = rde = wre = 0
            for dname, e, b, per, cnt, receiver in _specs(prep, inf, j, exact):
                pbits = e * b
                acc = -(-pbits // lv.access_bits) * cnt * inst
                el = e * cnt * inst
                real = _real_cycles(pbits, lv)
                allowed = _window(inf, receiver, per, dbuf)
                port = _port(lv.ports, dname)
                transfers.append(Transfer(dname, e, b, per, cnt, inst, acc, el, real, allowed, port))
                if _IS_READ[dname]:
                    rd += acc
                    rde += el
                else:
                    wr += acc
                    wre += el
                port_acts.setdefault((h, port), []).append((real, allowed, T // per))
            reals[op].append({t.direction: t.real_cycles for t in transfers})  # directions unique
            per_operand[(lv.name, op)] = OperandLevelCost(
                level=lv.name, operand=op, reads=rd, writes=wr, reads_elements=rde, writes_elements=wre,
                read_energy_pj=rd * lv.read_energy_pj, write_energy_pj=wr * lv.write_energy_pj,
                tile_elements=inf.S[j], tile_bits=inf.S[j] * inf.bits[j], instances=inst,
                holds_psums=inf.psum[j], double_buffered=dbuf[(h, op)],
                loops=prep.loops[inf.starts[j]:inf.ends[j]], transfers=tuple(transfers))
    stall_level = _stall(port_acts, T)
    stall = max([0.0] + list(stall_level.values()))
    onload = max(_chain_load(reals["ifmap"], "ifmap"), _chain_load(reals["filter"], "filter"))
    offload = _chain_load(reals["ofmap"], "ofmap")
    tile_bits = _level_tile_bits(hierarchy, infos)
    level_costs = {}
    mem_energy = 0.0
    all_fit = True
    for h, lv in enumerate(hierarchy):
        rd = wr = 0
        en = 0.0
        for op in lv.holds:
            c = per_operand[(lv.name, op)]
            rd += c.reads
            wr += c.writes
            en += c.energy_pj
        tb = tile_bits[h]
        fits = lv.size_bits is None or tb <= lv.size_bits
        all_fit = all_fit and fits
        mem_energy += en
        level_costs[lv.name] = LevelCost(lv.name, rd, wr, en, tb, lv.size_bits, fits, stall_level.get(h, 0.0))
    macs = prep.dims.macs
    return NestCost(macs=macs, temporal_cycles=T, pes_used=prep.n_pe, mac_energy_pj=macs * mac_energy_pj,
                    memory_energy_pj=mem_energy, per_operand=per_operand, levels=level_costs,
                    stall_cycles=stall, onload_cycles=onload, offload_cycles=offload, fits=all_fit)


# ----------------------------------------------------------------------------------------------
# Light evaluation for the mapper's search
# ----------------------------------------------------------------------------------------------
OBJECTIVES = ("energy", "latency", "edp")


def objective_value(cost: NestCost, objective: str) -> float:
    """The figure `map_layer` minimises: energy (pJ), latency (cycles) or edp (pJ x cycles)."""
    if objective == "energy":
        return cost.energy_pj
    if objective == "latency":
        return cost.latency_cycles
    if objective == "edp":
        return cost.edp
    raise ValueError(f"objective: expected one of {list(OBJECTIVES)}, got {objective!r}")


def bounds_valid(hierarchy: Sequence[NestLevel], mac_energy_pj: float) -> bool:
    """Do partial sums bound the final figures from below? (Every per-access and per-MAC energy
    finite and >= 0: then every term added is >= 0, and float rounding is monotone.)"""
    return all(math.isfinite(x) and x >= 0 for lv in hierarchy
               for x in (lv.read_energy_pj, lv.write_energy_pj)) and \
        math.isfinite(mac_energy_pj) and mac_energy_pj >= 0


def search_key(prep: _Prep, levels: Mapping[str, Sequence[int]], hierarchy: Sequence[NestLevel],
               chains: dict[str, list[int]], prec: Precisions, mac_energy_pj: float, exact: bool,
               objective: str, beat: tuple[bool, float] | None = None
               ) -> tuple[bool, float] | None:
    """``(not fits, objective value)`` of the loop counts `levels` on `prep`'s nest, equal to
    ``(not c.fits, objective_value(c, objective))`` for ``c = _evaluate(...)``.

    With `beat` (the best key so far; only pass it when `bounds_valid`), returns None as soon
    as the candidate provably cannot compare below it: it does not fit while `beat` does, or
    a lower bound of its value is already >= ``beat[1]`` (the energy summed over the levels
    priced so far, DRAM first, plus the MACs; the latency's temporal cycles).
    """
    T = prep.T
    want_energy = objective != "latency"
    want_latency = objective != "energy"
    infos = {op: _operand_info(prep, op, levels[op], chains[op], hierarchy, prec, want_latency)
             for op in OPERANDS}
    tile_bits = _level_tile_bits(hierarchy, infos)
    unfit = not all(lv.size_bits is None or tb <= lv.size_bits for lv, tb in zip(hierarchy, tile_bits))
    bound = None
    if beat is not None:
        if unfit and not beat[0]:
            return None
        if unfit == beat[0]:
            bound = beat[1]
    specs: dict[tuple[str, int], list[_Spec]] = {}

    def specs_of(inf: _OpInfo, j: int) -> list[_Spec]:
        key = (inf.op, j)
        s = specs.get(key)
        if s is None:
            s = specs[key] = _specs(prep, inf, j, exact)
        return s

    energy = latency = None
    if want_energy:
        scale = 1.0 if objective == "energy" else float(T)  # latency >= T
        energy = _search_energy(prep, infos, hierarchy, mac_energy_pj, specs_of, bound, scale)
        if energy is None:
            return None
    if want_latency:
        latency = _search_latency(prep, infos, hierarchy, specs_of)
    if objective == "energy":
        return unfit, energy
    if objective == "latency":
        return unfit, latency
    return unfit, energy * latency


def _search_energy(prep: _Prep, infos: Mapping[str, _OpInfo], hierarchy: Sequence[NestLevel],
                   mac_energy_pj: float, specs_of: _SpecsOf, bound: float | None, scale: float
                   ) -> float | None:
    """Total energy (pJ) as `_evaluate` sums it (levels outermost first, operands in `holds`
    order); None once ``(MAC energy + the levels so far) x scale >= bound``."""
    n_pe = prep.n_pe
    mac = prep.dims.macs * mac_energy_pj
    mem = 0.0
    for h, lv in enumerate(hierarchy):
        en = 0.0
        for op in lv.holds:
            inf = infos[op]
            j = inf.at[h]
            inst = n_pe if j < inf.s_pe else 1
            rd = wr = 0
            for dname, e, b, _per, cnt, _rcv in specs_of(inf, j):
                acc = -(-(e * b) // lv.access_bits) * cnt * inst
                if _IS_READ[dname]:
                    rd += acc
                else:
                    wr += acc
            en += rd * lv.read_energy_pj + wr * lv.write_energy_pj
        mem += en
        if bound is not None and (mac + mem) * scale >= bound:
            return None
    return mac + mem


def _search_latency(prep: _Prep, infos: Mapping[str, _OpInfo], hierarchy: Sequence[NestLevel],
                    specs_of: _SpecsOf) -> float:
    """Latency (cycles) as `_evaluate` computes it: T + stall + onload + offload."""
    T = prep.T
    dbuf = _double_buffering(hierarchy, infos)
    port_acts: dict[tuple[int, int], list[tuple[float, float, int]]] = {}
    reals: dict[str, list[dict[str, float]]] = {}
    for op in OPERANDS:
        inf = infos[op]
        reals[op] = []
        for j, h in enumerate(inf.chain):
            lv = hierarchy[h]
            r = {}
            for dname, e, b, per, _cnt, receiver in specs_of(inf, j):
                real = _real_cycles(e * b, lv)
                allowed = _window(inf, receiver, per, dbuf)
                port_acts.setdefault((h, _port(lv.ports, dname)), []).append((real, allowed, T // per))
                r[dname] = real
            reals[op].append(r)
    stall = max([0.0] + list(_stall(port_acts, T).values()))
    onload = max(_chain_load(reals["ifmap"], "ifmap"), _chain_load(reals["filter"], "filter"))
    offload = _chain_load(reals["ofmap"], "ofmap")
    return T + stall + onload + offload
