"""Read SCALE-Sim v3 convolution topology CSVs into `LayerShape`s.

Format (as read by SCALE-Sim 3.0.0's ``topologies.load_arrays_conv``): one header line, then one
layer per line with the cells ``Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter
Width, Channels, Num Filter, Strides,`` and a trailing comma. An optional ninth cell is a
sparsity ratio ``N:M``; hwsim does not model sparsity, so only ``1:1`` (dense) is accepted.
One stride is used for both directions.

SCALE-Sim does not pad: the IFMAP sizes are taken as already padded, so the layers are built
with zero padding. Cost them with ``convention="scalesim"`` to reproduce SCALE-Sim exactly (its
output size differs from torch's when the stride does not divide ``IFMAP - Filter``).
A layer whose name contains ``DP`` is depthwise in SCALE-Sim (it runs one layer of ``Num Filter``
filters per channel); here that becomes ``groups = Channels`` and ``out_channels = Channels *
Num Filter``, which the cost model runs as the same per-group GEMMs back to back.
"""

from __future__ import annotations

import csv
from pathlib import Path

from hwsim.errors import WorkloadError
from hwsim.workloads.layer import LayerShape

COLUMNS = ("Layer name", "IFMAP Height", "IFMAP Width", "Filter Height", "Filter Width",
           "Channels", "Num Filter", "Strides")
_NUMERIC = COLUMNS[1:]
_SPARSITY_COLUMN = "Sparsity"


def _row_problems(cells: list[str]) -> tuple[dict[str, int], list[str]]:
    """Parse one row's cells; return the numeric values and every problem, naming the column."""
    problems: list[str] = []
    values: dict[str, int] = {}
    if len(cells) < len(COLUMNS):
        missing = ", ".join(COLUMNS[len(cells):])
        return values, [f"expected {len(COLUMNS)} cells, got {len(cells)} (missing: {missing})"]
    if not cells[0]:
        problems.append("column 'Layer name': empty")
    for column, cell in zip(_NUMERIC, cells[1:len(COLUMNS)]):
        try:
            value = int(cell)
        except ValueError:
            problems.append(f"column {column!r}: expected an integer, got {cell!r}")
            continue
        if value <= 0:
            problems.append(f"column {column!r}: expected a positive integer, got {value}")
            continue
        values[column] = value
    extra = [c for c in cells[len(COLUMNS):] if c]
    if len(extra) > 1:
        problems.append(f"expected at most {len(COLUMNS) + 1} cells, got {len(COLUMNS) + len(extra)}")
    elif extra and extra[0].replace(" ", "") != "1:1":
        problems.append(f"column {_SPARSITY_COLUMN!r}: only dense '1:1' is supported, got {extra[0]!r}")
    for filt, ifmap in (("Filter Height", "IFMAP Height"), ("Filter Width", "IFMAP Width")):
        if filt in values and ifmap in values and values[filt] > values[ifmap]:
            problems.append(f"column {filt!r}: {values[filt]} is larger than {ifmap} {values[ifmap]}")
    return values, problems


def _layer_from_row(name: str, v: dict[str, int], batch: int) -> LayerShape:
    channels, filters = v["Channels"], v["Num Filter"]
    depthwise = "DP" in name
    return LayerShape(
        name=name, kind="conv", in_h=v["IFMAP Height"], in_w=v["IFMAP Width"],
        in_channels=channels, out_channels=channels * filters if depthwise else filters,
        kernel_h=v["Filter Height"], kernel_w=v["Filter Width"],
        stride_h=v["Strides"], stride_w=v["Strides"], groups=channels if depthwise else 1,
        batch=batch,
    )


def load_topology_csv(path: str | Path, *, batch: int = 1) -> list[LayerShape]:
    """Layers of a SCALE-Sim v3 conv topology CSV, in file order.

    Every bad row is reported in one `WorkloadError` naming the file, the 1-based line number and
    the column.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise WorkloadError(f"{path}: cannot read topology CSV ({exc.strerror})") from exc
    errors: list[str] = []
    layers: list[LayerShape] = []
    reader = csv.reader(text.splitlines())
    for row in reader:
        line = reader.line_num
        if line == 1:  # header, skipped by SCALE-Sim too
            continue
        cells = [c.strip() for c in row]
        while cells and not cells[-1]:  # SCALE-Sim's trailing comma
            cells.pop()
        if not cells:
            continue
        values, problems = _row_problems(cells)
        if not problems:
            try:
                layers.append(_layer_from_row(cells[0], values, batch))
            except WorkloadError as exc:
                problems.append(str(exc))
        errors.extend(f"{path}: line {line}: {p}" for p in problems)
    if errors:
        raise WorkloadError("invalid topology CSV:\n  " + "\n  ".join(errors))
    if not layers:
        raise WorkloadError(f"{path}: no layers found (expected a header line, then one line per "
                            f"layer with columns {', '.join(COLUMNS)})")
    return layers
