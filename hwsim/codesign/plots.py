"""Plots of allocations (matplotlib, the optional ``plot`` extra): where people would rather look
than read.

- `plot_pareto`: plans as points of cost (latency or energy) against fidelity (e.g. top-1
  agreement with float, or SQNR), the non-dominated ones joined: the trade-off a budget sweep
  buys.
- `plot_layer_bits`: weight and activation bits per layer of one plan, coloured by the unit
  that runs each layer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from hwsim.errors import HwsimError


def _pyplot():
    try:
        import matplotlib
    except ImportError:  # pragma: no cover - exercised only without the extra
        raise HwsimError("plots need matplotlib: pip install 'hwsim[plot]'") from None
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: str | Path) -> Path:
    """Write `fig` to `path` (format by suffix, parents created) and close it."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def pareto_front(costs: Sequence[float], fidelities: Sequence[float]) -> list[int]:
    """Indices of the points no other point beats on both cost (lower) and fidelity (higher),
    sorted by cost."""
    order = sorted(range(len(costs)), key=lambda i: (costs[i], -fidelities[i]))
    front, best = [], float("-inf")
    for i in order:
        if fidelities[i] > best:
            front.append(i)
            best = fidelities[i]
    return front


def plot_pareto(labels: Sequence[str], costs: Sequence[float], fidelities: Sequence[float],
                path: str | Path, *, cost_label: str = "latency (ms)",
                fidelity_label: str = "top-1 agreement with float") -> Path:
    """Scatter of the plans (one label each) with their Pareto front; writes `path` (PNG/SVG/PDF
    by suffix) and returns it."""
    if not (len(labels) == len(costs) == len(fidelities)) or not labels:
        raise HwsimError(f"plot_pareto: expected as many labels, costs and fidelities (at least "
                         f"one), got {len(labels)}, {len(costs)}, {len(fidelities)}")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.scatter(costs, fidelities, color="tab:blue", zorder=3)
    for label, x, y in zip(labels, costs, fidelities):
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    front = pareto_front(costs, fidelities)
    ax.plot([costs[i] for i in front], [fidelities[i] for i in front], color="tab:orange",
            zorder=2, label="Pareto front")
    ax.set_xlabel(cost_label)
    ax.set_ylabel(fidelity_label)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _save(plt, fig, path)


def plot_layer_bits(layer_names: Sequence[str], weight_bits: Sequence[int],
                    act_bits: Sequence[int], path: str | Path, *,
                    units: Sequence[str] | None = None, title: str = "") -> Path:
    """Bars of weight bits (and activation bits as markers) per layer, bars coloured by unit;
    writes `path` and returns it."""
    n = len(layer_names)
    if not n or len(weight_bits) != n or len(act_bits) != n or (units is not None
                                                                 and len(units) != n):
        raise HwsimError(f"plot_layer_bits: expected one weight width, activation width (and "
                         f"unit) per layer for {n} layers")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6.4, 0.16 * n + 2), 3.6))
    names = list(dict.fromkeys(units)) if units is not None else [""]
    palette = plt.get_cmap("tab10")
    colors = [palette(names.index(u) % 10) for u in units] if units is not None else "tab:blue"
    ax.bar(range(n), weight_bits, color=colors, label="weight bits")
    ax.scatter(range(n), act_bits, color="black", marker="_", s=80, zorder=3,
               label="activation bits")
    if units is not None:
        for i, unit in enumerate(names):
            ax.bar([0], [0], color=palette(i % 10), label=f"on {unit}")
    ax.set_xticks(range(n))
    ax.set_xticklabels(layer_names, rotation=90, fontsize=6)
    ax.set_ylabel("bits")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    return _save(plt, fig, path)
