"""What an ONNX tensor is while the importer walks the graph.

- `QTensor`: integer codes produced by a node of the integer program.
- `Dequantized`: DequantizeLinear of a QTensor (a float tensor backed by codes).
- `DequantizedConst`: DequantizeLinear of a constant (QDQ weights and biases).
- `FloatOp`: a float op over dequantized operands, waiting for the QuantizeLinear that turns
  it into one integer node (the QDQ pattern DQ -> op -> Q).
- `FloatInput`: the model's float input, waiting for its QuantizeLinear.
Plain numpy arrays are constants.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hwsim.ir import TensorQuant

CODE_DTYPES = (np.dtype(np.uint8), np.dtype(np.int8))


@dataclass(frozen=True)
class Quant:
    """Quantization parameters as ONNX gives them: float32 scale and integer zero point, each
    a scalar or one per channel (K,); `dtype` is the codes' type (the zero point's type)."""

    scale: np.ndarray
    zero_point: np.ndarray
    dtype: np.dtype

    @property
    def per_tensor(self) -> bool:
        return self.scale.size == 1 and self.zero_point.size == 1

    @property
    def scale_f32(self) -> np.float32:
        return np.float32(self.scale.reshape(-1)[0])

    @property
    def zp(self) -> int:
        return int(self.zero_point.reshape(-1)[0])

    @property
    def range(self) -> tuple[int, int]:
        info = np.iinfo(self.dtype)
        return int(info.min), int(info.max)

    def tensor_quant(self) -> TensorQuant:
        """The per-tensor TensorQuant of an activation with these parameters."""
        lo, hi = self.range
        return TensorQuant(float(self.scale_f32), self.zp, lo, hi)

    def same_as(self, other: "Quant") -> bool:
        return (self.dtype == other.dtype and np.array_equal(self.scale, other.scale)
                and np.array_equal(self.zero_point, other.zero_point))


@dataclass(frozen=True)
class QTensor:
    node: str
    quant: TensorQuant
    shape: tuple[int, ...]
    dtype: np.dtype


@dataclass(frozen=True)
class Dequantized:
    source: QTensor
    quant: Quant


@dataclass(frozen=True)
class DequantizedConst:
    codes: np.ndarray
    quant: Quant
    axis: int  # the DequantizeLinear's axis (meaningful when quant is per channel)


@dataclass(frozen=True)
class FloatOp:
    node: Any  # onnx.NodeProto
    inputs: tuple


@dataclass(frozen=True)
class FloatInput:
    name: str
    shape: tuple[int, ...]
