"""The built-in ops of the integer program, one module per concern, each registering its
``OpDef`` in ``hwsim.ir.ops.OPS`` on import (``hwsim/__init__`` imports this package first)."""

from hwsim.ops import apot, binary, dense, elementwise, matmul, pool, shape  # noqa: F401  (registers)
