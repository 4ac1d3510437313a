"""quant: hardware-agnostic post-training quantization (capture, formats, calibration).

``quant`` never imports ``hwsim``.
"""

from quant.calibrate import ActivationObserver, calibrate_activations
from quant.capture import capture
from quant.errors import CalibrationError, QuantError, UnsupportedOpError
from quant.formats import (BinaryFormat, BinaryParams, IntFormat, QuantParams, binary_fake_quant,
                           fit_binary, fit_int_params, fit_params, register_format)
from quant.graph import LayerGraph, LayerRecord
from quant.model import QuantConfig, QuantizedModel, quantize

__all__ = [
    "ActivationObserver",
    "BinaryFormat",
    "BinaryParams",
    "CalibrationError",
    "IntFormat",
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
    "fit_binary",
    "fit_int_params",
    "fit_params",
    "quantize",
    "register_format",
]
