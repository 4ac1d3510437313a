"""Number formats: one module per format, all registered in ``registry``'s table."""

from quant.formats.binary import (BinaryFormat, BinaryParams, binary_fake_quant, encode_binary,
                                  fit_binary)
from quant.formats.registry import (
    FormatEntry,
    fit_params,
    format_entry,
    register_format,
    registered_formats,
)
from quant.formats.uniform import IntFormat, QuantParams
from quant.formats.uniform_fit import fit_int_params, params_from_range, quantization_mse

register_format("int", IntFormat, fit_int_params)
register_format("binary", BinaryFormat, fit_binary)

__all__ = [
    "BinaryFormat",
    "BinaryParams",
    "FormatEntry",
    "IntFormat",
    "QuantParams",
    "binary_fake_quant",
    "encode_binary",
    "fit_binary",
    "fit_int_params",
    "fit_params",
    "format_entry",
    "params_from_range",
    "quantization_mse",
    "register_format",
    "registered_formats",
]
