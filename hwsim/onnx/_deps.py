"""Lazy imports of the optional `onnx` and `onnxruntime` packages (the 'onnx' extra)."""

from __future__ import annotations

import importlib
from types import ModuleType

from hwsim.onnx.errors import OnnxImportError

_INSTALL = "install the extra: pip install 'hwsim[onnx]'"


def require(package: str, purpose: str) -> ModuleType:
    """Import `package` ("onnx" or "onnxruntime"), or raise OnnxImportError saying what needs it."""
    try:
        return importlib.import_module(package)
    except ImportError as exc:
        raise OnnxImportError(f"{purpose} needs the '{package}' package, which is not "
                              f"installed ({exc}); {_INSTALL}") from None
