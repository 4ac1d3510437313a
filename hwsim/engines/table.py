"""The one table of real integer engines hwsim reproduces bit for bit.

An engine mode on a conv/linear node (``attrs["engine"]``) says whose arithmetic the node
follows. ONNX Runtime's nodes run on hwsim's own kernels with its requantization and
accumulator settings; PyTorch's quantized engines run through their models in
``hwsim.engines.pytorch``.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class EngineFamily(str, Enum):
    ONNXRUNTIME = "onnxruntime"
    PYTORCH = "pytorch"


@dataclass(frozen=True)
class Engine:
    """One engine: its name (the node attr and CLI value), family and a description."""

    name: str
    family: EngineFamily
    description: str

    @property
    def is_pytorch(self) -> bool:
        return self.family is EngineFamily.PYTORCH


ENGINE_TABLE: dict[str, Engine] = {e.name: e for e in (
    Engine("ort", EngineFamily.ONNXRUNTIME,
           "ONNX Runtime QLinearConv/QLinearMatMul: float32 requantization, int16 pair "
           "saturation of u8 x s8 products on CPUs without VNNI"),
    Engine("qnnpack", EngineFamily.PYTORCH, "PyTorch quantized engine qnnpack"),
    Engine("onednn", EngineFamily.PYTORCH, "PyTorch quantized engine onednn"),
    Engine("fbgemm", EngineFamily.PYTORCH, "PyTorch quantized engine fbgemm"),
)}
ENGINES = tuple(ENGINE_TABLE)
PYTORCH_ENGINES = tuple(n for n, e in ENGINE_TABLE.items() if e.is_pytorch)


def is_pytorch_engine(name: str | None) -> bool:
    """Whether ``name`` is one of PyTorch's engines (None: no engine mode)."""
    engine = ENGINE_TABLE.get(name) if name is not None else None
    return engine is not None and engine.is_pytorch
