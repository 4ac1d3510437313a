"""A multipoint layer as the cost model sees it: its integer form, one ordinary b-bit layer
whose output channels are the weight rows (Liu et al., "Post-training Quantization with
Multiple Points: Mixed Precision without Mixed Precision", AAAI 2021).

A layer of K output channels with R >= K rows (K first points plus the extra points) is priced
as the same layer with R output channels at the points' width: R x (its MACs and weight codes
per channel).  The per-channel sums of rows happen in the requantization stage, which the cost
model does not price for any layer.  Grouped convs need care, since each group runs its own
GEMM and rows are not spread evenly over groups:

- groups = 1: ``out_channels = R``;
- depthwise (``in_channels == groups == out_channels``): each row reads one input channel, so
  the rows form a depthwise conv of R channels (``in_channels = out_channels = groups = R``):
  exact MACs and weights; input channels that several rows read are counted once per row;
- other grouped convs: the groups run back to back as equal GEMMs, so the busiest group sets
  the shape: ``out_channels = groups x (rows of the busiest group)`` (``busiest``; without it
  the rows are assumed spread evenly, ``ceil(R / groups)`` per group).
"""

from __future__ import annotations

from dataclasses import replace

from hwsim.errors import WorkloadError
from hwsim.workloads.layer import LayerShape


def rows_layer_shape(base: LayerShape, rows: int, busiest: int | None = None) -> LayerShape:
    """The layer ``base`` (one row per output channel: ``base.out_channels`` = K) computed with
    ``rows`` weight rows (R >= K; see the module docstring).  ``busiest``: rows of the busiest
    group, for a grouped conv that is not depthwise."""
    k, g = base.out_channels, base.groups
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < k:
        raise WorkloadError(f"layer {base.name!r}: a multipoint layer of {k} output channels "
                            f"has at least {k} weight rows; got {rows!r}")
    if g == 1:
        return replace(base, out_channels=rows)
    if base.in_channels == g == k:
        return replace(base, in_channels=rows, out_channels=rows, groups=rows)
    per_group = -(-rows // g) if busiest is None else int(busiest)
    if per_group * g < rows:
        raise WorkloadError(f"layer {base.name!r}: {rows} rows in {g} groups cannot have at "
                            f"most {per_group} rows in the busiest group")
    return replace(base, out_channels=g * per_group)
