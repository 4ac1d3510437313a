"""A transposed convolution as the cost model sees it: the GEMM of its scatter (col2im) form.

The cost model prices only the real products of a transposed conv: every input pixel times
every weight of its group, ``MACs = N * C * H * W * (K/groups) * R * S``. There is no
transposed kind in `LayerShape` / the cost tables, so the layer is the equivalent 1x1 conv over
the input ``(N, C, H, W)`` with ``K*R*S`` output channels and ``groups`` groups (GEMM rows = input
pixels, columns = (k, r, s), reduction = C/groups). Its MACs, weight count and input traffic
are exactly the layer's; its output traffic is the column buffer of partial products
(N*K*R*S*H*W) before the overlap-add into (N, K, OH, OW) -- what a col2im accelerator writes,
more than the final output when taps overlap (R > stride). Not chosen: the zero-inserted view
(a stride-1 conv over the input with stride-1 zeros inserted), which is what a systolic array
running the layer as a plain conv pays: about stride_h*stride_w times the MACs, most of them
products with inserted zeros.
"""
from __future__ import annotations

from hwsim.workloads.layer import LayerShape


def conv_transpose_layer(name: str, *, batch: int, in_h: int, in_w: int, in_channels: int,
                         out_channels: int, kernel: tuple[int, int], groups: int, act_bits: int,
                         weight_bits: int, weight_format: str = "int",
                         act_format: str = "int") -> LayerShape:
    """The cost-model shape of a transposed conv: its scatter GEMM (module docstring)."""
    kh, kw = (int(v) for v in kernel)
    return LayerShape(name=name, kind="conv", in_h=int(in_h), in_w=int(in_w),
                      in_channels=int(in_channels), out_channels=int(out_channels) * kh * kw,
                      kernel_h=1, kernel_w=1, groups=int(groups), batch=int(batch),
                      act_bits=int(act_bits), weight_bits=int(weight_bits),
                      weight_format=weight_format, act_format=act_format)
