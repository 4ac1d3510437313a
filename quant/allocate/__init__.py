"""Bit allocation: options, the cost-model protocol, and solvers over (sensitivity, cost) tables.

Torch-free (numpy and scipy): hwsim's core may import it.
"""

from quant.allocate.protocol import CostModel, Option

__all__ = ["CostModel", "Option"]
