"""One exception family for hwsim. Messages name the file, field, layer or node at fault."""


class HwsimError(Exception):
    """Base class of every error hwsim raises for bad input or an impossible request."""


class ConfigError(HwsimError):
    """An accelerator configuration (YAML or SCALE-Sim .cfg) is invalid."""


class WorkloadError(HwsimError):
    """A workload (topology CSV, built-in network, layer shape) is invalid."""


class KernelError(HwsimError):
    """Operands given to an integer kernel are invalid (shapes, dtypes, ranges)."""


class ProgramError(HwsimError):
    """An integer program is malformed, or cannot be built, saved, loaded or executed."""
