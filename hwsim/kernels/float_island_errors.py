"""The float-island kernels' error type (its own module so the op modules can share it)."""
from __future__ import annotations

from hwsim.errors import KernelError


class FloatIslandError(KernelError):
    """A float-island op got operands or attributes it cannot compute."""
