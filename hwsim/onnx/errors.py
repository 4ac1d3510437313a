"""The error of the ONNX importer."""

from hwsim.errors import ProgramError


class OnnxImportError(ProgramError):
    """An ONNX model cannot be read or turned into an integer program (or a workload): the
    message names the file, the ONNX node and what was expected."""
