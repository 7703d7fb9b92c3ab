"""Few-step accuracy of the log-SNR solvers on exact-score mixtures (issue 5's open point: 10 NFE).

Problems: the nine Gaussians and the 16-D anisotropic mixture of ``solver_accuracy.py``, under
``vp``, ``subvp``, ``ve``, ``ddpm`` and ``vdm`` with its fixed linear schedule (gamma from -10 to 20),
exact scores in float64, exact ``p_{t_max}`` as the prior. For every problem one set of 8,000
prior draws (seed 0) is shared by all runs; its first 2,000 are solved by dopri5 (rtol = atol =
1e-6) for the paired bias.

Metrics (nats): ``gap`` = ``E_p[log p] - mean log p(samples)`` over the 8,000 samples (``E_p`` from
400,000 draws; noise floor = its standard error), ``paired`` = the same against the dopri5 solution
from the same noise (2,000 samples; its noise ~0.001-0.005), ``mean_abs`` = mean ``|log p(x_ref) -
log p(x)|`` over those pairs (the per-sample error, which cannot cancel between over- and
under-dispersed regions as the mean can).

Parts:

* generic schedules (always): ``dpm_solver`` 2M/3M and ``unipc`` 2/3 with ``logSNR_edm`` (the
  defaults), ``edm`` (rho = 7) and ``time_quadratic`` steps;
* ``--calibrate``: ``unipc`` (order 2) with :func:`sdeflow.calibrate_schedule` fitted on 256
  calibration draws of their own (seed 777) against their own dopri5 solution, then evaluated on
  the shared test noise above (nothing of the test noise is seen by the calibration);
* ``--linear``: the within-component part of each error (:func:`within_component`: the sampler on
  each component's Gaussian eigen-directions alone, exactly linear);
* ``--oracle``: the grid fitted to the test pairs themselves (``mean_abs`` of the first 1,000 pairs,
  Powell): not a sampler anyone can use, but a bound on what any 10-step grid can do for the solver,
  per problem and (``joint``) with one grid for both data sets under VP.

Usage::

    python benchmarks/few_step.py --out results/                    # generic schedules, NFE 10/20/50
    python benchmarks/few_step.py --calibrate --calibration-budgets 10 20 --out results/
    python benchmarks/few_step.py --oracle --processes vp --budgets 10 --out results/

writes ``few_step.csv`` and ``few_step.md``.
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

import sdeflow
from sdeflow import GaussianMixture, ScoreModel
from sdeflow.data.datasets import anisotropic_mixture, nine_gaussians
from sdeflow.solvers import EDM_SIGMA_MIN, last_finite_time, scaled_sigma
from sdeflow.training.calibration import _levels

DATASETS: dict[str, Callable[[], GaussianMixture]] = {
    "nine_gaussians": lambda: nine_gaussians(dtype=torch.float64),
    "aniso16": lambda: anisotropic_mixture(16, dtype=torch.float64),
}

PROCESSES: dict[str, dict[str, Any]] = {"vp": {}, "subvp": {}, "ve": {}, "ddpm": {}, "vdm": {"schedule": "linear"}}
#: (label, sampler, options without steps)
GENERIC: list[tuple[str, str, dict[str, Any]]] = [
    ("dpm_solver 2M logSNR_edm (default)", "dpm_solver", {}),
    ("dpm_solver 3M logSNR_edm", "dpm_solver", dict(order=3)),
    ("unipc-2 logSNR_edm (default)", "unipc", {}),
    ("unipc-3 logSNR_edm", "unipc", dict(order=3)),
    ("dpm_solver 2M edm", "dpm_solver", dict(schedule="edm")),
    ("unipc-2 edm", "unipc", dict(schedule="edm")),
    ("unipc-2 time_quadratic", "unipc", dict(schedule="time_quadratic")),
]
N_TEST, N_PAIRED, N_CAL = 8000, 2000, 256


def with_fixed_prior(sm: ScoreModel, x_T: torch.Tensor) -> ScoreModel:
    """Every run of ``sm`` starts from the rows of ``x_T`` (deterministic samplers pair up exactly)."""

    def prior_sample(shape, generator=None, device=None, dtype=None):  # type: ignore[no-untyped-def]
        return x_T[: shape[0]].reshape(tuple(shape)).clone()

    sm.prior_sample = prior_sample  # type: ignore[method-assign]
    return sm


class Problem:
    """One (data set, process): the exact model on the shared test noise, its dopri5 pairs and ``E_p[log p]``."""

    def __init__(self, data: str, process: str, seed: int = 0) -> None:
        self.data, self.process_name = data, process
        self.gmm: GaussianMixture = DATASETS[data]()
        self.process = sdeflow.create_process(process, **PROCESSES[process])
        self.plain = self.gmm.score_model(self.process)
        x_T = self.plain.prior_sample((N_TEST, self.gmm.dim), torch.Generator().manual_seed(seed))
        self.sm = with_fixed_prior(self.gmm.score_model(self.process), x_T)
        ref_lp = self.gmm.log_prob(self.gmm.sample(400_000, torch.Generator().manual_seed(12345)))
        self.e_lp, self.e_se = float(ref_lp.mean()), float(ref_lp.std() / math.sqrt(ref_lp.numel()))
        t0 = time.perf_counter()
        ref = sdeflow.create_sampler("ode", method="dopri5", rtol=1e-6, atol=1e-6).sample(self.sm, (N_PAIRED, self.gmm.dim))
        self.ref_seconds, self.ref_nfe = time.perf_counter() - t0, ref.nfe
        self.lp_ref = self.gmm.log_prob(ref.samples)

    def measure(self, sampler: str, n: int = N_TEST, **options: Any) -> dict[str, float]:
        """gap (n samples), paired bias and mean |change| (the first 2,000) of one configuration."""
        t0 = time.perf_counter()
        res = sdeflow.create_sampler(sampler, **options).sample(self.sm, (n, self.gmm.dim))
        sec = time.perf_counter() - t0
        lp = self.gmm.log_prob(res.samples)
        if not bool(torch.isfinite(lp).all()):
            return dict(nfe=res.nfe, gap=math.inf, gap_se=math.inf, paired=math.inf, paired_se=math.inf,
                        mean_abs=math.inf, seconds=sec)
        d = self.lp_ref - lp[:N_PAIRED]
        return dict(nfe=res.nfe, gap=self.e_lp - float(lp.mean()),
                    gap_se=math.hypot(float(lp.std()) / math.sqrt(n), self.e_se),
                    paired=float(d.mean()), paired_se=float(d.std() / math.sqrt(N_PAIRED)),
                    mean_abs=float(d.abs().mean()), seconds=sec)

    def level_ends(self) -> tuple[float, float, float]:
        """``(top, low, bottom)``: the levels at t_max, where uniform log-SNR steps stop, at t_min."""
        t0, t1 = float(self.process.t_max), float(self.process.t_min)
        top, bottom = scaled_sigma(self.process, torch.tensor([t0, t1], dtype=torch.float64)).tolist()
        low = bottom if last_finite_time(self.process, t0, t1) == t1 else EDM_SIGMA_MIN
        return top, low, bottom


def oracle_levels(problems: list[Problem], steps: int, max_evals: int, n: int = 1000,
                  options: dict[str, Any] | None = None) -> list[float]:
    """Interior levels (shared by ``problems``, which must have the same level range) minimising the worst
    ``mean_abs`` over the problems' first ``n`` test pairs: a bound on any grid, not a usable sampler."""
    from scipy.optimize import minimize

    top, low, bottom = problems[0].level_ends()
    n_free = steps - (1 if bottom < low else 0)
    options = dict(options or {})

    def f(theta: np.ndarray) -> float:
        worst = 0.0
        levels = _levels(theta, top, low, bottom)
        for p in problems:
            try:
                x = sdeflow.create_sampler("unipc", schedule=levels, **options).sample(p.sm, (n, p.gmm.dim)).samples
            except (sdeflow.errors.OptionError, RuntimeError):
                return 1e30
            d = (p.lp_ref[:n] - p.gmm.log_prob(x)).abs().mean()
            worst = max(worst, float(d) if torch.isfinite(d) else 1e30)
        return worst

    res = minimize(f, np.zeros(n_free), method="Powell", options=dict(maxfev=max_evals, xtol=1e-3, ftol=1e-6))
    return _levels(res.x, top, low, bottom)


