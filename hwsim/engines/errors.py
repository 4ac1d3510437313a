"""Errors of the engine modes."""

from hwsim.errors import KernelError


class EngineError(KernelError):
    """Operands given to an engine op (e.g. ONNX Runtime's QLinearConv) break that op's rules:
    dtypes, zero point or scale shapes the engine rejects."""
