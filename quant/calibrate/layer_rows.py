"""A conv2d / linear layer seen as a grouped matrix product over its output positions.

Output position ``p`` (one sample and, for a conv, one output pixel) is the product of the
weight with the input patch under it.  ``LayerRows`` gathers the patches of a few sampled
positions, so a layer-wise optimizer can take a step on a random subset of output positions
without running the whole convolution (the cost of a step is proportional to the number of
sampled positions).  Layouts, with G groups of K/G output channels and D = C/G·R·S patch
elements ordered as in the weight (channel of the group, tap row, tap column): patches
(G, P, D), weight (G, K/G, D), outputs (G, P, K/G).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from quant.errors import QuantError
from quant.graph import LayerRecord


class LayerRows:
    """The input of one layer, ready to be sampled by output position.

    ``x``: the layer's input, conv2d (N, C, H, W), linear (N, ..., in), float32.
    """

    def __init__(self, rec: LayerRecord, x: torch.Tensor) -> None:
        if rec.op not in ("conv2d", "linear"):
            raise QuantError(f"layer {rec.name!r} is a {rec.op} record; expected conv2d or linear")
        self.rec = rec
        self.out_channels = rec.weight.shape[0]
        self.samples = x.shape[0]
        if rec.op == "linear":
            self.groups = 1
            self._rows = x.reshape(-1, x.shape[-1]).contiguous()
            self.n_rows = self._rows.shape[0]
            return
        a = rec.attrs
        _, _, r, s = rec.weight.shape
        self.groups = int(a["groups"])
        top, left, bottom, right = a["padding"]
        # channels first and flat, so one gather of flat positions serves every channel
        xc = F.pad(x, (left, right, top, bottom)).transpose(0, 1).contiguous()
        _, n, hp, wp = xc.shape
        self._xc = xc.reshape(xc.shape[0], -1)  # (C, N·Hp·Wp)
        self._plane = (hp * wp, wp)
        (sh, sw), (dh, dw) = a["stride"], a["dilation"]
        self.out_h = (hp - dh * (r - 1) - 1) // sh + 1
        self.out_w = (wp - dw * (s - 1) - 1) // sw + 1
        self.n_rows = n * self.out_h * self.out_w
        self._tap_rows = torch.arange(r) * dh
        self._tap_cols = torch.arange(s) * dw
        self._stride = (sh, sw)
        self._taps = r * s

    def sample_positions(self, samples: torch.Tensor) -> torch.Tensor:
        """The output positions (int64) of the given samples (indices along N)."""
        per = self.n_rows // self.samples
        return (samples[:, None] * per + torch.arange(per)).reshape(-1)

    def patches(self, idx: torch.Tensor) -> torch.Tensor:
        """Input patches of output positions ``idx`` (P,) int64: (G, P, D)."""
        if self.rec.op == "linear":
            return self._rows.index_select(0, idx).unsqueeze(0)
        hw = self.out_h * self.out_w
        n, rem = idx // hw, idx % hw
        i, j = rem // self.out_w, rem % self.out_w
        rows = i[:, None] * self._stride[0] + self._tap_rows  # (P, R)
        cols = j[:, None] * self._stride[1] + self._tap_cols  # (P, S)
        flat = (n[:, None, None] * self._plane[0] + rows[:, :, None] * self._plane[1]
                + cols[:, None, :])  # (P, R, S)
        p = self._xc.index_select(1, flat.reshape(-1))  # (C, P·R·S)
        g = self.groups
        p = p.reshape(g, p.shape[0] // g, idx.shape[0], self._taps)  # (G, C/G, P, R·S)
        return p.permute(0, 2, 1, 3).reshape(g, idx.shape[0], -1)

    def weight_matrix(self, w: torch.Tensor) -> torch.Tensor:
        """Weight (K, ...) of the layer as (G, K/G, D)."""
        return w.reshape(self.groups, w.shape[0] // self.groups, -1)

    def product(self, patches: torch.Tensor, wmat: torch.Tensor) -> torch.Tensor:
        """Layer output without bias at the sampled positions: (G, P, K/G)."""
        return torch.bmm(patches, wmat.transpose(1, 2))

    def channels(self, v: torch.Tensor) -> torch.Tensor:
        """A per-output-channel vector (K,) shaped (G, 1, K/G) to broadcast over outputs."""
        return v.reshape(self.groups, 1, -1)

    def output_rows(self, y: torch.Tensor) -> torch.Tensor:
        """A layer output (conv (N, K, OH, OW), linear (N, ..., K)) as (G, positions, K/G), in
        the order of ``patches``' indices (a copy)."""
        g = self.groups
        if self.rec.op == "linear":
            return y.reshape(1, -1, y.shape[-1]).contiguous()
        k = y.shape[1]
        t = y.transpose(0, 1).reshape(g, k // g, -1)  # (G, K/G, positions)
        return t.transpose(1, 2).contiguous()