def within_component(prob: Problem, sampler: str, **options: Any) -> float:
    """The linear part of ``prob``'s error: for each component ``c`` of the mixture and each eigenvalue
    ``v`` of its covariance, the sampler run on the Gaussian ``N(0, v)`` alone (all of them at once, as
    one diagonal Gaussian started from ``z = 1``) returns ``rho(v)`` times the exact endpoint, and the
    mean log-density gap of ``N(0, rho^2 v)`` under ``N(0, v)`` is ``(rho^2 - 1) / 2``. Returns
    ``sum_c w_c sum_v (rho^2 - 1) / 2``: the gap the sampler would have if the components were far apart."""
    w = prob.gmm.weights.to(torch.float64)
    v = torch.linalg.eigvalsh(prob.gmm.covs.to(torch.float64))  # (K, d)
    flat = v.reshape(-1)
    diag = GaussianMixture([1.0], torch.zeros(1, flat.numel(), dtype=torch.float64), torch.diag(flat)[None],
                           dtype=torch.float64)
    t0, t1 = float(prob.process.t_max), float(prob.process.t_min)
    (a0, s0), (a1, s1) = [tuple(float(u) for u in prob.process.marginal(torch.tensor([t], dtype=torch.float64)))
                          for t in (t0, t1)]
    x_T = torch.sqrt(a0 * a0 * flat + s0 * s0)[None]
    sm = with_fixed_prior(diag.score_model(prob.process), x_T)
    x = sdeflow.create_sampler(sampler, **options).sample(sm, (1, flat.numel())).samples[0]
    rho = x / torch.sqrt(a1 * a1 * flat + s1 * s1)
    return float(((rho * rho - 1) / 2).reshape(v.shape).sum(1) @ w)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("results"))
    ap.add_argument("--budgets", type=int, nargs="+", default=[10, 20, 50])
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS))
    ap.add_argument("--processes", nargs="+", default=list(PROCESSES))
    ap.add_argument("--calibrate", action="store_true", help="add unipc-2 with calibrated levels")
    ap.add_argument("--calibration-evals", type=int, default=1500)
    ap.add_argument("--calibration-budgets", type=int, nargs="+", default=None,
                    help="budgets to calibrate at (default: --budgets)")
    ap.add_argument("--oracle", action="store_true", help="add the oracle grids (slow)")
    ap.add_argument("--oracle-evals", type=int, default=2500)
    ap.add_argument("--no-generic", action="store_true")
    ap.add_argument("--linear", action="store_true",
                    help="the within-component (Gaussian) part of each configuration's error (aniso16)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []

    def log(msg: str) -> None:
        print(msg, flush=True)

    def add(prob: Problem, label: str, budget: int, m: dict[str, float], **extra: Any) -> None:
        rows.append(dict(dataset=prob.data, process=prob.process_name, config=label, budget=budget, **m, **extra))
        log(f"  {label} @{budget}: nfe {m['nfe']} gap {m['gap']:+.4f} paired {m['paired']:+.4f} "
            f"mean|d| {m['mean_abs']:.4f}" + "".join(f" {k}={v}" for k, v in extra.items() if k != "levels"))

    problems: dict[tuple[str, str], Problem] = {}
    for ds in args.datasets:
        for pn in args.processes:
            prob = problems[(ds, pn)] = Problem(ds, pn)
            log(f"{ds}/{pn}: dopri5 reference {prob.ref_nfe} NFE ({prob.ref_seconds:.1f} s)")
            rows.append(dict(dataset=ds, process=pn, config="ode dopri5 (reference)", budget="", nfe=prob.ref_nfe,
                             gap=prob.e_lp - float(prob.lp_ref.mean()),
                             gap_se=math.hypot(float(prob.lp_ref.std()) / math.sqrt(N_PAIRED), prob.e_se),
                             paired=0.0, paired_se=0.0, mean_abs=0.0, seconds=prob.ref_seconds))
            if not args.no_generic:
                for label, name, opts in GENERIC:
                    for b in args.budgets:
                        lin = dict(within_component=round(within_component(prob, name, steps=b, **opts), 4)) \
                            if args.linear else {}
                        add(prob, label, b, prob.measure(name, steps=b, **opts), **lin)
            if args.calibrate:
                for b in args.calibration_budgets or args.budgets:
                    t0 = time.perf_counter()
                    cal = sdeflow.calibrate_schedule(prob.plain, (N_CAL, prob.gmm.dim), steps=b,
                                                     max_evals=args.calibration_evals,
                                                     generator=torch.Generator().manual_seed(777))
                    sec = time.perf_counter() - t0
                    lin = dict(within_component=round(within_component(prob, "unipc", schedule=cal.sigmas), 4)) \
                        if args.linear else {}
                    add(prob, "unipc-2 calibrated", b, prob.measure("unipc", schedule=cal.sigmas), **lin,
                        calibration_seconds=round(sec, 1), calibration_evals=cal.evaluations,
                        objective=f"{cal.start:.4f}->{cal.final:.4f}",
                        levels=" ".join(f"{s:.4g}" for s in cal.sigmas))
            if args.oracle:
                for b in args.budgets:
                    lv = oracle_levels([prob], b, args.oracle_evals)
                    add(prob, "unipc-2 oracle (fitted to the test pairs)", b, prob.measure("unipc", schedule=lv),
                        levels=" ".join(f"{s:.4g}" for s in lv))
    if args.oracle and "vp" in args.processes and len(args.datasets) > 1:
        joint = [problems[(ds, "vp")] for ds in args.datasets]
        for b in args.budgets:
            lv = oracle_levels(joint, b, args.oracle_evals)
            for prob in joint:
                add(prob, "unipc-2 joint oracle (one grid for both data sets)", b,
                    prob.measure("unipc", schedule=lv), levels=" ".join(f"{s:.4g}" for s in lv))

    keys = sorted({k for r in rows for k in r}, key=lambda k: (k not in ("dataset", "process", "config", "budget"), k))
    with open(args.out / "few_step.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    (args.out / "few_step.md").write_text(markdown(rows, args.budgets, args.datasets, args.processes))
    log(f"wrote {args.out / 'few_step.csv'} and {args.out / 'few_step.md'}")


def markdown(rows: list[dict[str, Any]], budgets: list[int], datasets: list[str], processes: list[str]) -> str:
    """One table per data set and metric; cells ``vp / subvp / ve / ddpm / vdm``."""
    configs = list(dict.fromkeys(r["config"] for r in rows if r["budget"] != ""))
    out = [f"Cells: {' / '.join(processes)}.", ""]

    def fmt(v: float) -> str:
        return "inf" if not math.isfinite(v) else (f"{v:+.3f}" if abs(v) < 100 else f"{v:+.1e}")

    for ds in datasets:
        ses = sorted(r["gap_se"] for r in rows if r["dataset"] == ds and r["budget"] != "" and math.isfinite(r["gap_se"]))
        floor = ses[len(ses) // 2] if ses else 0.0  # the median standard error of the 8,000-sample gaps
        for key, what in (("paired", "paired bias against dopri5 (2,000 pairs)"),
                          ("gap", f"mean log-density gap (8,000 samples; noise floor, one standard error: "
                                  f"{floor:.3f})"),
                          ("mean_abs", "mean |change of log p| per pair")):
            out += [f"### {ds}: {what}", "", "| config | " + " | ".join(f"NFE {b}" for b in budgets) + " |",
                    "|---|" + "---|" * len(budgets)]
            for c in configs:
                cells = []
                for b in budgets:
                    vals = [next((fmt(r[key]) for r in rows if r["dataset"] == ds and r["process"] == pn
                                  and r["config"] == c and r["budget"] == b), "-") for pn in processes]
                    cells.append(" / ".join(vals))
                if any(cell.replace("-", "").replace(" / ", "") for cell in cells):
                    out.append(f"| {c} | " + " | ".join(cells) + " |")
            out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    main()
