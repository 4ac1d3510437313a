"""ONNX models into hwsim: int8 models (QOperator or QDQ) as integer programs that reproduce
ONNX Runtime bit for bit, and float models as cost-model workloads.

`onnx` and `onnxruntime` are optional (the 'onnx' extra): they are imported only when a function
needs them, and their absence raises OnnxImportError saying what to install.

    program = load_onnx_program("mobilenet_v2.int8.onnx")
    codes = quantize_input(program, images)             # the input QuantizeLinear, as ORT does
    out = hwsim.execute(program, codes).output          # == ORT's codes before the last DQ
    ref = ort_reference_outputs("mobilenet_v2.int8.onnx", images, [program.output_name])

and back: a program lowered with requant="float32" written as a QOperator model that ONNX
Runtime computes bit for bit like hwsim (accumulators as ORT's: `with_ort_accumulators`):

    export_onnx(with_ort_accumulators(program), "net.int8.onnx")
"""

from hwsim.onnx.errors import OnnxImportError
from hwsim.onnx.export import OnnxExportError, export_onnx, onnx_model, with_ort_accumulators
from hwsim.onnx.importer import load_onnx_program
from hwsim.onnx.inputs import quantize_input
from hwsim.onnx.ort_cpu import ort_saturates_int16_pairs
from hwsim.onnx.ort_semantics import qlinear_add
from hwsim.onnx.reference import ort_reference_outputs
from hwsim.onnx.verify import OnnxVerification, verify_onnx
from hwsim.onnx.workload import load_onnx_workload

__all__ = ["OnnxImportError", "load_onnx_program", "load_onnx_workload", "quantize_input",
           "ort_reference_outputs", "ort_saturates_int16_pairs", "qlinear_add",
           "export_onnx", "onnx_model", "with_ort_accumulators", "OnnxExportError",
           "OnnxVerification", "verify_onnx"]
