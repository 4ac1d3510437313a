"""The input binarizer of a binary (XNOR/popcount) layer: which format, and where its scales
come from.

A binary conv2d / linear layer receives the integer codes of its input activation and turns
them into k sign planes with scales ("Least squares binary quantization of neural networks",
Pouransari, Tu, Tuzel; CVPR Workshops 2020):

* ``scaling="per_sample"``: the scales are fitted on every sample at run time (the paper's
  setting; needs a unit that can fit them, e.g. a vector unit beside the XNOR array);
* ``scaling="running"``: one set of scales, calibrated as the mean of the per-sample fits over
  the calibration data, and the planes follow by thresholds (``encode_binary``): what a static
  accelerator implements.

The binarizer works on *centred codes* ``x - zero_point`` (float64), not on the dequantized
reals: the fit is scale-equivariant, so the scales in code units times the input scale are the
real scales, and the fake-quant model and the integer program compute identical sign planes
and scales from the same codes.  Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quant._validate import check_choice
from quant.errors import QuantError
from quant.formats.binary import BinaryFormat, BinaryParams, encode_binary, fit_binary

BINARY_SCALINGS = ("per_sample", "running")


@dataclass(frozen=True)
class BinaryInput:
    """How a binary layer binarizes its input.

    Attributes:
        fmt: the binary format (method and number of planes k); rows are samples, so
            ``fmt.axis`` must be 0.
        scaling: "per_sample" (fitted on each sample at run time) or "running" (static scales
            calibrated as the mean per-sample fit).
    """

    fmt: BinaryFormat
    scaling: str = "per_sample"

    def __post_init__(self) -> None:
        if not isinstance(self.fmt, BinaryFormat):
            raise QuantError(f"The 'fmt' parameter of BinaryInput must be a BinaryFormat. Got "
                             f"{self.fmt!r} instead.")
        if self.fmt.axis != 0:
            raise QuantError("The 'fmt' parameter of BinaryInput must fit one row per sample "
                             f"(axis=0). Got axis={self.fmt.axis!r} instead.")
        check_choice(self.scaling, "scaling", "BinaryInput", BINARY_SCALINGS)

    @property
    def k(self) -> int:
        """Number of sign planes."""
        return int(self.fmt.k)  # type: ignore[arg-type]

    def describe(self) -> str:
        return f"{self.fmt.describe()}/{self.scaling}"

    def to_attrs(self) -> dict:
        """JSON-able description (what an integer program stores)."""
        return {"method": self.fmt.method, "k": self.k, "scaling": self.scaling}

    @classmethod
    def from_attrs(cls, attrs: dict) -> "BinaryInput":
        try:
            fmt = BinaryFormat(attrs["method"], k=int(attrs["k"]), axis=0)
            return cls(fmt, attrs["scaling"])
        except (KeyError, TypeError, ValueError) as exc:
            raise QuantError(f"a binarizer needs 'method', 'k' and 'scaling'; got {attrs!r}") from exc


def binarize_codes(centred: np.ndarray, binarizer: BinaryInput,
                   static_scales: np.ndarray | None = None) -> BinaryParams:
    """Sign planes and scales of centred input codes.

    Args:
        centred: float64 or integer (N, ...), ``codes - zero_point`` of the layer input.
        binarizer: the layer's BinaryInput.
        static_scales: (k,) scales in code units; required for "running", ignored otherwise.
    Returns:
        BinaryParams with ``v`` (N, k) in code units and ``b`` (k, N, ...) in {-1, +1}.
    """
    x = np.asarray(centred, dtype=np.float64)
    if binarizer.scaling == "per_sample":
        return fit_binary(x, binarizer.fmt)
    if static_scales is None:
        raise QuantError(f"binarizer {binarizer.describe()} needs its calibrated static scales")
    return encode_binary(x, np.asarray(static_scales, dtype=np.float64), binarizer.fmt)
