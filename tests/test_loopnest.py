"""Properties of the loop-nest engine and the default mapper (hwsim.mapping.loopnest)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwsim.mapping import (
    ConvDims,
    LoopNest,
    NestLevel,
    Precisions,
    allocate_levels,
    clear_mapper_cache,
    evaluate,
    map_layer,
    mapper_candidates,
    objective_value,
)
from hwsim.mapping.loopnest import _ext, _primes
from hwsim.mapping.loopnest_eval import _chains, _Prep, search_key

PREC = Precisions(ifmap=8, filter=4, psum=24, ofmap=8)
ALL = ("ifmap", "filter", "ofmap")
RELEVANT = {"ifmap": {"B", "C", "OY", "OX", "FY", "FX"}, "filter": {"K", "C", "FY", "FX"},
            "ofmap": {"B", "K", "OY", "OX"}}


def eyeriss_like(rf_scale: int = 1) -> tuple[NestLevel, ...]:
    return (
        NestLevel("dram", ALL, None, False, 64, 200.0, 210.0, 64.0, 1),
        NestLevel("gb", ALL, 8192 * 8, False, 64, 6.0, 7.0, 256.0, 2),
        NestLevel("rf_o", ("ofmap",), 24 * 32 * rf_scale, True, 32, 1.0, 1.5, 32.0, 4),
        NestLevel("rf_i", ("ifmap",), 12 * 8 * rf_scale, True, 8, 1.0, 1.25, 8.0, 2),
        NestLevel("rf_w", ("filter",), 224 * 8 * rf_scale, True, 8, 0.5, 1.0, 8.0, 2),
    )


def whole_input(d: ConvDims) -> int:
    return d.B * d.C * _ext(d.OY, d.FY, d.stride_y, 1, d.in_y) * _ext(d.OX, d.FX, d.stride_x, 1, d.in_x)


@st.composite
def cases(draw):
    s = draw(st.integers(1, 2))
    dims = ConvDims(B=draw(st.integers(1, 2)), K=draw(st.integers(1, 12)), C=draw(st.integers(1, 12)),
                    OY=draw(st.integers(1, 8)), OX=draw(st.integers(1, 8)), FY=draw(st.integers(1, 3)),
                    FX=draw(st.integers(1, 3)), stride_y=s, stride_x=s)
    # spatial: K on the cols, C or OY on the rows, exact divisors
    kf = draw(st.sampled_from([f for f in range(1, 5) if dims.K % f == 0]))
    rdim = draw(st.sampled_from(["C", "OY"]))
    rf = draw(st.sampled_from([f for f in range(1, 4) if getattr(dims, rdim) % f == 0]))
    spatial = (("cols", (("K", kf),)), ("rows", ((rdim, rf),)))
    loops = []
    for d in ("B", "K", "C", "OY", "OX", "FY", "FX"):
        rem = getattr(dims, d) // (kf if d == "K" else rf if d == rdim else 1)
        loops += [(d, p) for p in _primes(rem)]
    order = tuple(draw(st.permutations(loops))) if loops else ()
    return dims, spatial, order


def run(dims, nest, hier=None, **kw):
    return evaluate(dims, nest, hier or eyeriss_like(), PREC, array_rows=4, array_cols=4,
                    mac_energy_pj=0.7, **kw)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(), st.booleans())
def test_counting_invariants(case, big_rf):
    dims, spatial, order = case
    hier = eyeriss_like(64 if big_rf else 1)
    levels = allocate_levels(dims, order, spatial, hier, PREC)
    nest = LoopNest(spatial=spatial, temporal=order, levels=levels)
    cost = run(dims, nest, hier)
    assert cost.temporal_cycles == math.prod(b for _, b in order)
    assert cost.mac_energy_pj == dims.macs * 0.7
    # the parent level (DRAM) moves every distinct element at least once
    dram_i = cost.per_operand[("dram", "ifmap")].reads_elements
    dram_w = cost.per_operand[("dram", "filter")].reads_elements
    dram_o = cost.per_operand[("dram", "ofmap")].writes_elements
    assert dram_i >= whole_input(dims)
    assert dram_w >= dims.operand_elements("filter")
    assert dram_o >= dims.operand_elements("ofmap")
    # fills of each operand's innermost (per-PE) level cover the whole operand at least once
    assert cost.per_operand[("rf_w", "filter")].writes_elements >= dims.operand_elements("filter")
    assert cost.per_operand[("rf_i", "ifmap")].writes_elements >= whole_input(dims)
    assert cost.per_operand[("rf_o", "ofmap")].writes_elements >= dims.operand_elements("ofmap")
    # energies are accesses x per-access energies, exactly
    by_name = {lv.name: lv for lv in hier}
    total = 0.0
    for (lname, _op), c in cost.per_operand.items():
        assert c.read_energy_pj == c.reads * by_name[lname].read_energy_pj
        assert c.write_energy_pj == c.writes * by_name[lname].write_energy_pj
        assert c.reads == sum(t.accesses for t in c.transfers if t.direction.startswith("read"))
        total += c.energy_pj
    assert cost.memory_energy_pj == pytest.approx(total, rel=1e-12)
    # exact psums never exceed ZigZag's symmetric counts, and differ only on ofmap reads/fills
    zz = run(dims, nest, hier, psum_reads="zigzag")
    for key, c in cost.per_operand.items():
        z = zz.per_operand[key]
        assert c.writes_elements <= z.writes_elements and c.reads_elements <= z.reads_elements
        if key[1] != "ofmap":
            assert c == z
    # fits is the per-level sum of tile bits against the size
    for lv in hier:
        lc = cost.levels[lv.name]
        assert lc.tile_bits == sum(cost.per_operand[(lv.name, op)].tile_bits for op in lv.holds)
        assert lc.fits == (lv.size_bits is None or lc.tile_bits <= lv.size_bits)
    assert cost.fits == all(lc.fits for lc in cost.levels.values())
    assert cost.latency_cycles >= cost.temporal_cycles


@settings(max_examples=150, deadline=None)
@given(cases(), st.sampled_from(ALL), st.data())
def test_irrelevant_loop_innermost_never_increases_fills(case, op, data):
    dims, spatial, order = case
    irr = [k for k, (d, _b) in enumerate(order) if d not in RELEVANT[op]]
    if not irr:
        return
    k = data.draw(st.sampled_from(irr))
    hier = (NestLevel("dram", ALL, None, False, 8, 100.0, 100.0),
            NestLevel("buf", ALL, None, False, 8, 1.0, 1.0))
    n_in = data.draw(st.integers(0, len(order)))
    moved = (order[k],) + order[:k] + order[k + 1:]
    before = LoopNest(spatial, order, {o: (n_in, len(order) - n_in) for o in ALL})
    n_after = n_in + (1 if k >= n_in else 0)
    after = LoopNest(spatial, moved, {o: (n_after, len(order) - n_after) for o in ALL})
    cb = run(dims, before, hier).per_operand[("buf", op)]
    ca = run(dims, after, hier).per_operand[("buf", op)]
    fill = "write_fill" if op != "ofmap" else "write_from_below"
    if op == "ofmap":  # ofmap: what the buffer sends up to DRAM
        fb = sum(t.elements for t in cb.transfers if t.direction == "read_up")
        fa = sum(t.elements for t in ca.transfers if t.direction == "read_up")
    else:
        fb = sum(t.elements for t in cb.transfers if t.direction == fill)
        fa = sum(t.elements for t in ca.transfers if t.direction == fill)
    assert fa <= fb


def test_single_level_by_hand():
    """DRAM + one buffer, 1 PE; K2 C2 OY2 OX2 1x1; loops OX2 OY2 C2 | K2 (buffer | DRAM)."""
    dims = ConvDims(B=1, K=2, C=2, OY=2, OX=2, FY=1, FX=1)
    hier = (NestLevel("dram", ALL, None, False, 8, 100.0, 100.0),
            NestLevel("buf", ALL, 4096, False, 8, 1.0, 2.0))
    prec = Precisions(ifmap=8, filter=8, psum=32, ofmap=8)
    nest = LoopNest((), (("OX", 2), ("OY", 2), ("C", 2), ("K", 2)), {o: (3, 1) for o in ALL})
    c = evaluate(dims, nest, hier, prec, array_rows=1, array_cols=1, mac_energy_pj=1.0)
    z = evaluate(dims, nest, hier, prec, array_rows=1, array_cols=1, mac_energy_pj=1.0, psum_reads="zigzag")
    po = c.per_operand
    # ifmap: tile C*OY*OX = 8; the K loop above is ifmap-irrelevant and merges down, so the
    # tile is fetched once (8 from DRAM); one read per MAC cycle
    assert (po["buf", "ifmap"].writes, po["buf", "ifmap"].reads) == (8, 16)
    assert (po["dram", "ifmap"].reads, po["dram", "ifmap"].writes) == (8, 0)
    # filter: tile C = 2, stationary over OX*OY = 4 cycles: 4 reads, 2 fills x 2 periods
    assert (po["buf", "filter"].writes, po["buf", "filter"].reads) == (4, 4)
    assert po["dram", "filter"].reads == 4
    # ofmap: 16 psum writes of 4 words; exact read-backs 16 - 8 fresh = 8 (x 4 words); 8 finals up
    assert po["buf", "ofmap"].writes == 64
    assert po["buf", "ofmap"].reads == 8 * 4 + 8
    assert z.per_operand["buf", "ofmap"].reads == 16 * 4 + 8
    assert (po["dram", "ofmap"].writes, po["dram", "ofmap"].reads) == (8, 0)
    assert c.levels["buf"].tile_bits == 8 * 8 + 2 * 8 + 4 * 32
    assert c.fits
    assert c.memory_energy_pj == (8 + 4) * 100 + 8 * 100 + (16 + 4 + 8 * 4 + 8) * 1.0 + (8 + 4 + 64) * 2.0
    # a buffer too small for the same tiles is reported as not fitting
    small = (hier[0], NestLevel("buf", ALL, 100, False, 8, 1.0, 2.0))
    c2 = evaluate(dims, nest, small, prec, array_rows=1, array_cols=1, mac_energy_pj=1.0)
    assert not c2.fits and not c2.levels["buf"].fits and c2.levels["dram"].fits


def test_halo_and_stride():
    d = ConvDims(B=1, K=1, C=1, OY=4, OX=4, FY=3, FX=3, stride_y=2, stride_x=2, in_y=9, in_x=9)
    assert _ext(4, 3, 2, 1, 9) == 9 and _ext(2, 3, 2, 1, 9) == 5 and _ext(2, 1, 2, 1, 9) == 2
    assert d.operand_elements("ifmap") == 81


def test_mapper_deterministic_fits_and_best():
    hier = eyeriss_like()
    for dims in (ConvDims(B=1, K=32, C=16, OY=14, OX=14, FY=3, FX=3, in_y=14, in_x=14),
                 ConvDims(B=1, K=64, C=3, OY=28, OX=28, FY=7, FX=7, stride_y=2, stride_x=2, in_y=56, in_x=56),
                 ConvDims(B=2, K=100, C=64, OY=1, OX=1, FY=1, FX=1)):
        for objective in ("energy", "latency", "edp"):
            clear_mapper_cache()
            n1, c1 = map_layer(dims, hier, PREC, 12, 14, 1.0, objective)
            clear_mapper_cache()
            n2, c2 = map_layer(dims, hier, PREC, 12, 14, 1.0, objective)
            assert n1 == n2 and c1 == c2
            assert c1.fits
            again = evaluate(dims, n1, hier, PREC, array_rows=12, array_cols=14, mac_energy_pj=1.0)
            assert objective_value(again, objective) == pytest.approx(objective_value(c1, objective), rel=1e-12)
            assert LoopNest.from_dict(n1.to_dict(), dims) == n1
            for _name, sp, order in mapper_candidates(dims, 12, 14):
                lv = allocate_levels(dims, order, sp, hier, PREC)
                c = evaluate(dims, LoopNest(sp, order, lv), hier, PREC, array_rows=12, array_cols=14,
                             mac_energy_pj=1.0)
                if c.fits:
                    assert objective_value(c1, objective) <= objective_value(c, objective) * (1 + 1e-12)


def _full_key(cost, objective):
    return (not cost.fits, objective_value(cost, objective))


@settings(max_examples=150, deadline=None)
@given(cases(), st.sampled_from([1, 64]), st.sampled_from(["energy", "latency", "edp"]),
       st.sampled_from(["exact", "zigzag"]), st.floats(0.0, 2.0), st.booleans())
def test_search_key_equals_full_evaluation(case, rf_scale, objective, psum_reads, beat_scale, beat_unfit):
    """The mapper's light pricing gives exactly the full evaluation's (not fits, objective), and
    gives up (None) only on candidates that cannot compare below the key it must beat."""
    dims, spatial, order = case
    hier = eyeriss_like(rf_scale)
    levels = allocate_levels(dims, order, spatial, hier, PREC)
    full = _full_key(run(dims, LoopNest(spatial, order, levels), hier, psum_reads=psum_reads), objective)
    prep, chains = _Prep(dims, order, spatial), _chains(hier)
    exact = psum_reads == "exact"
    assert search_key(prep, levels, hier, chains, PREC, 0.7, exact, objective) == full
    beat = (beat_unfit, full[1] * beat_scale)
    got = search_key(prep, levels, hier, chains, PREC, 0.7, exact, objective, beat)
    assert got == full if full < beat else got in (None, full)


def _exhaustive(dims, hier, prec, objective, psum_reads):
    """Reference for the default mapper: every candidate fully evaluated, first best wins."""
    best = None
    for _name, sp, order in mapper_candidates(dims, 12, 14):
        lv = allocate_levels(dims, order, sp, hier, prec)
        cost = evaluate(dims, LoopNest(sp, order, lv), hier, prec, array_rows=12, array_cols=14,
                        mac_energy_pj=0.7, psum_reads=psum_reads)
        if best is None or _full_key(cost, objective) < _full_key(best[1], objective):
            best = (sp, cost)
    return best


@pytest.mark.parametrize("energy_scale", [1.0, 0.0])  # 0: every candidate ties on energy
@pytest.mark.parametrize("objective", ["energy", "latency", "edp"])
def test_mapper_equals_exhaustive_search(objective, energy_scale):
    """Pruning and the light pricing change nothing: the default mapper returns the first best
    candidate of a full evaluation of all of them (its merged nest re-evaluates to the same
    figures)."""
    hiers = [tuple(dataclasses.replace(lv, read_energy_pj=lv.read_energy_pj * energy_scale,
                                       write_energy_pj=lv.write_energy_pj * energy_scale)
                   for lv in eyeriss_like(s)) for s in (1, 8)]
    layers = [ConvDims(B=1, K=32, C=16, OY=14, OX=14, FY=3, FX=3, in_y=14, in_x=14),
              ConvDims(B=1, K=64, C=3, OY=28, OX=28, FY=7, FX=7, stride_y=2, stride_x=2, in_y=56, in_x=56),
              ConvDims(B=2, K=100, C=64, OY=1, OX=1, FY=1, FX=1),
              ConvDims(B=1, K=1, C=1, OY=28, OX=28, FY=3, FX=3, in_y=28, in_x=28),
              ConvDims(B=1, K=256, C=512, OY=7, OX=7, FY=1, FX=1)]
    for hier in hiers:
        for dims in layers:
            for psum_reads in ("exact", "zigzag"):
                clear_mapper_cache()
                nest, cost = map_layer(dims, hier, PREC, 12, 14, 0.7, objective, psum_reads=psum_reads)
                sp, want = _exhaustive(dims, hier, PREC, objective, psum_reads)
                assert nest.spatial == sp and cost == want
                again = evaluate(dims, nest, hier, PREC, array_rows=12, array_cols=14, mac_energy_pj=0.7,
                                 psum_reads=psum_reads)
                assert _full_key(again, objective) == _full_key(cost, objective)
                assert again.levels == cost.levels  # merging loops is cost-neutral


def test_mapper_explicit_candidates_ties_to_first():
    dims = ConvDims(B=1, K=4, C=4, OY=2, OX=2, FY=1, FX=1)
    sp = (("cols", (("K", 4),)),)
    order = (("C", 4), ("OX", 2), ("OY", 2))
    nest, cost = map_layer(dims, eyeriss_like(), PREC, 4, 4, 1.0, "energy", candidates=[(sp, order), (sp, order)])
    assert cost.fits and nest.spatial == sp


def test_ceil_partial_tiles():
    dims = ConvDims(B=1, K=10, C=3, OY=5, OX=5, FY=1, FX=1)
    nest = LoopNest((("cols", (("K", 4),)),), (("K", 3), ("C", 3), ("OY", 5), ("OX", 5)),
                    {"ifmap": (0, 0, 4), "filter": (0, 0, 4), "ofmap": (0, 0, 4)})
    c = run(dims, nest)
    assert c.temporal_cycles == 3 * 3 * 25 and c.mac_energy_pj == dims.macs * 0.7
    assert c.per_operand[("dram", "filter")].reads_elements >= 30
    with pytest.raises(ValueError, match="K"):
        LoopNest.from_dict({"spatial": {"cols": [["K", 4]]}, "temporal": [["K", 4], ["C", 3], ["OY", 5], ["OX", 5]],
                            "levels": {}}, dims)


GOOD = {"spatial": {"cols": [["K", 2]]}, "temporal": [["C", 3], ["K", 2]], "levels": {"ifmap": [1, 1]}}
DIMS_GOOD = ConvDims(B=1, K=4, C=3, OY=1, OX=1, FY=1, FX=1)


@pytest.mark.parametrize("patch, field", [
    ({"temporal": [["C", 0], ["K", 2]]}, "temporal[0]"),
    ({"temporal": [["Q", 3], ["K", 2]]}, "temporal[0]"),
    ({"temporal": [["C", 3.0], ["K", 2]]}, "temporal[0]"),
    ({"temporal": [["C", 3, 1], ["K", 2]]}, "temporal[0]"),
    ({"temporal": "C3"}, "temporal"),
    ({"spatial": {"diag": [["K", 2]]}}, "spatial"),
    ({"spatial": {"cols": [["K", -2]]}}, "spatial.cols[0]"),
    ({"spatial": [["K", 2]]}, "spatial"),
    ({"levels": {"ifmap": [1, 2]}}, "levels.ifmap"),
    ({"levels": {"ifmap": [-1, 3]}}, "levels.ifmap"),
    ({"levels": {"weights": [1, 1]}}, "levels"),
    ({"levels": {"ifmap": 2}}, "levels.ifmap"),
    ({"temporal": [["C", 3], ["K", 3]]}, "K"),
    ({"temporal": [["C", 2], ["K", 2]]}, "C"),
    ({"extra": 1}, "extra"),
])
def test_bad_dicts_one_line_errors(patch, field):
    data = {**GOOD, **patch}
    with pytest.raises(ValueError) as err:
        LoopNest.from_dict(data, DIMS_GOOD)
    msg = str(err.value)
    assert "\n" not in msg and field in msg, msg


def test_good_dict_roundtrip():
    n = LoopNest.from_dict(GOOD, DIMS_GOOD)
    assert LoopNest.from_dict(n.to_dict(), DIMS_GOOD) == n


def test_from_layer():
    from hwsim.workloads import builtin_workload

    layer = builtin_workload("resnet50")[0]
    d = ConvDims.from_layer(layer)
    assert (d.K, d.C, d.OY, d.OX, d.FY, d.stride_y, d.in_y) == (64, 3, 112, 112, 7, 2, 224)
    assert d.macs * layer.groups == layer.macs()


# ----------------------------------------------------------------------------------------------
# Regression fixture: the default mapper's choices on hw_configs/eyeriss_like.yaml
# ----------------------------------------------------------------------------------------------
ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "data" / "loopnest_mapper_golden.json"
GOLDEN_NETWORKS = ("resnet18", "resnet50", "mobilenet_v2")
GOLDEN_BITS = (8, 4)  # operand widths (act = weight); partial sums stay 32-bit
GOLDEN_OBJECTIVES = ("energy", "latency", "edp")


def _golden_setup():
    """(hierarchy, array rows, cols, MAC pJ, acc_bits) of hw_configs/eyeriss_like.yaml."""
    from hwsim.arch import load_accelerator
    from hwsim.cost.hierarchy import nest_levels

    accel = load_accelerator(ROOT / "hw_configs" / "eyeriss_like.yaml")
    (unit,) = accel.units.values()
    return nest_levels(accel), unit.rows, unit.cols, unit.mac_energy_pj, unit.acc_bits


def _golden_shapes() -> dict[str, ConvDims]:
    """The distinct layer shapes (one conv group) of the golden networks, keyed "K,C,OY,...,in_x"."""
    from dataclasses import astuple

    from hwsim.workloads import builtin_workload

    shapes = {}
    for net in GOLDEN_NETWORKS:
        for layer in builtin_workload(net):
            d = ConvDims.from_layer(layer)
            shapes.setdefault(",".join(map(str, astuple(d))), d)
    return shapes


def _cost_figures(cost) -> dict:
    """The figures of a `NestCost` the fixture records (ints exact, floats as floats)."""
    return {
        "temporal_cycles": cost.temporal_cycles, "pes_used": cost.pes_used,
        "stall_cycles": cost.stall_cycles, "onload_cycles": cost.onload_cycles,
        "offload_cycles": cost.offload_cycles, "mac_energy_pj": cost.mac_energy_pj,
        "memory_energy_pj": cost.memory_energy_pj, "fits": cost.fits,
        "levels": {name: {"reads": lc.reads, "writes": lc.writes, "energy_pj": lc.energy_pj,
                          "tile_bits": lc.tile_bits, "fits": lc.fits, "stall_cycles": lc.stall_cycles}
                   for name, lc in cost.levels.items()},
        "per_operand": {f"{lv}/{op}": [oc.reads, oc.writes, oc.reads_elements, oc.writes_elements]
                        for (lv, op), oc in cost.per_operand.items()},
    }


def golden_mapper_results() -> dict:
    """Regenerate the fixture's content: the default mapper (cold cache) on every distinct shape x
    operand width x objective. Write it with ``python tests/test_loopnest.py --regen``."""
    hier, rows, cols, mac_pj, acc_bits = _golden_setup()
    results = {}
    for key, dims in _golden_shapes().items():
        for bits in GOLDEN_BITS:
            prec = Precisions(ifmap=bits, filter=bits, psum=acc_bits, ofmap=bits)
            for objective in GOLDEN_OBJECTIVES:
                clear_mapper_cache()
                nest, cost = map_layer(dims, hier, prec, rows, cols, mac_pj, objective)
                results[f"{key}/{bits}/{objective}"] = {"nest": nest.to_dict(), "cost": _cost_figures(cost)}
    clear_mapper_cache()
    return {"config": "hw_configs/eyeriss_like.yaml", "networks": list(GOLDEN_NETWORKS),
            "hierarchy": [repr(lv) for lv in hier], "array": [rows, cols], "mac_energy_pj": mac_pj,
            "results": results}


def _assert_same(got, want, where: str) -> None:
    if isinstance(want, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(want), where
        for k in want:
            _assert_same(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            _assert_same(g, w, f"{where}[{i}]")
    elif isinstance(want, float) and not isinstance(got, bool):
        assert got == pytest.approx(want, rel=1e-12, abs=0.0), (where, got, want)
    else:
        assert type(got) is type(want) and got == want, (where, got, want)


def test_mapper_golden_eyeriss():
    """The default mapper's nests and costs on ResNet-18/50 and MobileNetV2 are those recorded in
    tests/data/loopnest_mapper_golden.json (ints exact, floats to 1e-12 relative)."""
    want = json.loads(GOLDEN.read_text())
    got = json.loads(json.dumps(golden_mapper_results()))  # same JSON types as the file
    assert got["hierarchy"] == want["hierarchy"], "hw_configs/eyeriss_like.yaml changed: regenerate"
    assert sorted(got["results"]) == sorted(want["results"])
    for key, w in want["results"].items():
        _assert_same(got["results"][key], w, key)


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["--regen"]:
        sys.exit("usage: python tests/test_loopnest.py --regen   (rewrites " + str(GOLDEN) + ")")
    doc = golden_mapper_results()
    results = doc.pop("results")
    head = json.dumps(doc, indent=1, sort_keys=True)[:-2]  # one result per line: readable diffs
    body = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v, sort_keys=True)}" for k, v in sorted(results.items()))
    GOLDEN.write_text(f'{head},\n "results": {{\n{body}\n }}\n}}\n')
    print(f"wrote {GOLDEN}")
