"""Solver accuracy on exact-score Gaussian mixtures (issue 5), now a thin wrapper of ``sdeflow bench``.

Runs issue 5's grid through :mod:`sdeflow.bench`: the nine Gaussians and the 16-D anisotropic
mixture under ``vp``, ``subvp``, ``ve`` and ``ddpm``, every sdeflow sampler configuration
(:data:`sdeflow.bench.configs.BUILTIN_CONFIGS`, with its budget mapping), the mean log-density gap
``logp_gap`` (and the suite's other metrics with ``--all-metrics``) and the pathwise error against
the dopri8 reference from the same noise; no diffusers peers, no overhead timing. For the
whole suite use ``sdeflow bench`` (``docs/bench.md``).

Usage::

    python benchmarks/solver_accuracy.py --quick --out results/   # 4,000 samples, NFE 10/20/50
    python benchmarks/solver_accuracy.py --out results/           # 8,000 samples, NFE 10/20/50/100

writes ``bench.csv``, ``bench.json``, ``summary.md`` (tables with cells ``vp / subvp / ve / ddpm``),
``table.txt`` and the error-vs-NFE plots.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

import sdeflow.bench as bench


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="4,000 samples, NFE 10/20/50")
    ap.add_argument("--samples", type=int, default=None)
    ap.add_argument("--nfe", type=int, nargs="+", default=None)
    ap.add_argument("--datasets", nargs="+", default=["nine_gaussians", "aniso16"])
    ap.add_argument("--processes", nargs="+", default=["vp", "subvp", "ve", "ddpm"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--all-metrics", action="store_true", help="also sw2, mmd, mean_err, cov_err")
    ap.add_argument("--out", type=Path, default=Path("bench_out/solver_accuracy"))
    args = ap.parse_args(argv)
    spec = bench.BenchSpec(
        targets=args.datasets, processes=args.processes, samplers=list(bench.spec.ALL_SAMPLERS),
        nfe=args.nfe or ([10, 20, 50] if args.quick else [10, 20, 50, 100]),
        samples=args.samples or (4000 if args.quick else 8000), paths=256, seed=args.seed,
        metrics=list(bench.spec.DEFAULT_METRICS) if args.all_metrics else ["logp_gap"],
        overhead=False, threads=args.threads, preset="solver_accuracy")
    result = bench.run_bench(spec, echo=print)
    bench.write_outputs(result, args.out)
    print(bench.summary_markdown(result))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    raise SystemExit(main())
