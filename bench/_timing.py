"""Wall-clock timing shared by the bench scripts (run as `python bench/<script>.py`)."""
from __future__ import annotations

import statistics
import time


def timed(fn, repeat: int) -> tuple[float, float]:
    """(min, median) wall time in seconds of ``repeat`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)
