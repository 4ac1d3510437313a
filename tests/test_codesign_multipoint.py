"""Multipoint options in the co-design loop (issue 14, point 4): ``Option(b, a, "multipoint",
weight_points=p)`` beside uniform int options, on a tiny CNN with a depthwise and a grouped conv,
on int8_systolic and loom. Priced as the integer form with ``option.rows(K)`` rows, scored on the
points the realization gives, realized with the priced rows; predicted == simulated; the fast
kernels equal the reference; the plan JSON round-trips; bad options are one-line errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from hwsim import execute  # noqa: E402
from hwsim.cli import main  # noqa: E402
from hwsim.cli.allocate import parse_option  # noqa: E402
from hwsim.codesign import CodesignError, prepare  # noqa: E402
from hwsim.codesign.realize import base_config, realize, sensitivity_formats  # noqa: E402
from hwsim.cost.options import price_options  # noqa: E402
from hwsim.errors import HwsimError  # noqa: E402
from hwsim.workloads.multipoint import rows_layer_shape  # noqa: E402
from quant.allocate import Option  # noqa: E402
from quant.calibrate.multipoint_inputs import layer_input_stats  # noqa: E402
from quant.errors import QuantError  # noqa: E402
from quant.formats.multipoint_points import allocate_points  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SYSTOLIC = REPO / "hw_configs" / "int8_systolic.yaml"
LOOM = REPO / "hw_configs" / "loom.yaml"
W8, W4 = Option(8, 8), Option(4, 8)
MP1 = Option(4, 8, "multipoint")
MP15 = Option(4, 8, "multipoint", weight_points=1.5)
OPTIONS = [W8, W4, MP1, MP15]


class MultiNet(nn.Module):
    """conv -> depthwise 3x3 -> grouped 1x1 (2 groups of 16 channels) -> conv 3x3 s2 -> pool ->
    fc."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.g = nn.Conv2d(16, 32, 1, groups=2)
        self.c2 = nn.Conv2d(32, 32, 3, padding=1, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = torch.relu(self.c1(x))
        x = torch.relu(self.g(torch.relu(self.dw(x))))
        x = torch.relu(self.c2(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def _net_and_images():
    torch.manual_seed(0)
    net = MultiNet().eval()
    g = torch.Generator().manual_seed(1)
    return net, torch.randn(8, 3, 16, 16, generator=g), torch.randn(6, 3, 16, 16, generator=g)


@pytest.fixture(scope="module", params=[SYSTOLIC, LOOM], ids=["int8_systolic", "loom"])
def problem(request):
    net, calib, evals = _net_and_images()
    return prepare(net, request.param, OPTIONS, calib=calib, eval_images=evals)


def _channels(problem, name):
    return int(problem.base_realization.quantized.graph[name].weight.shape[0])


# ---- the option ---------------------------------------------------------------------------

def test_option_weight_points():
    assert MP15.label == "multipoint w4x1.5 / int a8"
    assert MP1.label == "multipoint w4x1 / int a8" and W4.label == "int w4a8"
    assert MP1.weight_points == 1.0 and isinstance(Option(4, 8, "multipoint", weight_points=2)
                                                   .weight_points, float)
    assert [MP15.rows(k) for k in (1, 2, 3, 10, 64)] == [2, 3, 5, 15, 96]   # half up
    assert Option(4, 8, "multipoint", weight_points=1.25).rows(10) == 13      # 12.5 -> 13
    assert W4.rows(7) == 7 and MP1.rows(7) == 7
    # plans of one-row options are unchanged; multipoint options always write weight_points
    assert W4.to_dict() == {"weight_bits": 4, "act_bits": 8, "weight_format": "int",
                            "act_format": "int"}
    assert MP1.to_dict() == {"weight_bits": 4, "act_bits": 8, "weight_format": "multipoint",
                             "act_format": "int", "weight_points": 1.0}
    assert MP15.to_dict()["weight_points"] == 1.5
    for o in (W8, MP1, MP15):
        assert Option.from_dict(json.loads(json.dumps(o.to_dict()))) == o
    assert hash(Option(4, 8, "multipoint", weight_points=1)) == hash(MP1)
    with pytest.raises(QuantError, match="weight_points must be a number"):
        Option.from_dict({"weight_bits": 4, "act_bits": 8, "weight_format": "multipoint",
                          "weight_points": "1.5"})
    with pytest.raises(QuantError, match="channels must be an int >= 1"):
        MP15.rows(0)


@pytest.mark.parametrize("kwargs, needle", [
    (dict(weight_points=1.5), "applies to weight_format 'multipoint' only"),
    (dict(weight_format="apot", weight_points=2), "weight_format is 'apot'"),
    (dict(weight_format="multipoint", weight_points=0.5), "finite number >= 1"),
    (dict(weight_format="multipoint", weight_points=float("nan")), "finite number >= 1"),
    (dict(weight_format="multipoint", weight_points=True), "finite number >= 1"),
    (dict(weight_format="multipoint", weight_points="1.5"), "finite number >= 1"),
])
def test_option_validation_errors(kwargs, needle):
    with pytest.raises(QuantError, match="Option.") as err:
        Option(4, 8, **kwargs)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_loop_rejects_bad_multipoint_options():
    net, calib, _ = _net_and_images()
    for options, base, needle in [
            ([W8, Option(4, 8, "multipoint", weight_points=5)], W8, "at most 4 points"),
            ([W8, Option(9, 8, "multipoint")], W8, "must be an int in [2, 8]"),
            ([W8, MP1], MP1, "the base is a uniform int, apot or binary option")]:
        with pytest.raises(CodesignError) as err:
            prepare(net, LOOM, options, base=base, calib=calib)
        assert needle in str(err.value)


# ---- pricing, sensitivity, realization ----------------------------------------------------

def test_multipoint_options_are_priced_as_their_rows(problem):
    accel = problem.accel
    base = {l.name: l for l in problem.base_realization.workload}
    for k, opt in enumerate(OPTIONS):
        if opt.weight_format != "multipoint":
            continue
        for l, name in enumerate(problem.layers):
            layer = base[name]
            rows = opt.rows(layer.out_channels)
            shape = rows_layer_shape(layer, rows)
            if name == "g":   # 2 groups: ceil(R / 2) rows in each
                assert shape.out_channels == 2 * math.ceil(rows / 2) and shape.groups == 2
            if name == "dw":  # depthwise: a depthwise conv of R channels
                assert shape.groups == shape.in_channels == shape.out_channels == rows
            want = price_options(accel, [shape], [Option(4, 8)])
            for r, table in problem.costs.items():
                assert table[l, k] == want.resources[r][0, 0], (name, opt.label, r)
            assert problem.units[l, k] == want.unit[0, 0]
    # one point per channel is the 4-bit int layer's shape: the same price as int W4
    for r, table in problem.costs.items():
        np.testing.assert_array_equal(table[:, OPTIONS.index(MP1)], table[:, OPTIONS.index(W4)])


def _check_realized(r, problem):
    assert r.short_rows == {}
    for layer in r.realization.workload:
        opt = r.chosen[layer.name]
        node = r.program.node(layer.name)
        if opt.weight_format == "multipoint":
            k = _channels(problem, layer.name)
            assert node.op.startswith("multipoint_")
            assert node.arrays["weight_rows"].shape[0] == opt.rows(k)
            assert r.rows[layer.name] == (opt.rows(k), opt.rows(k))
            assert (layer.weight_bits, layer.weight_format) == (4, "int")
        else:
            assert node.op in ("conv2d", "linear") and layer.name not in r.rows
    pvs = r.predicted_vs_simulated()
    for res in ("latency_cycles", "energy_pj", "size_bits", "dram_bytes"):
        assert pvs[res]["equal"] and pvs[res]["max_layer_diff"] == 0.0, (res, pvs[res])
    x = r.realization.quantized.quantize_input(problem.eval_images[:2])
    np.testing.assert_array_equal(execute(r.program, x).output,
                                  execute(r.program, x, backend="reference").output)


def test_uniform_multipoint_is_scored_and_realized_with_its_points(problem):
    from quant.sensitivity import sensitivity_table

    r = problem.uniform(MP15)
    _check_realized(r, problem)
    assert set(r.rows) == set(problem.layers)
    fid = r.fidelity
    assert np.isfinite(fid["sqnr_db"]) and fid["images"] == len(problem.eval_images)
    qm = r.realization.quantized
    params = {n: qm.weight_params(n) for n in problem.layers}
    # each layer: R - K extra points, given by output error within the layer (per group for the
    # grouped conv), as allocate_points does on the calibration inputs
    stats = layer_input_stats(qm.graph, problem.layers, [problem.calib])
    for name in problem.layers:
        k = _channels(problem, name)
        p = params[name]
        assert p.extra_points == MP15.rows(k) - k, name
        if name != "g":
            want = allocate_points(qm.graph[name].weight, p.fmt, stats[name],
                                   budget=MP15.rows(k) - k).params
            np.testing.assert_array_equal(p.codes, want.codes)
            np.testing.assert_array_equal(p.scales, want.scales)
    assert [int(p) for p in params["g"].points.reshape(2, 16).sum(axis=1) - 16] == [8, 8]
    if "systolic" in problem.accel.name:
        return  # the sensitivity table does not depend on the accelerator: checked once
    # the table's column is the sensitivity of exactly these weights
    cfg = base_config(W8, problem.seed)
    kw = dict(method="empirical_fisher", config=cfg, layers=list(problem.layers),
              seed=problem.seed, formats=sensitivity_formats([MP15]))
    table = sensitivity_table(problem.model, [MP15], [problem.calib],
                              weight_params=lambda n, o: params[n], **kw)
    np.testing.assert_array_equal(table.omega[:, 0], problem.omega[:, OPTIONS.index(MP15)])
    # not the format's own fit (every channel at max_points)
    plain = sensitivity_table(problem.model, [MP15], [problem.calib], **kw)
    assert np.all(plain.omega[:, 0] < table.omega[:, 0])


def test_budgets_pick_multipoint_and_the_plan_round_trips(problem, tmp_path):
    # int8_systolic runs 4- and 8-bit weights in the same cycles (narrow ones save energy)
    resource = "energy_pj" if "systolic" in problem.accel.name else "latency_cycles"
    costs, omega = problem.costs[resource], problem.omega
    # the tightest budget: every layer at its cheapest cost, there the best-scored option
    tight = problem.solve({resource: problem.min_total(resource)})
    for l, name in enumerate(problem.layers):
        cheapest = np.flatnonzero(costs[l] == costs[l].min())
        assert OPTIONS.index(tight.chosen[name]) == cheapest[np.argmin(omega[l, cheapest])]
    assert any(o.weight_format == "multipoint" for o in tight.chosen.values())
    _check_realized(tight, problem)
    # a budget half way to the uniform base
    mid = problem.solve({resource: ("x", (1 + problem.min_total(resource)
                                          / problem.base_totals[resource]) / 2)})
    assert mid.predicted[resource] <= mid.budgets[resource]
    _check_realized(mid, problem)
    # the plan: JSON whose layers read back as the chosen options, and realize the same program
    path = tmp_path / "plan.json"
    tight.save(path)
    doc = json.loads(path.read_text())
    chosen = {n: Option.from_dict(d) for n, d in doc["layers"].items()}
    assert chosen == tight.chosen
    rows = doc["allocation"]["codesign"]["multipoint_rows"]
    assert rows == {n: {"priced": p, "realized": q} for n, (p, q) in tight.rows.items()}
    if "systolic" in problem.accel.name:
        return  # the program does not depend on the accelerator: re-realized once
    again = realize(problem.model, problem.accel, chosen, problem.act_source,
                    base_config(problem.base, problem.seed), problem.calib)
    for name in problem.layers:
        a, b = again.program.node(name), tight.program.node(name)
        assert a.op == b.op and set(a.arrays) == set(b.arrays)
        for key in a.arrays:
            np.testing.assert_array_equal(a.arrays[key], b.arrays[key])
    assert again.totals() == tight.realization.totals()


# ---- the command line ---------------------------------------------------------------------

def test_cli_parses_multipoint_options():
    assert parse_option("multipoint:w4x1.25a8") == Option(4, 8, "multipoint", weight_points=1.25)
    assert parse_option("MULTIPOINT:W4A8") == MP1
    assert parse_option("multipoint:w3x2a8") == Option(3, 8, "multipoint", weight_points=2)
    for text, needle in [("int:w4x1.5a8", "applies to multipoint options only"),
                         ("w4x1.5a8", "applies to multipoint options only"),
                         ("multipoint:w4x0.5a8", "finite number >= 1"),
                         ("multipoint:w4x1,5a8", "expected [FAMILY:]wBITSaBITS")]:
        with pytest.raises(HwsimError, match="--options") as err:
            parse_option(text)
        assert needle in str(err.value)


@pytest.mark.parametrize("options, needle", [
    ("w8a8,int:w4x1.5a8", "applies to multipoint options only"),
    ("w8a8,multipoint:w4x0.9a8", "finite number >= 1"),
    ("multipoint:w4x1.5a8,w8a8", "the first option is the base"),
    ("w8a8,multipoint:w4x1.5a8,multipoint:w4x1.50a8", "expected distinct options"),
    ("w8a8,multipoint:w4x6a8", "at most 4 points"),
    ("w8a8,multipoint:w9a8", "must be an int in [2, 8]"),
])
def test_cli_bad_multipoint_options_exit_2_with_one_line(tmp_path, capsys, monkeypatch, options,
                                                         needle):
    monkeypatch.chdir(tmp_path)
    assert main(["allocate", "--hw", str(LOOM), "--budget", "latency=0.8x", "--out", "p.json",
                 "--options", options]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err


def test_retarget_and_subset_share_the_sensitivity(problem):
    other = LOOM if "systolic" in problem.accel.name else SYSTOLIC
    moved = problem.retarget(other)
    assert moved.accel.name != problem.accel.name and moved.points is problem.points
    np.testing.assert_array_equal(moved.omega, problem.omega)
    back = moved.retarget(problem.accel)
    for r, table in problem.costs.items():
        np.testing.assert_array_equal(back.costs[r], table)
    assert back.base_totals == problem.base_totals
    sub = problem.subset([MP15, W8])
    assert sub.options == (MP15, W8)
    np.testing.assert_array_equal(sub.omega, problem.omega[:, [3, 0]])
    np.testing.assert_array_equal(sub.costs["energy_pj"], problem.costs["energy_pj"][:, [3, 0]])
    with pytest.raises(CodesignError, match="not among the problem's options"):
        problem.subset([Option(6, 8)])


def test_a_layer_that_cannot_take_its_points_is_reported():
    # all-zero weights: every channel's output error is 0 with one point, so allocate_points
    # gives none of the priced extra points; the realization says so, and the simulated cost
    # of that layer is not the predicted one
    import quant
    from hwsim.arch import load_accelerator
    from hwsim.codesign.costs import AcceleratorCosts
    from quant.sensitivity.options import act_source

    net, calib, _ = _net_and_images()
    with torch.no_grad():
        net.fc.weight.zero_()
    graph = quant.capture(net, calib[:1])
    accel = load_accelerator(LOOM)
    real = realize(net, accel, {"fc": MP15}, {"fc": act_source(graph, "fc")},
                   base_config(W8), calib)
    assert real.short_rows == {"fc": (15, 10)} and real.rows == real.short_rows
    fc = [layer for layer in real.workload if layer.name == "fc"][0]
    assert fc.out_channels == 10
    base = [l for l in realize(net, accel, {}, {}, base_config(W8), calib).workload]
    predicted = AcceleratorCosts(accel, base).price(["fc"], [MP15])["size_bits"][0, 0]
    assert predicted == 15 * 32 * 4 != real.per_layer()["size_bits"][-1] == 10 * 32 * 4
