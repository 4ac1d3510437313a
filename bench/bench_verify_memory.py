"""Peak memory of `hwsim verify --model mobilenet_v2` against the number of images verified.

Verification streams its inputs in batches (hwsim.verify.DEFAULT_BATCH) with running per-layer
statistics, so peak memory should not grow with the number of images. Each figure is the peak
resident set size (ru_maxrss) of one fresh `hwsim verify` process, read with os.wait4; the
inputs are a .npy of 500 ImageNet-normalized images (the zoo's 50 evaluation images, each also
shifted by 1..9 pixels), written once to a temporary folder and read a batch at a time by hwsim.

    .venv/bin/python bench/bench_verify_memory.py [--images 1 10 50 500]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_inputs(path: Path, count: int) -> None:
    from hwsim.zoo import sample_images

    evals = sample_images("eval").numpy()
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32,
                                    shape=(count, *evals.shape[1:]))
    for i in range(count):
        shift = i // len(evals)
        out[i] = np.roll(evals[i % len(evals)], shift, axis=2)
    out.flush()
    del out


def peak_rss_mb(argv: list[str]) -> tuple[float, float]:
    """(peak RSS in MB, wall seconds) of one child process running `argv`."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr.read().decode()[-2000:]}")
    return usage.ru_maxrss / 1024, time.perf_counter() - start  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, nargs="+", default=[1, 10, 50, 500])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "images.npy"
        write_inputs(inputs, max(args.images))
        print(f"hwsim verify --model mobilenet_v2 --inputs <{max(args.images)} images>.npy "
              f"--images N --quiet  (peak RSS of the process)")
        rows = []
        for n in args.images:
            rss, seconds = peak_rss_mb([sys.executable, "-m", "hwsim", "verify", "--model",
                                        "mobilenet_v2", "--inputs", str(inputs), "--images",
                                        str(n), "--quiet"])
            rows.append((n, rss, seconds))
            print(f"  N = {n:>4}: peak RSS {rss:7.0f} MB   {seconds:6.1f} s")
        rss, seconds = peak_rss_mb([sys.executable, "-m", "hwsim", "verify", "--model",
                                    "mobilenet_v2", "--images", "50", "--quiet"])
        print(f"hwsim verify --model mobilenet_v2 --images 50 --quiet (the zoo's images): peak "
              f"RSS {rss:.0f} MB   {seconds:.1f} s")
        base = rows[0][1]
        print("ratios to N = {}: {}".format(
            rows[0][0], ", ".join(f"N = {n}: {rss / base:.2f}x" for n, rss, _ in rows[1:])))


if __name__ == "__main__":
    main()
