"""Capture handlers for convolutions and pooling: nn.ConvTranspose2d, F.conv2d /
F.conv_transpose2d with constant weights, max / avg pooling and adaptive average pooling.

(nn.Conv2d and nn.Linear are read off the module in ``quant.capture``'s dispatch.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import fx, nn

from quant._capture_args import (conv_padding, pads4, pair, to_numpy_f32,
                                 transposed_to_output_major)
from quant._capture_core import CaptureCore


@dataclass(frozen=True)
class _ConvGeometry:
    """What ``conv_padding`` reads of a Conv2d, for F.conv2d."""

    padding: object
    kernel_size: tuple[int, ...]
    dilation: tuple[int, int]


class ConvOps(CaptureCore):
    """Convolutions (transposed and functional) and pooling."""

    def functional_conv(self, node: fx.Node, name: str, kind: str, a: dict) -> None:
        """F.conv2d / F.conv_transpose2d with a parameter (constant) weight and bias."""
        w, b = self.const_value(a["weight"]), a["bias"]
        bias = None if b is None else self.const_value(b)
        if w is None or w.ndim != 4 or (b is not None and bias is None):
            raise self.unsupported(node, f"F.{kind} whose weight / bias is not a parameter or "
                                         "constant tensor (weight 4-D)")
        w32 = w.astype(np.float32)
        b32 = None if bias is None else bias.reshape(-1).astype(np.float32)
        stride, dilation, groups = pair(a["stride"]), pair(a["dilation"]), int(a["groups"])
        if kind == "conv2d":
            geometry = _ConvGeometry(a["padding"], tuple(w.shape[2:]), dilation)
            attrs = {"stride": stride, "padding": conv_padding(geometry),  # type: ignore[arg-type]
                     "dilation": dilation, "groups": groups}
            self.add(node, name, "conv2d", (self.src(node, a["input"]),), attrs=attrs,
                     weight=w32, bias=b32)
            return
        self.transposed_conv(node, name, a["input"], w32, b32, stride, a["padding"],
                             pair(a["output_padding"]), dilation, groups)

    def pool(self, node: fx.Node, name: str, kind: str, a: dict) -> None:
        src = self.src(node, a["input"])
        kernel = pair(a["kernel_size"])
        stride = pair(a["stride"]) if a["stride"] not in (None, [], ()) else kernel
        attrs = {"kernel": kernel, "stride": stride, "padding": pads4(a["padding"]),
                 "ceil_mode": bool(a["ceil_mode"]), "global": False}
        if kind == "max_pool2d":
            if pair(a["dilation"]) != (1, 1) or a["return_indices"]:
                raise self.unsupported(node, "max pooling with dilation or return_indices")
            attrs["count_include_pad"] = False
            self.add(node, name, "maxpool2d", (src,), attrs=attrs)
        else:
            if a["divisor_override"] is not None:
                raise self.unsupported(node, "avg pooling with divisor_override")
            attrs["count_include_pad"] = bool(a["count_include_pad"])
            self.add(node, name, "avgpool2d", (src,), attrs=attrs)

    def adaptive_avg(self, node: fx.Node, name: str, arg: fx.Node, output_size: object) -> None:
        in_shape = self.shape(arg)
        h, w = in_shape[-2], in_shape[-1]
        size = output_size if isinstance(output_size, (tuple, list)) else (output_size,) * 2
        oh, ow = (h if size[0] is None else int(size[0])), (w if size[-1] is None else int(size[-1]))
        if (oh, ow) == (1, 1) or (h % oh == 0 and w % ow == 0):
            kernel = (h // oh, w // ow)
            attrs = {"kernel": kernel, "stride": kernel, "padding": (0, 0, 0, 0),
                     "ceil_mode": False, "count_include_pad": True, "global": (oh, ow) == (1, 1)}
            self.add(node, name, "avgpool2d", (self.src(node, arg),), attrs=attrs)
            return
        raise self.unsupported(node, f"adaptive avg pooling from {h}x{w} to {oh}x{ow} "
                                     "is not a plain pooling")

    def conv_transpose(self, node: fx.Node, path: str, m: nn.ConvTranspose2d,
                       arg: fx.Node) -> None:
        """nn.ConvTranspose2d -> conv_transpose2d, its weight output-channel major."""
        if m.padding_mode != "zeros":
            raise self.unsupported(node, f"ConvTranspose2d with padding_mode="
                                         f"{m.padding_mode!r}; only 'zeros' is supported")
        if len(node.args) > 1 or node.kwargs:
            raise self.unsupported(node, "ConvTranspose2d called with output_size; set "
                                         "output_padding on the module instead")
        self.transposed_conv(node, self.unique(path), arg, to_numpy_f32(m.weight),
                             to_numpy_f32(m.bias), pair(m.stride), m.padding,
                             pair(m.output_padding), pair(m.dilation), int(m.groups))

    def transposed_conv(self, node: fx.Node, name: str, arg: object, weight: np.ndarray,
                        bias: np.ndarray | None, stride: tuple[int, int], padding: object,
                        output_padding: tuple[int, int], dilation: tuple[int, int],
                        groups: int) -> None:
        """A conv_transpose2d record from torch's (C, K/groups, R, S) float32 weight."""
        for v, s, d in zip(output_padding, stride, dilation):
            if v >= max(s, d):
                raise self.unsupported(node, f"ConvTranspose2d output_padding {output_padding} "
                                             f"must be smaller than max(stride, dilation) "
                                             f"on each axis; stride {stride}, dilation {dilation}")
        attrs = {"stride": stride, "padding": pads4(padding), "output_padding": output_padding,
                 "dilation": dilation, "groups": groups}
        self.add(node, name, "conv_transpose2d", (self.src(node, arg),), attrs=attrs,
                 weight=transposed_to_output_major(weight, groups), bias=bias)
