"""A group-wise (block) weight layer as the cost model sees it: the same conv / GEMM at the
codes' width, plus the constants stored with the weights.

Each (output channel, group) block has its own requantization multiplier ``m_{k,g}``, an
unsigned 31-bit integer (``hwsim.kernels.group``), stored in ``GROUP_SCALE_BITS`` = 32 bits;
an asymmetric block also stores its zero point in ``GROUP_ZERO_POINT_BITS`` = 8 bits (codes of
at most 8 bits).  They move with the weight codes, so the layer's filter operand grows by
``out_channels x groups x 4`` bytes (x 5 asymmetric) in every traffic and memory figure
(``LayerShape.weight_scale_bytes``).  Per-channel and per-tensor layers keep their K
constants uncounted, as before; the per-channel shifts and the bias of a group layer are
counted the same way (not at all).  The sums over groups happen in the requantization stage,
which the cost model does not price for any layer; the GEMM is unchanged, so MACs and compute
cycles equal the per-channel layer's at ``weight_bits``.  The loop-nest model of memory
hierarchies (``memory.levels``) does not count ``weight_scale_bytes``.
"""

from __future__ import annotations

from dataclasses import replace

from hwsim.errors import WorkloadError
from hwsim.workloads.layer import LayerShape

#: Bits of one (output channel, group) multiplier as stored beside the weights.
GROUP_SCALE_BITS = 32
#: Bits of one (output channel, group) zero point of an asymmetric format.
GROUP_ZERO_POINT_BITS = 8


def group_scale_bytes(out_channels: int, groups: int, asymmetric: bool = False) -> int:
    """Bytes of the per-(channel, group) constants: ``out_channels x groups x (32 [+ 8]) / 8``."""
    bits = GROUP_SCALE_BITS + (GROUP_ZERO_POINT_BITS if asymmetric else 0)
    return int(out_channels) * int(groups) * bits // 8


def group_layer_shape(base: LayerShape, group_size: int, asymmetric: bool = False) -> LayerShape:
    """``base`` with group-wise weights of ``group_size`` input features per group: the same
    layer in the "int" family (its integer form runs on any integer datapath) with
    ``weight_scale_bytes`` for ``in_channels / groups / group_size`` groups per output channel.
    WorkloadError when the group size does not divide the input features."""
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise WorkloadError(f"layer {base.name!r}: group size must be a positive integer, got "
                            f"{group_size!r}")
    features = base.in_channels // base.groups
    if features % group_size:
        raise WorkloadError(f"layer {base.name!r}: group size {group_size} does not divide its "
                            f"{features} input features (in_channels / groups); choose a group "
                            f"size that divides {features}")
    scales = group_scale_bytes(base.out_channels, features // group_size, asymmetric)
    return replace(base, weight_format="int", weight_scale_bytes=scales)
