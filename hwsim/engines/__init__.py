"""Integer engines reproduced bit for bit from hwsim's exact kernels (torch-free)."""

from hwsim.engines.errors import EngineError
from hwsim.engines.fbgemm_linear import fbgemm_accumulators, fbgemm_linear
from hwsim.engines.ort import conv_integer, matmul_integer, qlinear_conv, qlinear_matmul
from hwsim.engines.pytorch import PYTORCH_ENGINES, torch_quantized_conv2d, torch_quantized_linear

__all__ = ["EngineError", "conv_integer", "matmul_integer", "qlinear_conv", "qlinear_matmul",
           "PYTORCH_ENGINES", "torch_quantized_conv2d", "torch_quantized_linear",
           "fbgemm_accumulators", "fbgemm_linear"]
