"""Number formats: one module per family, each registered once in ``registry``'s table."""

from quant.formats.apot import (APoTFormat, APoTParams, apot_fake_quant, apot_levels,
                                apot_terms, fit_apot, fit_apot_output_error)
from quant.formats.binary import (BinaryFormat, BinaryParams, binary_fake_quant, encode_binary,
                                  fit_binary)
from quant.formats.registry import (
    FormatEntry,
    family_entry,
    fit_params,
    format_entry,
    format_family,
    register_format,
    registered_formats,
    straight_through,
    unregister_format,
)
from quant.formats.uniform import IntFormat, QuantParams
from quant.formats.group import GroupIntFormat, GroupParams, fit_group
from quant.formats.multipoint import (MultipointFormat, MultipointParams, decode_multipoint,
                                      fit_multipoint, fit_multipoint_ladder)
from quant.formats.multipoint_entry import (decode_multipoint_codes, encode_multipoint,
                                            fit_multipoint_weight, multipoint_code_scale,
                                            multipoint_storage_bits, multipoint_weight_problem)
from quant.formats.multipoint_points import CalibrationStats, PointAllocation, allocate_points
from quant.formats.uniform_fit import fit_int_params, params_from_range, quantization_mse


def _binary_weight_problem(fmt: BinaryFormat) -> str | None:
    if fmt.axis not in (0, None):
        return (f"a binary weight format fits per output channel (axis=0) or per tensor "
                f"(axis=None); got axis={fmt.axis}")
    return None


register_format(FormatEntry(
    name="int", format_type=IntFormat, fit=fit_int_params,
    encode=lambda params, x: params.quantize(x),
    decode=lambda params, codes: params.dequantize(codes),
    storage_bits=lambda fmt: fmt.bits,
    code_scale=lambda params: params.scale,
    fake_quant=straight_through))
register_format(FormatEntry(
    name="binary", format_type=BinaryFormat, fit=fit_binary,
    encode=lambda params, x: params.b,
    decode=lambda params, planes: BinaryParams(params.v, planes, params.fmt).dequantize(),
    storage_bits=lambda fmt: fmt.bits,
    code_scale=lambda params: None,
    fake_quant=binary_fake_quant,
    check_weight=_binary_weight_problem))
register_format(FormatEntry(
    name="apot", format_type=APoTFormat, fit=fit_apot,
    encode=lambda params, x: params.quantize(x),
    decode=lambda params, codes: params.dequantize(codes),
    storage_bits=lambda fmt: fmt.storage_bits,
    code_scale=lambda params: params.scale,
    fake_quant=straight_through,  # a learnable clipping threshold: apot_fake_quant(w, alpha, fmt)
    check_weight=lambda fmt: None if fmt.signed else "APoT weights are signed (signed=True)"))
register_format(FormatEntry(  # Liu et al., AAAI 2021: points as extra rows of one b-bit GEMM
    name="multipoint", format_type=MultipointFormat, fit=fit_multipoint_weight,
    encode=encode_multipoint, decode=decode_multipoint_codes,
    storage_bits=multipoint_storage_bits, code_scale=multipoint_code_scale,
    fake_quant=straight_through, check_weight=multipoint_weight_problem))
register_format(FormatEntry(  # one scale per (output channel, group of input features)
    name="group", format_type=GroupIntFormat, fit=fit_group,
    encode=lambda params, x: params.quantize(x),
    decode=lambda params, codes: params.dequantize(codes),
    storage_bits=lambda fmt: fmt.bits,
    code_scale=lambda params: None,  # the scales differ by group: the bias stays float
    fake_quant=straight_through))

__all__ = [
    "family_entry",
    "APoTFormat",
    "APoTParams",
    "apot_fake_quant",
    "apot_levels",
    "apot_terms",
    "fit_apot",
    "fit_apot_output_error",
    "BinaryFormat",
    "BinaryParams",
    "FormatEntry",
    "GroupIntFormat",
    "GroupParams",
    "IntFormat",
    "CalibrationStats",
    "MultipointFormat",
    "MultipointParams",
    "PointAllocation",
    "allocate_points",
    "decode_multipoint",
    "fit_multipoint",
    "fit_multipoint_ladder",
    "QuantParams",
    "binary_fake_quant",
    "encode_binary",
    "fit_binary",
    "fit_group",
    "fit_int_params",
    "fit_params",
    "format_entry",
    "format_family",
    "params_from_range",
    "quantization_mse",
    "register_format",
    "registered_formats",
    "straight_through",
    "unregister_format",
]
