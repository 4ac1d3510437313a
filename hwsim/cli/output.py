"""Printing and saving CLI results: tables to stdout, `--csv` and `--json` files."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


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
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


def save_results(df: pd.DataFrame, summary: dict[str, Any], *, csv_path: str | None,
                 json_path: str | None) -> None:
    """Write the per-layer table as CSV and/or the table plus summary as JSON."""
    if csv_path:
        Path(csv_path).parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(csv_path, index=False)
        print(f"wrote {csv_path}")
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        doc = {"summary": _jsonable(summary), "per_layer": _jsonable(df.to_dict(orient="records"))}
        Path(json_path).write_text(json.dumps(doc, indent=1))
        print(f"wrote {json_path}")
