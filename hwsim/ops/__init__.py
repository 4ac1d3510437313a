"""The built-in ops of the integer program, one module per concern, each registering its
``OpDef`` in ``hwsim.ir.ops.OPS`` on import (``hwsim/__init__`` imports this package first)."""

from hwsim.ops import apot, binary, dense, elementwise, matmul, pool, shape  # noqa: F401  (registers)
from hwsim.ops import avgpool_f32, eltwise, lut, resize, softmax_table  # noqa: F401  (ONNX Runtime)
from hwsim.ops import multipoint  # noqa: F401,E402  (multipoint weights as extra rows)
from hwsim.ops import float_island  # noqa: F401,E402  (ONNX float ops run in float32)
from hwsim.ops import conv_transpose  # noqa: F401,E402  (transposed conv)
from hwsim.ops import group  # noqa: F401,E402  (group-wise weights: a scale per block)
from hwsim.ops import lrn  # noqa: F401,E402  (local response norm, float64 vector op)
from hwsim.ops import sub  # noqa: F401,E402  (tensor - tensor, constant operands)
