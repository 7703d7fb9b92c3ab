"""Why DPM-Solver++ 3M stalls on the 1-D target under VP (docs/bench_results.md, caveats).

Pathwise RMS error of ``dpm_solver`` order 3 against dopri8 (rtol = atol = 1e-12) from the same
prior draws, exact score of N(5, 2^2) under ``vp``, on three grids with the same end levels:

* ``logSNR_edm``: the default levels (uniform in log-SNR inside EDM's ``[0.002, 80]``, four times
  sparser outside, so VP's first step, from ``sigma/alpha = 152``, is four times wider);
* ``uniform``: uniform in log-SNR over the whole range (the ``logSNR`` schedule);
* ``split``: the default levels for ``K - 3`` steps with their first interval split into four.

3M's first step is first order (DDIM), a local error ``O(H^2)`` that stays in the global error;
``split`` removes the stall, which locates it in that first wide step.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/dpm3m_start.py [--n 200]``
"""

from __future__ import annotations

import argparse
import math

import torch

import sdeflow
from sdeflow.data.datasets import gaussian_1d
from sdeflow.solvers import log_snr_levels, scaled_sigma


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="paths")
    ap.add_argument("--steps", type=int, nargs="+", default=[25, 50, 100, 200, 400])
    args = ap.parse_args()
    torch.set_num_threads(1)
    p = sdeflow.create_process("vp")
    model = gaussian_1d(dtype=torch.float64).score_model(p)

    def run(sampler: sdeflow.Sampler) -> torch.Tensor:
        return sampler.sample(model, (args.n, 1), torch.Generator().manual_seed(0)).samples

    ref = run(sdeflow.create_sampler("ode", method="dopri8", rtol=1e-12, atol=1e-12))
    top, bot = scaled_sigma(p, torch.tensor([float(p.t_max), float(p.t_min)], dtype=torch.float64)).tolist()
    print(f"VP levels sigma/alpha {top:.4g} .. {bot:.4g}; pathwise RMS error of dpm_solver 3M")
    print(f"{'NFE':>5} {'logSNR_edm':>10} {'uniform':>10} {'split':>10}")
    for k in args.steps:
        uniform = [math.exp(math.log(top) + (math.log(bot) - math.log(top)) * i / k) for i in range(k + 1)]
        lv = log_snr_levels(top, bot, k - 3)
        a, b = math.log(lv[0]), math.log(lv[1])
        split = [math.exp(a + (b - a) * i / 4) for i in range(4)] + lv[1:]
        errs = [float((run(sdeflow.create_sampler("dpm_solver", order=3, steps=k, schedule=s)) - ref).pow(2).mean().sqrt())
                for s in ("logSNR_edm", uniform, split)]
        print(f"{k:>5} " + " ".join(f"{e:>10.2e}" for e in errs))


if __name__ == "__main__":
    main()
