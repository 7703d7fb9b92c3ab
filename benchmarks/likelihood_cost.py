"""Cost and accuracy of ``sdeflow.log_likelihood`` vs solver tolerance, exact vs Hutchinson (issue 5).

Problem: by default the nine-Gaussians mixture (``sdeflow.data.datasets.nine_gaussians``) with its exact score
and exact prior ``p_T`` (``GaussianMixture.score_model``), ``--n`` samples drawn from the mixture,
float64 by default (``--target aniso:16`` uses a 16-D anisotropic mixture instead, where the
exact divergence costs 16 vector-Jacobian products per evaluation). With the exact score and prior, ``log_likelihood`` should return the
closed-form ``log p_{t_start}(x)`` (``t_start = t_min`` of the process), so the error columns
measure the solver (and, for Hutchinson, the estimator's noise).

For each process and each ``rtol = atol`` in ``--tols`` (dopri5) it runs the exact divergence
(2 vector-Jacobian products per evaluation, vmapped) and the Hutchinson estimator with
Rademacher probes (``--probes``, each a separate run), and reports:

* ``NFE``: score evaluations (one per vector-field evaluation), ``steps``: accepted steps,
* ``time``: median wall time of ``--repeats`` runs (seconds, after one warm-up run),
* ``max|err|`` and ``rms err``: per-sample error against the closed form ``log p_{t_start}(x)``
  (nats),
* ``mean se``: the mean reported standard error (Hutchinson with >= 2 probes).

Usage::

    python benchmarks/likelihood_cost.py                       # vp, all tolerances
    python benchmarks/likelihood_cost.py --processes vp ve --out DIR   # also DIR/likelihood_cost.{json,md}
    python benchmarks/likelihood_cost.py --quick               # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from typing import Any

import torch

import sdeflow
from sdeflow.data.datasets import anisotropic_mixture, nine_gaussians


def run_case(sm: sdeflow.ScoreModel, x: torch.Tensor, truth: torch.Tensor, tol: float, estimator: str,
             probes: int, repeats: int, seed: int) -> dict[str, Any]:
    """Time ``repeats`` runs of one configuration and measure its error against ``truth``."""
    kw: dict[str, Any] = dict(rtol=tol, atol=tol, estimator=estimator)
    if estimator == "hutchinson":
        kw.update(n_probes=probes, probe="rademacher")

    def once() -> sdeflow.LikelihoodResult:
        return sdeflow.log_likelihood(sm, x, generator=torch.Generator().manual_seed(seed), **kw)

    once()  # warm-up
    times, res = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = once()
        times.append(time.perf_counter() - t0)
    assert res is not None
    err = res.log_prob - truth
    return {
        "estimator": estimator if estimator == "exact" else f"hutchinson x{probes}",
        "tol": tol, "nfe": res.nfe, "steps": res.steps, "time_s": statistics.median(times),
        "max_abs_err": float(err.abs().max()), "rms_err": float(err.pow(2).mean().sqrt()),
        "mean_stderr": None if res.stderr is None else float(res.stderr.mean()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", default="nine",
                    help="'nine' (nine Gaussians, 2-D) or 'aniso:D' (anisotropic_mixture(D), for the cost in D)")
    ap.add_argument("--processes", nargs="+", default=["vp"])
    ap.add_argument("--tols", nargs="+", type=float, default=[1e-3, 1e-4, 1e-5, 1e-6, 1e-7])
    ap.add_argument("--probes", nargs="+", type=int, default=[1, 16])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    ap.add_argument("--quick", action="store_true", help="n=100, tolerances 1e-3 and 1e-5, 1 repeat")
    ap.add_argument("--out", default=None, help="directory for likelihood_cost.json / .md")
    args = ap.parse_args()
    if args.quick:
        args.n, args.tols, args.repeats = 100, [1e-3, 1e-5], 1
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)

    if args.target == "nine":
        gm = nine_gaussians(dtype=torch.float64)
    elif args.target.startswith("aniso:"):
        gm = anisotropic_mixture(int(args.target.split(":", 1)[1]), dtype=torch.float64)
    else:
        ap.error(f"unknown --target {args.target!r}; use 'nine' or 'aniso:D'")
    x64 = gm.sample(args.n, torch.Generator().manual_seed(0))
    rows: list[dict[str, Any]] = []
    for name in args.processes:
        proc = sdeflow.create_process(name)
        sm = gm.score_model(proc).to(dtype)
        x = x64.to(dtype)
        truth = gm.score_model(proc).to(torch.float64).marginal_log_prob(x64, float(proc.t_min)).to(dtype)
        for tol in args.tols:
            for est, probes in [("exact", 0)] + [("hutchinson", k) for k in args.probes]:
                row = {"process": name, **run_case(sm, x, truth, tol, est, probes, args.repeats, seed=1)}
                rows.append(row)
                se = "" if row["mean_stderr"] is None else f"{row['mean_stderr']:.2e}"
                print(f"{name:6s} {row['estimator']:15s} tol={tol:.0e} nfe={row['nfe']:4d} steps={row['steps']:3d} "
                      f"time={row['time_s']:.3f}s max|err|={row['max_abs_err']:.2e} rms={row['rms_err']:.2e} se={se}",
                      flush=True)

    header = (f"target {args.target}, n={args.n}, {args.dtype}\n\n"
              "| process | estimator | rtol=atol | NFE | steps | time (s) | max abs err | rms err | mean se |\n"
              "|---|---|---|---|---|---|---|---|---|\n")
    lines = [f"| {r['process']} | {r['estimator']} | {r['tol']:.0e} | {r['nfe']} | {r['steps']} | {r['time_s']:.3f} | "
             f"{r['max_abs_err']:.1e} | {r['rms_err']:.1e} | "
             f"{'' if r['mean_stderr'] is None else format(r['mean_stderr'], '.1e')} |" for r in rows]
    table = header + "\n".join(lines) + "\n"
    meta = {"target": args.target, "n": args.n, "dtype": args.dtype, "threads": args.threads, "repeats": args.repeats,
            "torch": torch.__version__, "machine": platform.machine(), "processor": platform.processor()}
    print()
    print(table)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "likelihood_cost.json"), "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=2)
        with open(os.path.join(args.out, "likelihood_cost.md"), "w") as f:
            f.write(table)


if __name__ == "__main__":
    main()
