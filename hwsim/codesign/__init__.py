"""Co-design: hwsim's cost model plugged into quant's allocator."""

from hwsim.codesign.costs import AcceleratorCosts
from hwsim.codesign.loop import CodesignProblem, CodesignResult, codesign, prepare
from hwsim.codesign.realize import CodesignError, Realization

__all__ = ["AcceleratorCosts", "CodesignError", "CodesignProblem", "CodesignResult",
           "Realization", "codesign", "prepare"]
