"""hwsim: bit-accurate integer simulation and cost models for quantized networks on accelerators.

The core (ir, kernels, executor, arch, workloads, cost) never imports torch: a saved integer
program runs and is costed with numpy and numba alone. The bridges to `quant` (`hwsim.lower`,
`hwsim.verify`, `hwsim.flows`) call a QuantizedModel's numpy API; `hwsim.zoo` needs torch.
"""
import hwsim.ops  # noqa: F401  (registers the built-in IR ops first)
from hwsim.analysis import accumulator_report
from hwsim.arch import Accelerator, MemoryLevel, SystolicArray, load_accelerator
from hwsim.cost import NetworkCost, OptionCosts, cost_network, price_options
from hwsim.errors import ConfigError, HwsimError, KernelError, ProgramError, WorkloadError
from hwsim.executor import ExecutionResult, execute, execute_node
from hwsim.ir import IntProgram, Node, TensorQuant, check_program, load_program, save_program
from hwsim.kernels import AccumulatorSpec
from hwsim.workloads import LayerShape, builtin_workload, load_topology_csv

__all__ = [
    "HwsimError", "ConfigError", "WorkloadError", "KernelError", "ProgramError",
    "IntProgram", "Node", "TensorQuant", "check_program", "load_program", "save_program",
    "execute", "execute_node", "ExecutionResult", "AccumulatorSpec",
    "Accelerator", "MemoryLevel", "SystolicArray", "load_accelerator",
    "LayerShape", "builtin_workload", "load_topology_csv",
    "NetworkCost", "cost_network", "accumulator_report",
    "PrecisionOption", "OptionCosts", "price_options",
]
__version__ = "0.1.0"


def __getattr__(name: str):
    """``PrecisionOption`` is loaded on first use (see hwsim/cost/options.py)."""
    if name == "PrecisionOption":
        from hwsim.cost import options

        return options.PrecisionOption
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
