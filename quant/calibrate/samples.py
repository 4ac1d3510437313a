"""Calibration samples for the training steps (AdaQuant, bias tuning): one stacked tensor, the
held-out samples no step trains on, and seeded random streams."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

import numpy as np
import torch

from quant.calibrate.bias_correction import as_batches
from quant.errors import CalibrationError, QuantError


def stack_batches(data: torch.Tensor | Iterable[torch.Tensor], owner: str) -> torch.Tensor:
    """Calibration data (a float tensor (N, ...) or an iterable of them) as one float32 tensor
    (N, ...).  ``owner`` names the calling step in errors (CalibrationError: not tensors,
    empty, or holding NaN or infinite values)."""
    x = torch.cat(as_batches(data, owner))
    bad = ~torch.isfinite(x.reshape(x.shape[0], -1)).all(dim=1)
    if bool(bad.any()):
        first = int(torch.nonzero(bad)[0])
        raise CalibrationError(f"{owner}: calibration sample {first} holds NaN or infinite "
                               f"values ({int(bad.sum())} of {x.shape[0]} samples do); pass "
                               "finite inputs")
    return x


def check_groups(groups: Sequence[Hashable] | None, n: int, owner: str) -> list | None:
    """``groups`` (one label per sample, or None) as a list, or QuantError naming the parameter
    of ``owner``."""
    if groups is None:
        return None
    if isinstance(groups, (str, bytes)) or not hasattr(groups, "__len__"):
        raise QuantError(f"The 'groups' parameter of {owner} must be a sequence of one label per "
                         f"sample or None. Got {type(groups).__name__} instead.")
    labels = groups.tolist() if isinstance(groups, (np.ndarray, torch.Tensor)) else list(groups)
    if len(labels) != n:
        raise QuantError(f"The 'groups' parameter of {owner} must have one label per sample "
                         f"({n}). Got {len(labels)} labels instead.")
    try:
        {label: None for label in labels}
    except TypeError:
        raise QuantError(f"The 'groups' parameter of {owner} must hold hashable labels (ints or "
                         "strs).") from None
    return labels


def held_out_samples(n: int, seed: int, groups: list | None = None) -> torch.Tensor | None:
    """Indices (int64, ascending) of the samples a step keeps out of training and makes its
    choices on: a seeded quarter of the groups (``groups``: one label per sample, e.g. the
    same label for an image and its flipped copy; None: every sample its own group), all
    samples of a chosen group together.  None with fewer than 4 groups.  The same for every
    step given the seed and groups, so samples held out of AdaQuant stay unseen by bias tuning
    run with the same seed and groups."""
    labels = list(range(n)) if groups is None else groups
    distinct = list(dict.fromkeys(labels))
    if len(distinct) < 4:
        return None
    pick = torch.randperm(len(distinct), generator=generator(seed, -1))[:len(distinct) // 4]
    chosen = {distinct[i] for i in pick.tolist()}
    return torch.tensor([i for i, label in enumerate(labels) if label in chosen],
                        dtype=torch.int64)


def training_samples(n: int, held_out: torch.Tensor | None) -> torch.Tensor:
    """Indices (int64) of the samples not in ``held_out``."""
    keep = torch.ones(n, dtype=torch.bool)
    if held_out is not None:
        keep[held_out] = False
    return torch.nonzero(keep).reshape(-1)


def generator(seed: int, stream: int) -> torch.Generator:
    """An independent, reproducible random stream number ``stream`` (>= -1) of ``seed``."""
    state = np.random.SeedSequence([seed, stream + 1]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
