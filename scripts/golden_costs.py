"""Regenerate tests/data/golden_costs.json: every hw_config's totals on ResNet-18 and MobileNetV2.

    python scripts/golden_costs.py            # rewrite the file
    python scripts/golden_costs.py --check    # exit 1 and list the differences instead

The golden file pins total cycles, compute/stall cycles, energies and DRAM bytes of each
(config, network) pair, so any change of the cost model shows up as a diff of this file
(tests/test_golden_costs.py compares). A config whose units do not run uniform int8 layers is
priced at the precision `PRECISION` gives it; every config in hw_configs/ must be covered.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hwsim.arch import load_accelerator  # noqa: E402
from hwsim.cost import cost_network  # noqa: E402
from hwsim.workloads import builtin_workload  # noqa: E402

GOLDEN = REPO / "tests" / "data" / "golden_costs.json"
NETWORKS = ("resnet18", "mobilenet_v2")
#: (weight_format, weight_bits, act_format, act_bits) of the middle layers per config (first and
#: last layers too unless the config routes them elsewhere); default: int8 weights and
#: activations as the built-in workloads come.
PRECISION = {
    "binary_xnor": ("binary", 1, "binary", 1),
    "hetero_int8_xnor": ("binary", 1, "binary", 1),
    "hetero_int8_apot": ("apot", 4, "int", 8),
    "shift_add_apot": ("apot", 4, "int", 8),
}
#: configs that route first/last layers to an int8 unit: those keep int8
KEEP_ENDS_INT8 = ("hetero_int8_xnor", "hetero_int8_apot")
FIELDS = ("macs", "compute_cycles", "stall_cycles", "total_cycles", "energy_compute_pj",
          "energy_total_pj", "dram_bytes")


def layers_for(config: str, network: str):
    layers = builtin_workload(network)
    if config not in PRECISION:
        return layers
    wf, wb, af, ab = PRECISION[config]
    keep = {0, len(layers) - 1} if config in KEEP_ENDS_INT8 else set()
    return [layer if i in keep else replace(layer, weight_format=wf, weight_bits=wb,
                                            act_format=af, act_bits=ab)
            for i, layer in enumerate(layers)]


def compute() -> dict:
    out = {}
    for path in sorted((REPO / "hw_configs").glob("*.yaml")):
        accel = load_accelerator(path)
        for network in NETWORKS:
            cost = cost_network(accel, layers_for(path.stem, network))
            out[f"{path.stem}/{network}"] = {f: getattr(cost, f) for f in FIELDS}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    now = compute()
    if args.check:
        old = json.loads(GOLDEN.read_text())
        diffs = [f"{key}: {old.get(key)} -> {value}" for key, value in now.items()
                 if old.get(key) != value]
        diffs += [f"{key}: removed" for key in old if key not in now]
        print("\n".join(diffs) or "golden costs unchanged")
        return 1 if diffs else 0
    GOLDEN.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN.relative_to(REPO)}: {len(now)} (config, network) pairs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
