"""Printing and saving CLI results: tables to stdout, `--csv` and `--json` files.

Files are checked before any work starts (`check_output_path`) and written before anything is
printed (`save_results`), so a closed pipe on stdout (`hwsim cost ... | head`) never loses them.
Every failure to write is one HwsimError naming the flag and the path.
"""
from __future__ import annotations

import errno
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hwsim.errors import HwsimError


def print_table(df: pd.DataFrame, columns: list[str] | None = None) -> None:
    cols = [c for c in (columns or list(df.columns)) if c in df.columns]
    print(df[cols].to_string(index=False, float_format=_float))


def _float(v: float) -> str:
    if v == 0 or not math.isfinite(v):
        return str(v)
    return f"{v:.4g}" if abs(v) < 1e6 else f"{v:.4e}"


def print_summary(title: str, summary: dict[str, Any]) -> None:
    print(f"\n{title}")
    width = max((len(k) for k in summary), default=0)
    for k, v in summary.items():
        print(f"  {k:<{width}}  {_float(v) if isinstance(v, float) else v}")


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


def describe_os_error(exc: OSError) -> str:
    """An OSError in words, without the errno number and the repeated path."""
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.EISDIR:
        return "it is a directory"
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        return "a part of the path is a file, not a directory"
    return exc.strerror or str(exc)


def check_output_path(flag: str, path: str | os.PathLike | None) -> None:
    """Fail early (before minutes of work) when `path` (the value of `flag`) cannot be written:
    an empty path, a directory, a parent that is a file, or a directory without write
    permission. Missing parent directories are fine: they are created when writing."""
    if path is None:
        return
    if not str(path).strip():
        raise HwsimError(f"{flag}: empty path; expected a file path")
    p = Path(path)
    if p.is_dir():
        raise HwsimError(f"{flag} {path}: is a directory; expected a file path "
                         f"(e.g. {p / ('results' + _SUFFIX.get(flag, ''))})")
    parent = p.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise HwsimError(f"{flag} {path}: cannot write: {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise HwsimError(f"{flag} {path}: cannot write: permission denied")


_SUFFIX = {"--csv": ".csv", "--json": ".json"}


def write_text(flag: str, path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` (creating parent directories); an OSError becomes one HwsimError
    naming `flag` and the path."""
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
    except OSError as exc:
        raise HwsimError(f"{flag} {path}: cannot write: {describe_os_error(exc)}") from None


def save_results(df: pd.DataFrame, summary: dict[str, Any], *, csv_path: str | None,
                 json_path: str | None) -> list[str]:
    """Write the per-layer table as CSV (`--csv`) and/or the table plus summary as JSON
    (`--json`); print nothing. Returns the paths written."""
    written = []
    if csv_path:
        write_text("--csv", csv_path, df.to_csv(index=False))
        written.append(str(csv_path))
    if json_path:
        doc = {"summary": _jsonable(summary), "per_layer": _jsonable(df.to_dict(orient="records"))}
        write_text("--json", json_path, json.dumps(doc, indent=1))
        written.append(str(json_path))
    return written


def print_written(paths: list[str]) -> None:
    for path in paths:
        print(f"wrote {path}")
