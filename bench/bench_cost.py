"""Benchmark the analytical cost model (prints figures; asserts nothing).

    PYTHONPATH=. python3 bench/bench_cost.py

Targets from issue 3: <= 20 us per layer amortized, all of ResNet-50 costed in < 50 ms. If the
SCALE-Sim venv exists (/tmp/scalesim-venv, see tests/data/scalesim/README.md) it also times
SCALE-Sim on a couple of layers in the same run and prints the speed ratio.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from hwsim.arch import load_accelerator
from hwsim.cost import LayerTable, PrecisionOption, cost_network, cost_table, price_options
from hwsim.workloads import LayerShape, builtin_workload

REPO = Path(__file__).resolve().parents[1]
SCALESIM_PY = Path("/tmp/scalesim-venv/bin/python")
GEN_SCRIPT = REPO / "tests" / "data" / "scalesim" / "gen_reference.py"
# (name, ifmap_h, ifmap_w, filter_h, filter_w, channels, num_filter, stride) as SCALE-Sim takes them
SCALESIM_LAYERS = [("stem7x7_s2", 38, 38, 7, 7, 3, 64, 2), ("l3_down1x1_s2", 28, 28, 1, 1, 128, 256, 2)]


def best_of(fn, repeats: int) -> float:
    """Fastest wall time of `repeats` calls, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def bench_model(accel) -> None:
    r50 = builtin_workload("resnet50")
    cost_network(accel, r50)  # warm-up
    t_net = best_of(lambda: cost_network(accel, r50), 20)
    print(f"ResNet-50 ({len(r50)} layers), cost_network incl. the default mapper (both loop "
          f"orders x buffer partitions per layer) and the DataFrame: {t_net * 1e3:.2f} ms "
          f"(target < 50 ms; {50e-3 / t_net:.0f}x under)")

    many = r50 * 200
    t_table = best_of(lambda: LayerTable.from_layers(many), 3)
    table = LayerTable.from_layers(many)
    t_cost = best_of(lambda: cost_table(accel, table), 5)
    per_layer_us = (t_table + t_cost) / len(many) * 1e6
    print(f"{len(many)} layers: tabulate {t_table / len(many) * 1e6:.2f} us/layer + cost "
          f"{t_cost / len(many) * 1e6:.2f} us/layer = {per_layer_us:.2f} us/layer "
          f"(target <= 20 us; {20 / per_layer_us:.0f}x under)")

    options = [PrecisionOption(w, a) for a in (2, 4, 8, 16) for w in (2, 4, 8, 16)]
    base = LayerTable.from_layers(r50)
    pairs = len(r50) * len(options)
    t_opts = best_of(lambda: price_options(accel, base, options), 20)
    print(f"price_options: ResNet-50 x {len(options)} options = {pairs} (layer, option) pairs "
          f"in {t_opts * 1e3:.2f} ms ({t_opts / pairs * 1e6:.2f} us/pair; target <= 2 ms)")


def bench_scalesim(accel) -> None:
    if not SCALESIM_PY.exists():
        print("SCALE-Sim venv not found at /tmp/scalesim-venv: skipping the SCALE-Sim comparison")
        return
    code = (
        "import json, sys, tempfile; from pathlib import Path\n"
        f"sys.path.insert(0, {str(GEN_SCRIPT.parent)!r})\n"
        "import gen_reference as g\n"
        "out = []\n"
        "with tempfile.TemporaryDirectory() as t:\n"
        f"    for layer in {SCALESIM_LAYERS!r}:\n"
        f"        items, s = g.run_case(Path(t), layer, {accel.compute.rows}, {accel.compute.cols}, "
        f"{accel.compute.dataflow!r})\n"
        "        out.append([layer[0], int(items[2]), s])\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run([str(SCALESIM_PY), "-c", code], capture_output=True, text=True,
                          timeout=600, check=False)
    if done.returncode != 0:
        print("SCALE-Sim run failed:", done.stderr.strip().splitlines()[-1:])
        return
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for (name, h, w, fh, fw, ch, nf, s), (_, ss_cycles, ss_seconds) in zip(SCALESIM_LAYERS, results):
        layer = [LayerShape(name=name, kind="conv", in_h=h, in_w=w, in_channels=ch,
                            out_channels=nf, kernel_h=fh, kernel_w=fw, stride_h=s, stride_w=s)]
        ours = cost_network(accel, layer, convention="scalesim")
        t_ours = best_of(lambda: cost_network(accel, layer, convention="scalesim"), 20)
        print(f"{name}: SCALE-Sim {ss_seconds:.2f} s, hwsim {t_ours * 1e3:.2f} ms -> "
              f"{ss_seconds / t_ours:,.0f}x faster; compute cycles {ss_cycles} vs "
              f"{ours.compute_cycles} ({'equal' if ss_cycles == ours.compute_cycles else 'DIFFERENT'})")


def main() -> None:
    accel = load_accelerator(REPO / "hw_configs" / "int8_systolic.yaml")
    print(f"accelerator: {accel.name}")
    bench_model(accel)
    bench_scalesim(accel)


if __name__ == "__main__":
    main()
