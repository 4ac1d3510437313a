"""Does this CPU sum u8 x s8 products in saturating int16 pairs (x86 AVX2 without VNNI)?

``vpmaddubsw`` adds two adjacent u8 x s8 products into int16 with saturation; CPUs with VNNI
(``vpdpbusd``) accumulate exactly in int32. Engines built on these instructions (ONNX
Runtime, PyTorch fbgemm and onednn) inherit the effect, as measured against the engines
(tests/test_engine_ort.py, tests/test_engine_pytorch.py). Instruction semantics: Intel's
instruction set reference.
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path


def cpu_flags() -> set[str]:
    """The x86 feature flags of /proc/cpuinfo (empty on other machines or without it)."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "i386"):
        return set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


@functools.lru_cache(maxsize=1)
def cpu_saturates_int16_pairs() -> bool:
    """True on x86 with AVX2 and no VNNI flag (avx512_vnni, avx_vnni, ...)."""
    flags = cpu_flags()
    return "avx2" in flags and not any("vnni" in f for f in flags)
