"""One convolution or fully connected layer as a shape: what the cost model needs to know.

A `LayerShape` is plain data (no weights). Sizes are in elements; `in_h`/`in_w` are the input
*before* padding. Two conventions give the output size:

- ``"torch"``: ``floor((H + pad_top + pad_bottom - dilation*(R-1) - 1) / stride) + 1``;
- ``"scalesim"``: SCALE-Sim v3, ``ceil((H - R_eff + s) / s)`` on the input as given, padding
  ignored (``R_eff = dilation*(R-1) + 1``; SCALE-Sim itself has no dilation, so with dilation 1
  this is exactly its formula).

They agree when all padding is zero and the stride divides ``H - R_eff``; otherwise SCALE-Sim's
formula counts one output more than exist (e.g. H=16, R=3, s=2: 8 instead of 7). Use
"scalesim" only to reproduce SCALE-Sim's numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from hwsim.errors import WorkloadError

CONVENTIONS = ("torch", "scalesim")
LAYER_KINDS = ("conv", "linear")
#: Largest size, channel count, kernel, stride, dilation, padding, groups or batch of a layer.
#: Together with the cost model's per-layer check (every count at most 2^53, see
#: hwsim/cost/network.py) this keeps all cost arithmetic exact in int64.
MAX_DIM = 2**31
#: Largest operand width (act_bits, weight_bits), as for accelerator configs.
MAX_BITS = 256
#: Largest weight_scale_bytes of a layer (the cost model's bound on any count, 2^53).
MAX_COUNT = 2**53


def _show(value: object) -> str:
    """`repr` for messages; integers beyond 40 digits by their size."""
    if isinstance(value, int) and abs(value) >= 10**40:
        return f"an integer of {int(abs(value).bit_length() * 0.30103) + 1} digits"
    try:
        text = repr(value)
    except ValueError:
        return f"a {type(value).__name__} too large to print"
    return text if len(text) <= 80 else text[:77] + "..."


def check_convention(convention: str) -> None:
    """Raise `WorkloadError` unless `convention` is one of `CONVENTIONS`."""
    if convention not in CONVENTIONS:
        raise WorkloadError(
            f"output-size convention {convention!r} is unknown; expected one of {list(CONVENTIONS)}"
        )


def _out_size(size: int, pad_lo: int, pad_hi: int, kernel: int, stride: int, dilation: int,
              convention: str) -> int:
    extent = dilation * (kernel - 1) + 1
    if convention == "torch":
        return (size + pad_lo + pad_hi - extent) // stride + 1
    check_convention(convention)
    return -(-(size - extent + stride) // stride)  # ceil division on integers


@dataclass(frozen=True)
class LayerShape:
    """Shape of one conv or linear layer.

    Conv weights are ``(out_channels, in_channels/groups, kernel_h, kernel_w)``; activations are
    NCHW with N = `batch`. A linear layer is ``kind="linear"`` with ``in_h = in_w = kernel_h =
    kernel_w = 1`` (in_channels = in_features, out_channels = out_features). `act_bits` and
    `weight_bits` are the operand widths the layer runs at (the stored code widths); outputs are
    stored at `act_bits`. `weight_format` and `act_format` name the number-format families of the
    weights and activations ("int", "binary", "apot", ...: names registered in quant.formats;
    not checked here) -- accelerators route layers and units accept them by family. "int" is
    right for shape-only workloads (SCALE-Sim topologies, built-in networks).
    `weight_scale_bytes`: bytes of quantization constants stored beside the weight codes that
    move with them (group-wise weights: one multiplier per (output channel, group),
    hwsim/workloads/group.py); 0 for per-channel and per-tensor weights, whose few constants
    the model does not count. The cost model adds them to the filter operand's bytes.
    """

    name: str
    kind: str
    in_h: int
    in_w: int
    in_channels: int
    out_channels: int
    kernel_h: int
    kernel_w: int
    stride_h: int = 1
    stride_w: int = 1
    pad_top: int = 0
    pad_left: int = 0
    pad_bottom: int = 0
    pad_right: int = 0
    dilation_h: int = 1
    dilation_w: int = 1
    groups: int = 1
    batch: int = 1
    act_bits: int = 8
    weight_bits: int = 8
    weight_format: str = "int"
    act_format: str = "int"
    weight_scale_bytes: int = 0

    def __post_init__(self) -> None:
        problems = self._problems()
        if problems:
            raise WorkloadError(f"layer {_show(self.name)}: " + "; ".join(problems))

    def _problems(self) -> list[str]:
        problems: list[str] = []
        if self.kind not in LAYER_KINDS:
            problems.append(f"kind: expected one of {list(LAYER_KINDS)}, got {self.kind!r}")
        positive = ("in_h", "in_w", "in_channels", "out_channels", "kernel_h", "kernel_w",
                    "stride_h", "stride_w", "dilation_h", "dilation_w", "groups", "batch",
                    "act_bits", "weight_bits")
        for field in positive:
            value = getattr(self, field)
            top = MAX_BITS if field.endswith("_bits") else MAX_DIM
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                problems.append(f"{field}: expected a positive integer, got {_show(value)}")
            elif value > top:
                problems.append(f"{field}: expected at most {top}, got {_show(value)}")
        for field in ("pad_top", "pad_left", "pad_bottom", "pad_right"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                problems.append(f"{field}: expected a non-negative integer, got {_show(value)}")
            elif value > MAX_DIM:
                problems.append(f"{field}: expected at most {MAX_DIM}, got {_show(value)}")
        value = self.weight_scale_bytes
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
            problems.append(f"weight_scale_bytes: expected an integer in [0, {MAX_COUNT}], got "
                            f"{_show(value)}")
        for field in ("weight_format", "act_format"):
            value = getattr(self, field)
            if not isinstance(value, str) or not value.strip():
                problems.append(f"{field}: expected a non-empty format family name, got "
                                f"{_show(value)}")
        if problems:
            return problems
        if self.in_channels % self.groups or self.out_channels % self.groups:
            problems.append(
                f"groups: in_channels ({self.in_channels}) and out_channels "
                f"({self.out_channels}) must both be divisible by groups ({self.groups})"
            )
        if self.kind == "linear" and (self.in_h, self.in_w, self.kernel_h, self.kernel_w) != (1, 1, 1, 1):
            problems.append("a linear layer needs in_h = in_w = kernel_h = kernel_w = 1")
        ext_h = self.dilation_h * (self.kernel_h - 1) + 1
        ext_w = self.dilation_w * (self.kernel_w - 1) + 1
        padded_h = self.in_h + self.pad_top + self.pad_bottom
        padded_w = self.in_w + self.pad_left + self.pad_right
        if ext_h > padded_h:
            problems.append(f"kernel_h: dilated kernel height {ext_h} is larger than the padded "
                            f"input height {padded_h}")
        if ext_w > padded_w:
            problems.append(f"kernel_w: dilated kernel width {ext_w} is larger than the padded "
                            f"input width {padded_w}")
        return problems

    def out_h(self, convention: str = "torch") -> int:
        """Output height in pixels under `convention` ("torch" or "scalesim")."""
        out = _out_size(self.in_h, self.pad_top, self.pad_bottom, self.kernel_h, self.stride_h,
                        self.dilation_h, convention)
        if out <= 0:
            raise WorkloadError(f"layer {self.name!r}: output height is {out} under the "
                                f"{convention!r} convention (kernel larger than the unpadded input)")
        return out

    def out_w(self, convention: str = "torch") -> int:
        """Output width in pixels under `convention` ("torch" or "scalesim")."""
        out = _out_size(self.in_w, self.pad_left, self.pad_right, self.kernel_w, self.stride_w,
                        self.dilation_w, convention)
        if out <= 0:
            raise WorkloadError(f"layer {self.name!r}: output width is {out} under the "
                                f"{convention!r} convention (kernel larger than the unpadded input)")
        return out

    def macs(self, convention: str = "torch") -> int:
        """Multiply-accumulates of one forward pass over the whole batch."""
        per_output = (self.in_channels // self.groups) * self.kernel_h * self.kernel_w
        return (self.batch * self.out_h(convention) * self.out_w(convention)
                * self.out_channels * per_output)

    @property
    def weight_count(self) -> int:
        """Number of weights (no bias): out_channels * in_channels/groups * kernel_h * kernel_w."""
        return self.out_channels * (self.in_channels // self.groups) * self.kernel_h * self.kernel_w

    def padded(self) -> "LayerShape":
        """The same layer with its padding folded into the input size (what SCALE-Sim expects)."""
        return replace(self, in_h=self.in_h + self.pad_top + self.pad_bottom,
                       in_w=self.in_w + self.pad_left + self.pad_right,
                       pad_top=0, pad_left=0, pad_bottom=0, pad_right=0)


def linear_layer(name: str, in_features: int, out_features: int, *, batch: int = 1,
                 act_bits: int = 8, weight_bits: int = 8, weight_format: str = "int",
                 act_format: str = "int") -> LayerShape:
    """A fully connected layer ``(batch, in_features) -> (batch, out_features)``."""
    return LayerShape(name=name, kind="linear", in_h=1, in_w=1, in_channels=in_features,
                      out_channels=out_features, kernel_h=1, kernel_w=1, batch=batch,
                      act_bits=act_bits, weight_bits=weight_bits, weight_format=weight_format,
                      act_format=act_format)
