"""Capture handlers that move or select values without arithmetic: split / chunk and
``getitem`` / basic slicing, flatten, reshape, transpose / permute, expand, unsqueeze and
interpolate (a resize record)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx
from torch.fx.passes.shape_prop import TensorMetadata

from quant._capture_args import bind
from quant._capture_core import CaptureCore
from quant._capture_kinds import _FUNC_KINDS, _METHOD_KINDS

# interpolate modes with an integer lowering -> ONNX Resize's coordinate transformation giving
# the same source indices (with nearest_mode "floor")
RESIZE_MODES = {"nearest": "asymmetric", "nearest-exact": "tf_half_pixel_for_nn",
                "bilinear": "half_pixel"}


class ShapeOps(CaptureCore):
    """Split, slicing, flatten, reshape, transpose, expand, unsqueeze and resize."""

    # ---- split / chunk / slicing ---------------------------------------------------------------
    def split(self, node: fx.Node) -> None:
        """torch.split / chunk / Tensor.split / chunk: the sections along the split axis, read off
        the traced output shapes; each ``getitem`` of the result becomes a slice record."""
        x = node.args[0]
        if node.op == "call_function":
            kind = _FUNC_KINDS[node.target]  # type: ignore[index]
        else:
            kind = str(node.target)
        a = bind(kind, node.args, dict(node.kwargs))
        in_shape = self.shape(x)  # type: ignore[arg-type]
        axis = int(a["dim"]) % len(in_shape)
        metas = node.meta.get("tensor_meta")
        if axis == 0 or not isinstance(metas, (tuple, list)) or not all(
                isinstance(m, TensorMetadata) for m in metas):
            raise self.unsupported(node, f"{kind} along dim {axis} of a tensor {in_shape}; only "
                                         "along a dim after the batch")
        bounds, start = [], 0
        for m in metas:
            stop = start + int(m.shape[axis])
            bounds.append((start, stop))
            start = stop
        self.splits[node] = (self.src(node, x), axis, int(in_shape[axis]), bounds)

    def getitem(self, node: fx.Node) -> None:
        """One output of a split, or basic slicing ``x[:, a:b, c:d]`` (dims after the batch,
        step 1) -> slice records, one per cut dim (a full slice is the tensor itself)."""
        base, index = node.args[0], node.args[1]
        if isinstance(base, fx.Node) and base in self.splits:
            src, axis, size, bounds = self.splits[base]
            start, stop = bounds[int(index)]  # type: ignore[call-overload]
            cuts = [] if (start, stop) == (0, size) else [(axis, start, stop)]
        else:
            src = self.src(node, base)
            cuts = self.slice_cuts(node, index, self.recs[src].out_shape)
        shape = list(self.recs[src].out_shape)
        for i, (axis, start, stop) in enumerate(cuts):
            shape[axis] = stop - start
            rec = self.add(node, self.func_name(node, "slice"), "slice", (src,),
                           attrs={"axis": int(axis), "start": int(start), "stop": int(stop)})
            rec.out_shape = tuple(shape)
            src = rec.name
        self.alias[node] = src

    def slice_cuts(self, node: fx.Node, index: object,
                   shape: tuple[int, ...]) -> list[tuple[int, int, int]]:
        """(axis, start, stop) of every dim ``index`` narrows; refuses anything but slices with
        step 1 of dims after the batch."""
        items = index if isinstance(index, tuple) else (index,)
        plain = len(items) <= len(shape) and all(
            isinstance(it, slice) and not any(isinstance(v, fx.Node)
                                              for v in (it.start, it.stop, it.step))
            for it in items)
        if not plain:
            raise self.unsupported(node, f"indexing {index!r}: only slices with step 1 of dims "
                                         "after the batch (x[:, a:b]) are captured")
        cuts = []
        for axis, it in enumerate(items):
            start, stop, step = it.indices(int(shape[axis]))  # type: ignore[union-attr]
            if (start, stop, step) == (0, int(shape[axis]), 1):
                continue
            if axis == 0 or step != 1 or stop <= start:
                raise self.unsupported(node, f"indexing {index!r}: only non-empty slices with "
                                             "step 1 of dims after the batch are captured")
            cuts.append((axis, start, stop))
        return cuts

    def flatten(self, node: fx.Node, name: str, arg: fx.Node, start: int, end: int) -> None:
        rank = len(self.shape(arg))
        start, end = start % rank, end % rank
        if start == 0 or end != rank - 1:
            raise self.unsupported(node, f"flatten(start_dim={start}, end_dim={end}) of a rank "
                                         f"{rank} tensor; only start_dim >= 1 to the last dim")
        if start == rank - 1:
            self.alias[node] = self.src(node, arg)
            return
        self.add(node, name, "flatten", (self.src(node, arg),), attrs={"start_dim": start})

    def reshape(self, node: fx.Node, name: str, arg: fx.Node) -> None:
        in_shape, out_shape = self.shape(arg), self.shape(node)
        if out_shape == in_shape:
            self.alias[node] = self.src(node, arg)
        elif out_shape == (in_shape[0], int(np.prod(in_shape[1:]))) and len(in_shape) > 2:
            self.flatten(node, name, arg, 1, -1)
        else:
            self.general_reshape(node, name, arg)

    def general_reshape(self, node: fx.Node, name: str, arg: fx.Node) -> None:
        out_shape = self.shape(node)
        self.add(node, name, "reshape", (self.src(node, arg),),
                 attrs={"shape": (-1, *out_shape[1:])})

    def transpose(self, node: fx.Node, name: str, kind: str) -> None:
        arg = node.args[0]
        rank = len(self.shape(arg))  # type: ignore[arg-type]
        if kind == "transpose":
            a = bind("transpose", node.args, dict(node.kwargs))
            d0, d1 = int(a["dim0"]) % rank, int(a["dim1"]) % rank
            perm = list(range(rank))
            perm[d0], perm[d1] = perm[d1], perm[d0]
        else:
            dims = node.args[1:] if node.op == "call_method" else node.args[1]
            if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
                dims = dims[0]
            perm = [int(d) % rank for d in dims]
        if sorted(perm) != list(range(rank)):
            raise self.unsupported(node, f"permutation {perm} of a rank {rank} tensor")
        self.add(node, name, "transpose", (self.src(node, arg),), attrs={"perm": tuple(perm)})

    def expand(self, node: fx.Node) -> None:
        """expand / expand_as whose every consumer is a mul: the mul's broadcasting does it."""
        users = self.tensor_users(node)
        muls = all(u.op != "output" and (
            (u.op == "call_function" and _FUNC_KINDS.get(u.target) == "mul")  # type: ignore
            or (u.op == "call_method" and _METHOD_KINDS.get(str(u.target)) == "mul"))
            for u in users)
        if not users or not muls:
            raise self.unsupported(node, "expand / expand_as is captured only as the operand of "
                                         "an element-wise multiply (where broadcasting does it)")
        self.alias[node] = self.src(node, node.args[0])

    def unsqueeze(self, node: fx.Node, name: str, a: dict) -> None:
        rank = len(self.shape(node))
        if int(a["dim"]) % rank == 0:
            raise self.unsupported(node, "unsqueeze(0) adds a dimension before the batch")
        self.general_reshape(node, name, a["input"])

    def interpolate(self, node: fx.Node, name: str, a: dict) -> None:
        mode = a["mode"]
        if mode not in RESIZE_MODES:
            raise self.unsupported(node, f"interpolate mode {mode!r} is not supported: only "
                                         "modes 'nearest', 'nearest-exact' (an index gather) "
                                         "and 'bilinear' have an integer lowering")
        if a.get("antialias"):
            raise self.unsupported(node, "interpolate with antialias=True")
        x = a["input"]
        in_shape, out_shape = self.shape(x), self.shape(node)
        if len(in_shape) != 4:
            raise self.unsupported(node, f"interpolate of a tensor of shape {in_shape}; only "
                                         "(N, C, H, W)")
        sf = a["scale_factor"]
        seq = sf if isinstance(sf, (tuple, list)) else (sf,)
        if any(isinstance(v, fx.Node) for v in seq):
            raise self.unsupported(node, "interpolate with a scale_factor computed in the graph")
        (h, w), (oh, ow) = in_shape[2:], out_shape[2:]
        kw: dict = {"mode": mode}
        if sf is not None:
            factors = tuple(float(v) for v in seq)
            factors = factors * 2 if len(factors) == 1 else factors
            kw.update(scale_factor=factors, recompute_scale_factor=a["recompute_scale_factor"])
            scales = (oh / h, ow / w) if a["recompute_scale_factor"] else factors
        else:
            kw["size"] = (oh, ow)
            scales = (oh / h, ow / w)
        if mode == "bilinear":
            corners = bool(a["align_corners"])
            attrs = {"mode": mode, "align_corners": corners, "size": (oh, ow),
                     "scale_factor": kw.get("scale_factor"),
                     "recompute_scale_factor": a["recompute_scale_factor"],
                     "scales": tuple(float(v) for v in scales),
                     "coordinate_transformation_mode": "align_corners" if corners
                     else "half_pixel"}
            self.add(node, name, "resize", (self.src(node, x),), attrs=attrs)
            return
        with torch.no_grad():  # torch's own interpolation of an index grid gives its gather
            grid = torch.arange(h * w, dtype=torch.float64).reshape(1, 1, h, w)
            probe = F.interpolate(grid, **kw)[0, 0].to(torch.int64)
        rows, cols = probe[:, 0] // w, probe[0, :] % w
        if tuple(probe.shape) != (oh, ow) or not torch.equal(probe, rows[:, None] * w + cols):
            raise self.unsupported(node, "interpolate is not a row / column gather to the traced "
                                         f"output size {(oh, ow)}")
        attrs = {"mode": mode, "rows": tuple(rows.tolist()), "cols": tuple(cols.tolist()),
                 "scales": tuple(float(v) for v in scales),
                 "coordinate_transformation_mode": RESIZE_MODES[mode], "nearest_mode": "floor"}
        self.add(node, name, "resize", (self.src(node, x),), attrs=attrs)
