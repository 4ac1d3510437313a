"""hwsim: bit-accurate integer simulation and cost models for quantized networks on accelerators.

The core (ir, kernels, execute, arch, workloads, cost) never imports torch. The bridges to
`quant` (lower, verify, flows) call a QuantizedModel's numpy API; `hwsim.zoo` needs torch.
"""
from hwsim.errors import ConfigError, HwsimError, KernelError, ProgramError, WorkloadError
from hwsim.executor import ExecutionResult, execute
from hwsim.ir import IntProgram, Node, TensorQuant, check_program, load_program, save_program

__all__ = [
    "HwsimError", "ConfigError", "WorkloadError", "KernelError", "ProgramError",
    "IntProgram", "Node", "TensorQuant", "check_program", "load_program", "save_program",
    "execute", "ExecutionResult",
]
__version__ = "0.1.0"
