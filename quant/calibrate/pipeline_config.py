"""What a calibration pipeline is asked to do (``QuantConfig.calibration``); the steps are in
``quant.calibrate.pipeline``.

Kept apart from the steps so that ``quant.model`` can validate a config without importing them.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from quant._validate import check_choice, check_int
from quant.allocate.protocol import CostModel, Option
from quant.errors import QuantError

#: ``QuantConfig.calibration`` values: no step after range calibration, or a pipeline
PIPELINE_NAMES = ("none", "light", "advanced")
#: how the pipeline sets activation ranges (see ``PipelineConfig.ranges``)
RANGE_POLICIES = ("auto", "percentile", "config")
#: what "auto" chooses between (the first wins ties)
RANGE_CHOICES = ("percentile", "config")
#: resources the pipeline prices itself; a ``cost_model`` adds its own
BUILTIN_RESOURCES = ("size_bits", "bops")
SOLVERS = ("milp", "greedy", "dp")
#: the percentile the "percentile" range policy clips inner activations at
RANGE_PERCENTILE = 99.99


@dataclass(frozen=True)
class PipelineConfig:
    """A post-training calibration pipeline (Hubara et al., "Improving Post Training Neural
    Quantization: Layer-wise Calibration and Integer Programming", 2020).

    * ``"light"``: ranges -> per-layer ΔL -> integer program -> BN re-estimation;
    * ``"advanced"``: ranges -> AdaQuant per candidate precision -> ΔL -> integer program ->
      BN re-estimation -> bias tuning.

    With fewer than two ``options`` there is nothing to choose: ΔL and the integer program are
    skipped (the report says so); one option puts every allocated layer at it, none keeps the
    ``QuantConfig``'s formats.

    Attributes:
        name: "light" or "advanced".
        options: candidate precisions (``quant.allocate.Option``: weight and activation widths
            and families) for every conv2d / linear layer not pinned by
            ``QuantConfig.layer_weight`` (e.g. pin the first and last layers at int8 there).
            Multipoint options are not supported here (``hwsim allocate`` has them).
        budgets: resource -> limit of the integer program: "size_bits" (weight elements x
            weight bits), "bops" (MACs x weight bits x activation bits) or a resource of
            ``cost_model``; a number, or a string "0.5x" for a fraction of that resource's
            total when every allocated layer takes the option with the most bits.  Required
            with two or more options.
        cost_model: prices options on hardware (``quant.allocate.CostModel``, e.g. hwsim's
            ``hwsim.codesign.costs.AcceleratorCosts``); its resources can be budgeted, and
            replace the built-in ones of the same name.
        ranges: "percentile": inner activations clipped at the 99.99th percentile, the model
            input and output at min-max, unless ``QuantConfig.layer_activation`` sets them;
            "config": the ``QuantConfig``'s activation formats as given; "auto" (default):
            both, on the option with the most bits (after AdaQuant in "advanced"), keeping the
            one with the lower KL on the held-out samples.
        solver: "milp" (exact), "greedy" or "dp" (``quant.solve_allocation``).
        adaquant_mode / adaquant_iters: AdaQuant's mode and steps per layer ("advanced").
        bias_tuning_iters: bias tuning steps ("advanced").
        groups: one label per calibration sample; samples with the same label are held out
            together (e.g. an image and its flip).  Default: every sample its own group.
        seed: seed of the held-out split (the same for ΔL, AdaQuant and bias tuning) and of
            the training steps.
    """

    name: str = "light"
    options: tuple[Option, ...] = ()
    budgets: Mapping[str, float | str] = field(default_factory=dict)
    cost_model: CostModel | None = None
    ranges: str = "auto"
    solver: str = "milp"
    adaquant_mode: str = "sequential"
    adaquant_iters: int = 150
    bias_tuning_iters: int = 40
    groups: tuple[Hashable, ...] | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        owner = "PipelineConfig"
        check_choice(self.name, "name", owner, PIPELINE_NAMES[1:])
        check_choice(self.ranges, "ranges", owner, RANGE_POLICIES)
        check_choice(self.solver, "solver", owner, SOLVERS)
        check_choice(self.adaquant_mode, "adaquant_mode", owner, ("sequential", "parallel"))
        check_int(self.adaquant_iters, "adaquant_iters", owner, 1, 10**7)
        check_int(self.bias_tuning_iters, "bias_tuning_iters", owner, 1, 10**7)
        check_int(self.seed, "seed", owner, 0, 2**63 - 1)
        if isinstance(self.options, Option) or not isinstance(self.options, Sequence):
            raise QuantError("The 'options' parameter of PipelineConfig must be a sequence of "
                             f"quant.allocate.Option. Got {self.options!r} instead.")
        for i, opt in enumerate(self.options):
            if not isinstance(opt, Option):
                raise QuantError(f"PipelineConfig.options[{i}] must be a quant.allocate.Option; "
                                 f"got {opt!r}")
            if opt.weight_format == "multipoint":
                raise QuantError(f"PipelineConfig.options[{i}] ({opt.label}): multipoint "
                                 "options are not supported by the calibration pipelines; "
                                 "use hwsim allocate --options multipoint:...")
        if len(set(self.options)) != len(self.options):
            raise QuantError("PipelineConfig.options holds the same option twice")
        object.__setattr__(self, "options", tuple(self.options))
        if not isinstance(self.budgets, Mapping):
            raise QuantError("The 'budgets' parameter of PipelineConfig must be a mapping from "
                             f"resource name to limit. Got {self.budgets!r} instead.")
        for resource, limit in self.budgets.items():
            parse_limit(resource, limit)
            if resource not in BUILTIN_RESOURCES and self.cost_model is None:
                raise QuantError(f"PipelineConfig.budgets[{resource!r}]: the pipeline prices "
                                 f"{list(BUILTIN_RESOURCES)}; other resources need a "
                                 "cost_model")
        if len(self.options) >= 2 and not self.budgets:
            raise QuantError("PipelineConfig: with two or more options the integer program "
                             "needs a budget, e.g. budgets={'size_bits': '0.6x'}")
        object.__setattr__(self, "budgets", MappingProxyType(dict(self.budgets)))
        if self.cost_model is not None and not isinstance(self.cost_model, CostModel):
            raise QuantError("The 'cost_model' parameter of PipelineConfig must have a "
                             "price(layers, options) method (quant.allocate.CostModel). Got "
                             f"{type(self.cost_model).__name__} instead.")
        if self.groups is not None:
            if isinstance(self.groups, (str, bytes)) or not isinstance(self.groups, Sequence):
                raise QuantError("The 'groups' parameter of PipelineConfig must be a sequence "
                                 f"of one label per sample. Got {self.groups!r} instead.")
            object.__setattr__(self, "groups", tuple(self.groups))

    @classmethod
    def of(cls, calibration: Any) -> PipelineConfig | None:
        """``QuantConfig.calibration`` as a ``PipelineConfig``; None for "none"."""
        if isinstance(calibration, cls):
            return calibration
        if isinstance(calibration, str) and calibration in PIPELINE_NAMES:
            return None if calibration == "none" else cls(name=calibration)
        raise QuantError("The 'calibration' parameter of QuantConfig must be one of "
                         f"{list(PIPELINE_NAMES)} or a PipelineConfig. Got {calibration!r} "
                         "instead.")


def parse_limit(resource: str, limit: float | str) -> tuple[float, bool]:
    """(value, relative) of a budget: a number >= 0, or "0.5x" (relative: a fraction > 0)."""
    what = f"PipelineConfig.budgets[{resource!r}]"
    if isinstance(limit, str):
        text = limit.strip()
        if text.endswith("x"):
            try:
                value = float(text[:-1])
            except ValueError:
                value = math.nan
            if math.isfinite(value) and value > 0:
                return value, True
        raise QuantError(f"{what} = {limit!r}: expected a number or a fraction such as '0.5x'")
    if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not (
            math.isfinite(limit) or limit == math.inf) or limit < 0:
        raise QuantError(f"{what} = {limit!r}: expected a number >= 0 or a fraction such as "
                         "'0.5x'")
    return float(limit), False
