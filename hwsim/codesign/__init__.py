"""Co-design: hwsim's cost model plugged into quant's allocator."""

from hwsim.codesign.costs import AcceleratorCosts

__all__ = ["AcceleratorCosts"]
