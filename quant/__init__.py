"""quant: hardware-agnostic post-training quantization (capture, formats, calibration).

``quant`` never imports ``hwsim``.  Importing ``quant`` or ``quant.formats`` does not import
torch: the number formats are plain numpy, so hwsim's torch-free core can use them.  The
torch-facing names (capture, calibration, ``quantize``) are loaded on first use.
"""

import sys
import types
from importlib import import_module
from typing import Any

from quant.binary_input import BinaryInput
from quant.errors import CalibrationError, DegenerateChannelWarning, QuantError, UnsupportedOpError
from quant.formats import (APoTFormat, APoTParams, BinaryFormat, BinaryParams, FormatEntry, IntFormat, QuantParams,
                           binary_fake_quant, encode_binary, fit_binary, fit_int_params,
                           fit_params, format_family, register_format, registered_formats)
from quant.formats import MultipointFormat, MultipointParams, fit_multipoint
from quant.formats import GroupIntFormat, GroupParams, fit_group
from quant.graph import LayerGraph, LayerRecord

# name -> module that defines it; imported when the name is first used (the torch-facing ones
# with torch; quant.allocate is numpy + scipy).
_LAZY = {
    "Allocation": "quant.allocate",
    "AllocationError": "quant.allocate",
    "pareto_sweep": "quant.allocate",
    "solve_allocation": "quant.allocate",
    "SensitivityTable": "quant.sensitivity",
    "sensitivity_table": "quant.sensitivity",
    "ActivationObserver": "quant.calibrate",
    "calibrate_activations": "quant.calibrate",
    "QuantConfig": "quant.model",
    "QuantizedModel": "quant.model",
    "quantize": "quant.model",
    "assign_points": "quant.calibrate.multipoint",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'quant' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


class _Package(types.ModuleType):
    """``quant.capture`` is the capture *function*, although ``quant/capture.py`` is also a
    submodule: the import system binds a submodule on its package when it is first imported,
    and this property keeps the public name pointing at the function whatever was imported."""

    @property
    def capture(self) -> Any:
        return import_module("quant.capture").capture

    @capture.setter
    def capture(self, value: Any) -> None:  # the submodule binding; the function stays public
        pass


sys.modules[__name__].__class__ = _Package


__all__ = [
    "APoTFormat",
    "Allocation",
    "AllocationError",
    "pareto_sweep",
    "solve_allocation",
    "SensitivityTable",
    "sensitivity_table",
    "APoTParams",
    "ActivationObserver",
    "BinaryFormat",
    "BinaryInput",
    "BinaryParams",
    "CalibrationError",
    "DegenerateChannelWarning",
    "FormatEntry",
    "GroupIntFormat",
    "GroupParams",
    "IntFormat",
    "MultipointFormat",
    "MultipointParams",
    "assign_points",
    "fit_multipoint",
    "LayerGraph",
    "LayerRecord",
    "QuantConfig",
    "QuantError",
    "QuantParams",
    "QuantizedModel",
    "UnsupportedOpError",
    "binary_fake_quant",
    "calibrate_activations",
    "capture",
    "encode_binary",
    "fit_binary",
    "fit_group",
    "fit_int_params",
    "fit_params",
    "format_family",
    "quantize",
    "register_format",
    "registered_formats",
]
