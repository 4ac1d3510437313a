"""Per-layer files (precision plans, mappings) name layers by exact name or ``fnmatch`` glob;
the first matching entry wins. Every entry must match some layer and win for at least one: a
misspelled or shadowed entry is an error, never silently ignored."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Sequence

from hwsim.errors import WorkloadError


def first_matches(patterns: Sequence[str], names: Sequence[str], source: str,
                  section: str = "layers") -> list[int | None]:
    """Per name, the index of the first pattern matching it (None: no pattern matches).

    Raises `WorkloadError` naming `source` and `section` for patterns that match no name, or
    whose every match is taken by an earlier pattern."""
    matched = [False] * len(patterns)
    applied = [False] * len(patterns)
    out: list[int | None] = []
    for name in names:
        hits = [i for i, pattern in enumerate(patterns) if fnmatchcase(name, pattern)]
        for i in hits:
            matched[i] = True
        if hits:
            applied[hits[0]] = True
        out.append(hits[0] if hits else None)
    unused = [p for p, hit in zip(patterns, matched) if not hit]
    if unused:
        shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
        raise WorkloadError(f"{source}: {section}: {unused} match no layer of the workload "
                            f"(its layers: {shown})")
    shadowed = [p for p, hit in zip(patterns, applied) if not hit]
    if shadowed:
        raise WorkloadError(f"{source}: {section}: {shadowed}: every layer they match is taken "
                            f"by an earlier entry (the first match wins); move them up or "
                            f"remove them")
    return out
