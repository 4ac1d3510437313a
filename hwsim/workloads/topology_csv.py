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

The first line must be that header (SCALE-Sim skips line 1 unread, so a file without one would
silently lose its first layer): its first eight cells are checked against SCALE-Sim's column names
(case and spacing ignored; ``Stride``/``Stride height`` accepted for ``Strides``, and extra
header cells such as ``Stride width`` or ``Target`` are allowed). Numeric cells are integers from
1 to `MAX_CELL` (2^31). The file must be UTF-8 text.

Problems are reported in one `WorkloadError`: its first line names the file, the line and the
first problem, with the error count; further problems follow, one per line.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from hwsim.errors import WorkloadError
from hwsim.textfile import read_text
from hwsim.workloads.layer import MAX_DIM, LayerShape

COLUMNS = ("Layer name", "IFMAP Height", "IFMAP Width", "Filter Height", "Filter Width",
           "Channels", "Num Filter", "Strides")
_NUMERIC = COLUMNS[1:]
_SPARSITY_COLUMN = "Sparsity"
MAX_CELL = MAX_DIM
#: header spellings accepted per column (lower case, single spaces), besides COLUMNS themselves
_HEADER_ALIASES = {"Num Filter": ("num filters",),
                   "Strides": ("stride", "stride height", "stride h", "strides h")}


def _show(cell: str) -> str:
    return repr(cell) if len(cell) <= 40 else repr(cell[:37] + "...")


def _norm(cell: str) -> str:
    return " ".join(cell.lower().split())


def _header_problem(cells: list[str]) -> str | None:
    """Why `cells` (line 1) is not SCALE-Sim's header, or None if it is."""
    expected = ", ".join(COLUMNS)
    if not cells:
        return f"expected the header line '{expected}', got an empty line"
    if len(cells) >= len(COLUMNS) and _looks_like_layer(cells):
        return (f"expected the header line '{expected}', got a layer row ({_show(cells[0])}); "
                f"SCALE-Sim skips line 1 as the header, so that layer would be lost: add the "
                f"header line")
    for i, column in enumerate(COLUMNS):
        got = cells[i] if i < len(cells) else ""
        if _norm(got) not in (_norm(column), *_HEADER_ALIASES.get(column, ())):
            return (f"expected the header line '{expected}'; header cell {i + 1} is "
                    f"{_show(got) if got else 'missing'}, expected {column!r}")
    return None


def _looks_like_layer(cells: list[str]) -> bool:
    try:
        for cell in cells[1:len(COLUMNS)]:
            int(cell)
    except ValueError:
        return False
    return True


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
            problems.append(f"column {column!r}: expected an integer, got {_show(cell)}")
            continue
        if value <= 0:
            problems.append(f"column {column!r}: expected a positive integer, got {value}")
            continue
        if value > MAX_CELL:
            problems.append(f"column {column!r}: expected an integer from 1 to {MAX_CELL}, got "
                            f"{_show(cell)}")
            continue
        values[column] = value
    extra = [c for c in cells[len(COLUMNS):] if c]
    if len(extra) > 1:
        problems.append(f"expected at most {len(COLUMNS) + 1} cells, got {len(COLUMNS) + len(extra)}")
    elif extra and extra[0].replace(" ", "") != "1:1":
        problems.append(f"column {_SPARSITY_COLUMN!r}: only dense '1:1' is supported, got "
                        f"{_show(extra[0])}")
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


def _raise(errors: list[str]) -> None:
    count = f"({len(errors)} error{'s' if len(errors) > 1 else ''})"
    raise WorkloadError("\n  ".join([f"{errors[0]} {count}", *errors[1:]]))


def load_topology_csv(path: str | Path, *, batch: int = 1) -> list[LayerShape]:
    """Layers of a SCALE-Sim v3 conv topology CSV, in file order.

    Every bad row is reported in one `WorkloadError` naming the file, the 1-based line number and
    the column (see the module docstring for the format).
    """
    path = Path(path)
    text = read_text(path, "a SCALE-Sim topology CSV (text)", WorkloadError)
    errors: list[str] = []
    layers: list[LayerShape] = []
    reader = csv.reader(io.StringIO(text, newline=""))
    line = 0
    try:
        for row in reader:
            line = reader.line_num
            cells = [c.strip() for c in row]
            while cells and not cells[-1]:  # SCALE-Sim's trailing comma
                cells.pop()
            if line == 1:
                problem = _header_problem(cells)
                if problem is not None:
                    _raise([f"{path}: line 1: {problem}"])
                continue
            if not cells:
                continue
            values, problems = _row_problems(cells)
            if not problems:
                try:
                    layers.append(_layer_from_row(cells[0], values, batch))
                except WorkloadError as exc:
                    problems.append(str(exc))
            errors.extend(f"{path}: line {line}: {p}" for p in problems)
    except csv.Error as exc:
        errors.append(f"{path}: line {line + 1}: not a valid CSV line ({exc})")
    if errors:
        _raise(errors)
    if not layers:
        raise WorkloadError(f"{path}: no layers found (expected a header line, then one line per "
                            f"layer with columns {', '.join(COLUMNS)})")
    return layers
