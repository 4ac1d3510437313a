"""SCALE-Sim topology CSV reading, including its error messages."""

from __future__ import annotations

import pytest

from hwsim.errors import WorkloadError
from hwsim.workloads import load_topology_csv

HEADER = "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n"


def write(tmp_path, body: str):
    path = tmp_path / "topo.csv"
    path.write_text(HEADER + body)
    return path


def test_reads_rows_with_trailing_commas_and_sparsity(tmp_path):
    path = write(tmp_path, "Conv1, 229, 229, 7, 7, 3, 64, 2,\n\n"
                           "FC, 1, 1, 1, 1, 512, 1000, 1, 1:1,\n")
    conv, fc = load_topology_csv(path)
    assert (conv.name, conv.in_h, conv.kernel_w, conv.in_channels, conv.out_channels) == (
        "Conv1", 229, 7, 3, 64)
    assert conv.stride_h == conv.stride_w == 2 and conv.pad_top == 0
    assert conv.out_h("scalesim") == conv.out_h("torch") == 112
    assert fc.macs() == 512 * 1000


def test_dp_rows_are_depthwise(tmp_path):
    (layer,) = load_topology_csv(write(tmp_path, "CB2_DP, 114, 114, 3, 3, 32, 1, 1,\n"))
    assert layer.groups == 32 and layer.in_channels == 32 and layer.out_channels == 32
    assert layer.macs("scalesim") == 112 * 112 * 32 * 9


def test_errors_name_file_line_and_column(tmp_path):
    path = write(tmp_path,
                 "ok, 10, 10, 3, 3, 4, 4, 1,\n"
                 "bad_num, 10, ten, 3, 3, 4, 4, 1,\n"
                 "too_big, 3, 10, 5, 3, 4, 4, 1,\n"
                 "zero, 10, 10, 3, 3, 0, 4, 1,\n"
                 "short, 10, 10,\n"
                 "sparse, 10, 10, 3, 3, 4, 4, 1, 2:4,\n")
    with pytest.raises(WorkloadError) as err:
        load_topology_csv(path)
    msg = str(err.value)
    assert f"{path}: line 3: column 'IFMAP Width': expected an integer, got 'ten'" in msg
    assert f"{path}: line 4: column 'Filter Height': 5 is larger than IFMAP Height 3" in msg
    assert f"{path}: line 5: column 'Channels': expected a positive integer, got 0" in msg
    assert f"{path}: line 6: expected 8 cells" in msg
    assert f"{path}: line 7: column 'Sparsity'" in msg
    assert "line 2" not in msg


def test_missing_file_and_empty_file(tmp_path):
    with pytest.raises(WorkloadError, match="cannot read"):
        load_topology_csv(tmp_path / "nope.csv")
    with pytest.raises(WorkloadError, match="no layers"):
        load_topology_csv(write(tmp_path, ""))
