"""Empirical orders of convergence from pathwise / strong errors against NFE.

With error ``e(N) ~ C N^{-p}`` at ``N`` evaluations (``N`` proportional to the steps, so ``p`` is
the order in the step size), ``p`` is minus the least-squares slope of ``log e`` against
``log N`` over the budgets whose error lies above the reference's own error bound (below it the
error is not resolved). ``order_last`` is the slope between the two largest such budgets (the
asymptotic regime, where the fit over all budgets still mixes in pre-asymptotic ones).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np


def slope_order(nfe: Sequence[float], errors: Sequence[float]) -> float:
    """``-d log(error) / d log(NFE)``, least squares (the empirical order)."""
    x, y = np.log(np.asarray(nfe, dtype=float)), np.log(np.asarray(errors, dtype=float))
    return float(-np.polyfit(x, y, 1)[0])


def fit_orders(rows: list[dict[str, Any]], path_floors: dict[str, dict[str, float]],
               resolve_factor: float = 3.0) -> list[dict[str, Any]]:
    """One entry per (target, process, sampler) with pathwise or strong errors at two or more budgets.

    Args:
        rows: the run's cells.
        path_floors: ``{"target/process": {"ode": bound, "strong": bound}}``.
        resolve_factor: points with ``error <= resolve_factor x bound`` are left out.

    Returns:
        Dicts with ``target, process, sampler, family, kind, nominal`` (the sampler's stated order),
        ``order, order_last, points, nfe, errors, floor``.
    """
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("path_error") is None or r.get("status") != "ok":
            continue
        groups.setdefault((r["target"], r["process"], r["sampler"]), []).append(r)
    out = []
    for (tname, pname, label), rs in groups.items():
        rs = sorted(rs, key=lambda r: r["nfe"])
        kind = rs[0]["path_kind"]
        floors = path_floors.get(f"{tname}/{pname}", {})
        bound = max((v for k, v in floors.items() if k.startswith(kind)), default=0.0)
        pts = [(r["nfe"], r["path_error"]) for r in rs
               if math.isfinite(r["path_error"]) and r["path_error"] > resolve_factor * bound]
        # one point per NFE (budgets that map to the same NFE repeat it)
        pts = sorted({n: e for n, e in pts}.items())
        order = slope_order(*zip(*pts)) if len(pts) >= 2 else None
        last = slope_order(*zip(*pts[-2:])) if len(pts) >= 2 else None
        out.append(dict(target=tname, process=pname, sampler=label, family=rs[0]["family"], kind=kind,
                        nominal=rs[-1].get("nominal_order"),
                        order=order, order_last=last, points=len(pts), nfe=[r["nfe"] for r in rs],
                        errors=[r["path_error"] for r in rs], floor=bound))
    return out


def order_of(orders: list[dict[str, Any]], target: str, process: str, sampler: str) -> dict[str, Any] | None:
    """The entry of :func:`fit_orders` for one line, or ``None``."""
    return next((o for o in orders if (o["target"], o["process"], o["sampler"]) == (target, process, sampler)), None)
