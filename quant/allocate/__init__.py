"""Bit allocation: options, the cost-model protocol, and solvers over (sensitivity, cost) tables.

Torch-free (numpy and scipy): hwsim's core may import it.
"""

from quant.allocate.allocation import Allocation, AllocationError
from quant.allocate.mckp import hull_path
from quant.allocate.pareto import pareto_sweep
from quant.allocate.protocol import CostModel, Option
from quant.allocate.solvers import METHODS, Problem, solve_allocation, validate_problem
from quant.allocate.ties import Tie

__all__ = ["Allocation", "AllocationError", "CostModel", "METHODS", "Option", "Problem", "Tie",
           "hull_path", "pareto_sweep", "solve_allocation", "validate_problem"]
