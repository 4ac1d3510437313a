"""Per-layer quantization sensitivity tables for bit / format allocation.

``sensitivity_table(model, options, data, method=...)`` returns a ``SensitivityTable``: Ω[l, k],
the predicted (or measured) loss increase of giving layer l option k, for
``quant.allocate``'s solvers.  Methods (one module each):

* ``hutchinson``: HAWQ-V2 Hessian traces (Hutchinson's estimator, double back-propagation).
* ``fisher``: true-Fisher diagonal from per-sample gradients with model-sampled labels.
* ``empirical_fisher``: the same with observed labels (see Kunstner et al. 2019 for why it is
  a different quantity).
* ``measured``: held-out loss change of switching one layer (CalibTIP-style).

``options`` maps an ``Option`` to formats via the format registry; ``table`` is torch-free, and
this package imports torch only when ``sensitivity_table`` is first used.
"""

from importlib import import_module
from typing import Any

from quant.sensitivity.table import SensitivityTable

_LAZY = {"sensitivity_table": "quant.sensitivity.api"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'quant.sensitivity' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


__all__ = ["SensitivityTable", "sensitivity_table"]
