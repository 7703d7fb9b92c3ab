"""Solver accuracy: error against NFE for every sampler on exact-score Gaussian mixtures (issue 5).

Problems: the nine Gaussians (reference text 004; 2-D, component std 0.25) and a 16-D anisotropic
mixture (``anisotropic_mixture(16)``: 4 components, covariance eigenvalues 0.05..1), each under
the processes ``vp``, ``subvp``, ``ve``, ``ddpm`` and ``vdm`` (its fixed linear schedule), with the exact score in float64 and the
exact ``p_{t_max}`` as the prior (so every error is the sampler's own).

Metrics (nats):

* ``gap``: the mean log-density gap ``E_p[log p] - mean(log p(samples))`` under the mixture
  ``p`` (:func:`sdeflow.metrics.log_density_gap`), ``E_p[log p]`` from 400,000 reference draws.
  Positive: the samples spread too much (or sit between modes); negative: they collapse onto
  the modes. Its noise floor is ``gap_se = sd(log p) / sqrt(n)``.
* ``paired``: for deterministic samplers, the same gap measured against the probability-flow
  ODE solved by dopri5 (``rtol = atol = 1e-6``) from the same initial noise: the solver's own
  bias, resolved far below the noise floor (``paired_se`` ~ 0.001).

Samplers and how an NFE budget ``B`` maps to their options (the NFE actually used is recorded):

* ``dpm_solver`` 2M (log-SNR steps), 3M (``order3_rule`` ``taylor`` and ``authors_code``), and
  2M on time-uniform steps with and without the lower-order final step: ``steps = B``;
* ``ddim`` (eta 0 and 1): ``steps = B``;
* ``heun`` (EDM, rho = 7): ``steps = B // 2`` (2 evaluations a step; one less with a last step to
  sigma = 0 on VE);
* ``pc``: reverse diffusion + Langevin (snr 0.16): ``steps = (B - 1) // 2``; Euler-Maruyama alone:
  ``steps = B - 1``; both with the final denoising evaluation;
* ``sde`` euler: ``steps = B - 1`` plus denoising; ``ode``: rk4 with ``steps = B // 4``;
* ``ancestral``: ``steps = B - 1`` plus DDPM's noiseless last step;
* ``unipc`` (orders 2 and 3, log-SNR steps): ``steps = B``;
* ``langevin`` (annealed): ``num_scales = B // 5`` levels of 5 steps (+1 denoising) and its
  default step (``0.2 sigma_i^2``), ending where ``sigma_t / alpha_t = 0.01`` (NCSN's
  ``sigma_min``; VE at ``t = 0.041``, sub-VP at ``t = 0.027``), and, where that is not ``t_min``
  (sub-VP, VDM), also ending at ``t_min`` ("to t_min": NCSN's fixed step 2e-5 diverged there).

Usage::

    python benchmarks/solver_accuracy.py --quick --out results/   # 4,000 samples, NFE 10/20/50
    python benchmarks/solver_accuracy.py --out results/           # 8,000 samples, NFE 10/20/50/100

writes ``solver_accuracy.csv`` (one row per run) and ``solver_accuracy.md`` (tables).
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

import sdeflow
from sdeflow import ForwardProcess, GaussianMixture, ScoreModel
from sdeflow.datasets import anisotropic_mixture, nine_gaussians
from sdeflow.integrators.schedules import scaled_sigma, t_from_scaled_sigma

PROCESSES = ("vp", "subvp", "ve", "ddpm", "vdm")
#: process options: VDM with its fixed linear schedule (gamma from -10 to 20)
PROCESS_OPTIONS: dict[str, dict[str, Any]] = {"vdm": {"schedule": "linear"}}
DATASETS: dict[str, Callable[[], GaussianMixture]] = {
    "nine_gaussians": lambda: nine_gaussians(dtype=torch.float64),
    "aniso16": lambda: anisotropic_mixture(16, dtype=torch.float64),
}


@dataclass(frozen=True)
class Config:
    """One sampler configuration: its label, sampler name and options for an NFE budget."""

    label: str
    sampler: str
    options: Callable[[int, ForwardProcess], dict[str, Any] | None]  # (budget, process) -> options; None: skip
    deterministic: bool


def _heun_steps(budget: int, process: ForwardProcess) -> int:
    """EDM steps within the budget: 2 evaluations a step, one less when the last goes to sigma = 0."""
    zero_end = float(scaled_sigma(process, torch.tensor([float(process.t_min)]))[0]) == 0.0
    return (budget + 1) // 2 if zero_end else budget // 2


def _langevin_t_end(process: ForwardProcess) -> float | None:
    """Where ``sigma_t / alpha_t = 0.01`` (NCSN's ``sigma_min``), if ``t_min`` lies below it."""
    if float(scaled_sigma(process, torch.tensor([float(process.t_min)]))[0]) >= 0.01:
        return None
    return float(t_from_scaled_sigma(process, torch.tensor([0.01]))[0])


CONFIGS: list[Config] = [
    Config("dpm_solver 2M logSNR", "dpm_solver", lambda b, p: dict(steps=b), True),
    Config("dpm_solver 3M logSNR", "dpm_solver", lambda b, p: dict(steps=b, order=3), True),
    Config("dpm_solver 3M authors_code", "dpm_solver", lambda b, p: dict(steps=b, order=3, order3_rule="authors_code"),
           True),
    Config("unipc-2 logSNR", "unipc", lambda b, p: dict(steps=b), True),
    Config("unipc-3 logSNR", "unipc", lambda b, p: dict(steps=b, order=3), True),
    Config("dpm_solver 2M time_uniform", "dpm_solver", lambda b, p: dict(steps=b, schedule="time_uniform"), True),
    Config("dpm_solver 2M time_uniform, no LOF", "dpm_solver",
           lambda b, p: dict(steps=b, schedule="time_uniform", lower_order_final=False), True),
    Config("ddim eta=0", "ddim", lambda b, p: dict(steps=b), True),
    Config("ddim eta=1", "ddim", lambda b, p: dict(steps=b, eta=1.0), False),
    Config("heun (EDM)", "heun", lambda b, p: dict(steps=_heun_steps(b, p)), True),
    Config("pc rd+langevin", "pc", lambda b, p: dict(steps=(b - 1) // 2, schedule="time_uniform"), False),
    Config("pc euler_maruyama", "pc", lambda b, p: dict(steps=b - 1, predictor="euler_maruyama", corrector="none",
                                                          schedule="time_uniform"), False),
    Config("sde euler", "sde", lambda b, p: dict(steps=b - 1), False),
    Config("ode rk4", "ode", lambda b, p: dict(method="rk4", steps=b // 4) if b >= 8 else None, True),
    Config("ancestral", "ancestral", lambda b, p: dict(steps=b - 1), False),
    Config("langevin (annealed)", "langevin",
           lambda b, p: dict(num_scales=b // 5, n_steps_each=5, t_end=_langevin_t_end(p)) if b >= 10 else None,
           False),
    Config("langevin (annealed) to t_min", "langevin",
           lambda b, p: (dict(num_scales=b // 5, n_steps_each=5) if _langevin_t_end(p) is not None else None)
           if b >= 10 and float(scaled_sigma(p, torch.tensor([float(p.t_min)]))[0]) > 0 else None, False),
]


def with_fixed_prior(sm: ScoreModel, x_T: torch.Tensor) -> ScoreModel:
    """Every run of ``sm`` starts from the rows of ``x_T`` (deterministic samplers pair up exactly)."""

    def prior_sample(shape, generator=None, device=None, dtype=None):  # type: ignore[no-untyped-def]
        return x_T[: shape[0]].reshape(tuple(shape)).clone()

    sm.prior_sample = prior_sample  # type: ignore[method-assign]
    return sm


def run(n: int, budgets: list[int], datasets: list[str], processes: list[str], seed: int,
        log: Callable[[str], None]) -> list[dict[str, Any]]:
    """All runs; one dict per (dataset, process, config, budget)."""
    rows: list[dict[str, Any]] = []
    for ds in datasets:
        gmm = DATASETS[ds]()
        ref_lp = gmm.log_prob(gmm.sample(400_000, torch.Generator().manual_seed(12345)))
        e_lp, e_se = float(ref_lp.mean()), float(ref_lp.std() / math.sqrt(ref_lp.numel()))
        for pn in processes:
            process = sdeflow.create_process(pn, **PROCESS_OPTIONS.get(pn, {}))
            x_T = gmm.score_model(process).prior_sample((n, gmm.dim), torch.Generator().manual_seed(seed))
            sm = with_fixed_prior(gmm.score_model(process), x_T)
            t0 = time.perf_counter()
            ref = sdeflow.create_sampler("ode", method="dopri5", rtol=1e-6, atol=1e-6).sample(sm, (n, gmm.dim))
            lp_pf = gmm.log_prob(ref.samples)
            rows.append(dict(dataset=ds, process=pn, sampler="ode dopri5 (reference)", options="rtol=atol=1e-6",
                             budget="", nfe=ref.nfe, gap=e_lp - float(lp_pf.mean()),
                             gap_se=math.hypot(float(lp_pf.std()) / math.sqrt(n), e_se), paired=0.0, paired_se=0.0,
                             seconds=time.perf_counter() - t0))
            log(f"{ds}/{pn}: reference {ref.nfe} NFE, gap {rows[-1]['gap']:+.4f}")
            for cfg in CONFIGS:
                for b in budgets:
                    opts = cfg.options(b, process)
                    if opts is None:
                        continue
                    t0 = time.perf_counter()
                    res = sdeflow.create_sampler(cfg.sampler, **opts).sample(
                        sm, (n, gmm.dim), torch.Generator().manual_seed(seed + 1))
                    sec = time.perf_counter() - t0
                    lp = gmm.log_prob(res.samples)
                    ok = bool(torch.isfinite(lp).all())
                    gap = e_lp - float(lp.mean()) if ok else math.inf
                    row = dict(dataset=ds, process=pn, sampler=cfg.label,
                               options=" ".join(f"{k}={v}" for k, v in opts.items()), budget=b, nfe=res.nfe,
                               gap=gap, gap_se=math.hypot(float(lp.std()) / math.sqrt(n), e_se) if ok else math.inf,
                               paired="", paired_se="", seconds=sec)
                    if cfg.deterministic and ok:
                        diff = lp_pf - lp
                        row["paired"], row["paired_se"] = float(diff.mean()), float(diff.std() / math.sqrt(n))
                    rows.append(row)
                log(f"  {cfg.label}: " + "  ".join(f"{r['nfe']}:{r['gap']:+.3f}" for r in rows
                                                   if r["sampler"] == cfg.label and r["dataset"] == ds
                                                   and r["process"] == pn))
    return rows


def markdown(rows: list[dict[str, Any]], budgets: list[int], datasets: list[str], processes: list[str], n: int) -> str:
    """Tables: per data set, the unpaired gap and the paired bias, cells ``vp / subvp / ve / ddpm``."""
    out = [f"Samples: {n} per run; cells: {' / '.join(processes)}; NFE as budgeted (heun, pc, ode rk4 and "
           "langevin use at most the budget; see the CSV for each run's exact NFE).", ""]

    def cell(ds: str, label: str, b: int, key: str) -> str:
        vals = []
        for pn in processes:
            r = next((r for r in rows if r["dataset"] == ds and r["process"] == pn and r["sampler"] == label
                      and r["budget"] == b), None)
            v = None if r is None else r[key]
            if v in (None, ""):
                vals.append("-")
            else:
                vals.append("inf" if not math.isfinite(v) else (f"{v:+.3f}" if abs(v) < 100 else f"{v:+.1e}"))
        return " / ".join(vals)

    for ds in datasets:
        floor = [r["gap_se"] for r in rows if r["dataset"] == ds and r["sampler"].startswith("ode dopri5")]
        refs = " / ".join(f"{r['gap']:+.3f}" for r in rows if r["dataset"] == ds
                          and r["sampler"].startswith("ode dopri5"))
        out += [f"### {ds}: mean log-density gap (nats; noise floor, one standard error: "
                f"{max(floor):.3f}; the probability-flow ODE itself, dopri5 1e-6: {refs})", ""]
        out += ["| sampler | " + " | ".join(f"NFE {b}" for b in budgets) + " |",
                "|---|" + "---|" * len(budgets)]
        for cfg in CONFIGS:
            out.append(f"| {cfg.label} | " + " | ".join(cell(ds, cfg.label, b, "gap") for b in budgets) + " |")
        out += ["", f"### {ds}: paired bias of the deterministic samplers (nats; against the ODE from the same "
                    "noise)", ""]
        out += ["| sampler | " + " | ".join(f"NFE {b}" for b in budgets) + " |",
                "|---|" + "---|" * len(budgets)]
        for cfg in CONFIGS:
            if cfg.deterministic:
                out.append(f"| {cfg.label} | " + " | ".join(cell(ds, cfg.label, b, "paired") for b in budgets) + " |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="4,000 samples, NFE 10/20/50")
    ap.add_argument("--samples", type=int, default=None)
    ap.add_argument("--nfe", type=int, nargs="+", default=None)
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    ap.add_argument("--processes", nargs="+", default=list(PROCESSES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="directory for solver_accuracy.csv and .md")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    n = args.samples or (4000 if args.quick else 8000)
    budgets = args.nfe or ([10, 20, 50] if args.quick else [10, 20, 50, 100])
    t0 = time.perf_counter()
    rows = run(n, budgets, args.datasets, args.processes, args.seed, lambda s: print(s, flush=True))
    md = markdown(rows, budgets, args.datasets, args.processes, n)
    print(md)
    print(f"total {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        with open(args.out / "solver_accuracy.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        (args.out / "solver_accuracy.md").write_text(md + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    raise SystemExit(main())
