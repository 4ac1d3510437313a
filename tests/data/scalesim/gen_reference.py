"""Regenerate scalesim_v3_compute_cycles.csv by running SCALE-Sim (see README.md).

Run with the separate SCALE-Sim venv, never with the project's Python:

    /tmp/scalesim-venv/bin/python tests/data/scalesim/gen_reference.py

Each case is one conv layer (sizes already padded, since SCALE-Sim does not pad) on one array
shape and dataflow, in CALC bandwidth mode. The CSV records SCALE-Sim's per-layer COMPUTE_REPORT.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

from scalesim.scale_sim import scalesim

HERE = Path(__file__).resolve().parent
OUT_CSV = HERE / "scalesim_v3_compute_cycles.csv"

# name, ifmap_h, ifmap_w (padded), filter_h, filter_w, channels, num_filter, stride
# ResNet-18-like layers, spatially shrunk where SCALE-Sim would take minutes.
LAYERS = [
    ("l2_conv3x3", 16, 16, 3, 3, 64, 128, 1),
    ("l3_conv3x3_s2", 16, 16, 3, 3, 128, 256, 2),
    ("l3_down1x1_s2", 28, 28, 1, 1, 128, 256, 2),
    ("l4_conv3x3", 9, 9, 3, 3, 256, 256, 1),
    ("stem7x7_s2", 38, 38, 7, 7, 3, 64, 2),
    ("fc_as_1x1", 1, 1, 1, 1, 512, 1000, 1),
    # SCALE-Sim runs a layer whose name contains "DP" as one layer per channel (depthwise).
    ("mbv2_DP3x3", 16, 16, 3, 3, 32, 1, 1),
]
ARRAYS = [(32, 32), (16, 64), (8, 24)]
DATAFLOWS = ["os", "ws", "is"]

CFG = """[general]
run_name = {run}

[run_presets]
InterfaceBandwidth = CALC
UseRamulatorTrace = False

[architecture_presets]
ArrayHeight = {rows}
ArrayWidth = {cols}
IfmapSramSzkB = 256
FilterSramSzkB = 256
OfmapSramSzkB = 128
IfmapOffset = 0
FilterOffset = 10000000
OfmapOffset = 20000000
Bandwidth = 10
Dataflow = {df}
ReadRequestBuffer = 32
WriteRequestBuffer = 32

[layout]
IfmapCustomLayout = False
IfmapSRAMBankBandwidth = 10
IfmapSRAMBankNum = 10
IfmapSRAMBankPort = 2
FilterCustomLayout = False
FilterSRAMBankBandwidth = 10
FilterSRAMBankNum = 10
FilterSRAMBankPort = 2

[sparsity]
SparsitySupport = false
SparseRep = ellpack_block
OptimizedMapping = false
BlockSize = 8
RandomNumberGeneratorSeed = 40
"""

HEADER = "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n"


def run_case(tmp: Path, layer: tuple, rows: int, cols: int, df: str) -> tuple[list[str], float]:
    run = f"{layer[0]}_{rows}x{cols}_{df}"
    topo = tmp / f"{run}.csv"
    topo.write_text(HEADER + ", ".join(str(v) for v in layer) + ",\n")
    cfg = tmp / f"{run}.cfg"
    cfg.write_text(CFG.format(run=run, rows=rows, cols=cols, df=df))
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        sim = scalesim(save_disk_space=True, verbose=False, config=str(cfg),
                       topology=str(topo), layout=str(topo))
        sim.run_scale(top_path=str(tmp))
    seconds = time.perf_counter() - start
    report = (tmp / run / "COMPUTE_REPORT.csv").read_text().splitlines()[1:]
    per_row = [[c.strip() for c in line.split(",") if c.strip()] for line in report if line.strip()]
    if len(per_row) == 1:
        return per_row[0], seconds
    # Depthwise: SCALE-Sim reports one row per channel; the layer's cycles are their sum.
    summed = [str(sum(int(r[i]) for r in per_row)) for i in range(4)]
    return summed + ["nan", "nan", "nan"], seconds


def main() -> None:
    rows_out = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for layer in LAYERS:
            for rows, cols in ARRAYS:
                for df in DATAFLOWS:
                    items, seconds = run_case(tmp, layer, rows, cols, df)
                    # items: LayerID, total incl. prefetch, total, stall, util %, mapping eff %, compute util %
                    rows_out.append({
                        "scalesim_version": version("scalesim"),
                        "layer": layer[0], "ifmap_h": layer[1], "ifmap_w": layer[2],
                        "filter_h": layer[3], "filter_w": layer[4], "channels": layer[5],
                        "num_filter": layer[6], "stride": layer[7],
                        "rows": rows, "cols": cols, "dataflow": df,
                        "total_cycles_incl_prefetch": items[1], "compute_cycles": items[2],
                        "stall_cycles": items[3], "overall_util_pct": items[4],
                        "sim_seconds": f"{seconds:.2f}",
                    })
                    print(rows_out[-1]["layer"], rows, cols, df, items[2], f"{seconds:.1f}s", flush=True)
    with OUT_CSV.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows_out[0]))
        writer.writeheader()
        writer.writerows(rows_out)


if __name__ == "__main__":
    main()
