"""Pareto front of finished trials and its pairwise plot.

A point dominates another when it is no worse in every objective and strictly better in at least one
(objectives are minimised; a ``"max"`` direction is negated first). Equal points do not dominate each
other, so duplicates on the front are all kept.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from pathlib import Path


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """True when ``a`` is no worse than ``b`` everywhere and better somewhere (minimisation)."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(x < y for x, y in zip(a, b, strict=True))


def pareto_front(points: Sequence[Sequence[float]], directions: Sequence[str] | None = None) -> list[int]:
    """Indices (ascending) of the non-dominated ``points``; ``directions`` are "min" (default) or "max"."""
    if not points:
        return []
    width = len(points[0])
    directions = list(directions) if directions is not None else ["min"] * width
    if len(directions) != width:
        raise ValueError(f"{len(directions)} directions for {width} objectives")
    signs = []
    for direction in directions:
        if direction not in ("min", "max"):
            raise ValueError(f"direction must be 'min' or 'max', got {direction!r}")
        signs.append(1.0 if direction == "min" else -1.0)
    oriented = []
    for index, point in enumerate(points):
        if len(point) != width:
            raise ValueError(f"point {index} has {len(point)} values, expected {width}")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in point):
            raise ValueError(f"point {index} has a missing or non-finite value: {list(point)}")
        oriented.append([s * float(v) for s, v in zip(signs, point, strict=True)])
    return [i for i, p in enumerate(oriented)
            if not any(dominates(q, p) for j, q in enumerate(oriented) if j != i)]


def plot_front(path: Path, objectives: Sequence[str], points: Sequence[Sequence[float]], front: Sequence[int],
               labels: Sequence[str], title: str) -> None:
    """Pairwise scatter of every objective pair: all finished trials, the front highlighted and labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = list(itertools.combinations(range(len(objectives)), 2)) or [(0, 0)]
    columns = min(3, len(pairs))
    rows = math.ceil(len(pairs) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.3 * columns, 3.6 * rows), squeeze=False)
    on_front = set(front)
    for ax, (i, j) in zip(axes.flat, pairs, strict=False):
        rest = [p for k, p in enumerate(points) if k not in on_front]
        best = [points[k] for k in front]
        if rest:
            ax.scatter([p[i] for p in rest], [p[j] for p in rest], s=22, c="#b8b8b8", label="dominated")
        if best:
            ax.scatter([p[i] for p in best], [p[j] for p in best], s=40, c="#d1495b", edgecolors="black",
                       linewidths=0.5, label="Pareto front", zorder=3)
            for k in front:
                ax.annotate(labels[k], (points[k][i], points[k][j]), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")
        for axis, index in ((ax.xaxis, i), (ax.yaxis, j)):
            values = [p[index] for p in points if p[index] > 0]
            if values and max(values) / min(values) > 100:
                (ax.set_xscale if axis is ax.xaxis else ax.set_yscale)("log")
        ax.set_xlabel(objectives[i])
        ax.set_ylabel(objectives[j])
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(pairs):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
