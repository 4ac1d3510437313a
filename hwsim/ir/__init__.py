"""The integer program: plain data (networkx DAG + numpy arrays), saved and loaded without torch."""
from hwsim.ir.check import check_program
from hwsim.ir.ops import OPS, OpDef, op_def, register_op, unregister_op
from hwsim.ir.program import IntProgram, Node
from hwsim.ir.serialize import load_program, save_program
from hwsim.ir.specs import (AccumulatorConfig, AccumulatorMode, RequantMode, RequantSpec)
from hwsim.ir.tensor import TensorQuant, smallest_int_dtype

__all__ = ["IntProgram", "Node", "TensorQuant", "OPS", "OpDef", "op_def", "register_op",
           "unregister_op", "check_program", "save_program", "load_program",
           "smallest_int_dtype", "AccumulatorConfig", "AccumulatorMode", "RequantMode",
           "RequantSpec"]
