"""Imputation against the exact conditional: replacement and RePaint on Gaussian mixtures, error vs NFE.

Every method uses the EXACT score of the joint mixture under ``vp``; the truth is the exact conditional
``p(x_U | x_O = y)`` of the unobserved coordinates (:meth:`sdeflow.GaussianMixture.condition`). Methods:

* ``exact``: the exact conditional's own score (``gm.condition(mask, values).score_model``) with the
  ``ancestral`` sampler: the sampler's discretisation error alone, the floor of the comparison;
* ``replacement``: ``score_model.given(mask=m, values=y)`` with the ``ancestral`` sampler (the
  replacement method of Song et al. 2021, App. I.2, in score form);
* ``replacement (fresh)``: ``repaint`` with ``resample=1`` (the observed coordinates redrawn from
  ``q(x_t | y)`` after every step);
* ``repaint r=R``: ``repaint`` with ``resample=R``, ``jump_length=10`` (Lugmayr et al. 2022).

Metrics on the unobserved coordinates: the log-density gap ``E_true[log p] - E_samples[log p]``
under the exact conditional (nats; its noise is the ± standard error), and the total-variation
distance between the frequencies of the modes the samples fall in (the conditional's most
responsible component) and the conditional's weights (its noise floor: the same statistic for an
exact draw of the same size).

Usage: ``OMP_NUM_THREADS=1 python benchmarks/imputation.py [--n 4000] [--steps 25 50 100 200 400]``
(8 minutes of one CPU core on a shared machine); ``--markdown`` prints the tables for docs/conditioning.md.
"""

from __future__ import annotations

import argparse
import time

import torch

import sdeflow
from sdeflow.data import anisotropic_mixture, nine_gaussians
from sdeflow.data.metrics import log_density_gap, log_density_gap_stderr

F64 = torch.float64


def modes(cond: sdeflow.GaussianMixture) -> torch.Tensor:
    """The mode of each component: components with the same mean and covariance are one mode (the
    nine Gaussians' conditional on x1 has three components at each value of x2)."""
    key = torch.cat([cond.means, cond.covs.reshape(cond.n_components, -1)], 1)
    groups: list[torch.Tensor] = []
    out = torch.empty(cond.n_components, dtype=torch.long)
    for k in range(cond.n_components):
        match = [i for i, g in enumerate(groups) if torch.allclose(g, key[k], atol=1e-9)]
        if not match:
            groups.append(key[k])
        out[k] = match[0] if match else len(groups) - 1
    return out


def mode_tv(cond: sdeflow.GaussianMixture, x: torch.Tensor) -> float:
    """Total variation between the frequencies of the modes the samples fall in (their most responsible
    component's mode, the logits of all components of a mode summed) and the modes' weights."""
    n, group = x.shape[0], modes(cond)
    m = int(group.max()) + 1
    logits, _, _ = cond._components(x, torch.ones(n, dtype=x.dtype), torch.zeros(n, dtype=x.dtype))
    per_mode = torch.stack([torch.logsumexp(logits[:, group == j], 1) for j in range(m)], 1)
    freq = torch.bincount(per_mode.argmax(1), minlength=m).to(F64) / n
    weights = torch.zeros(m, dtype=F64).index_add_(0, group, cond.weights.to(F64))
    return 0.5 * float((freq - weights).abs().sum())


def cases() -> list[tuple[str, sdeflow.GaussianMixture, torch.Tensor, torch.Tensor]]:
    """(name, joint mixture, mask, observed values)."""
    nine = nine_gaussians(dtype=F64)
    aniso = anisotropic_mixture(16, dtype=F64)
    y16 = aniso.sample(1, torch.Generator().manual_seed(7))[0]
    m16 = torch.arange(16) % 2 == 0
    return [("nine Gaussians, x1 = 0 observed", nine, torch.tensor([True, False]), torch.tensor([0.0, 0.0], dtype=F64)),
            ("16-D anisotropic mixture, 8 of 16 coordinates observed", aniso, m16, y16)]


def markdown(name: str, rows: list[tuple], steps: list[int], floor: float) -> str:
    """One table: a row per method, a column per step count; cells ``mode TV / gap (NFE)``."""
    methods = list(dict.fromkeys(r[0] for r in rows))
    cell = {(r[0], r[1]): f"{r[5]:.3f} / {r[3]:+.2f} ({r[2]})" for r in rows}
    lines = [f"\n{name} (mode TV noise floor {floor:.3f}; gap standard errors up to "
             f"{max(r[4] for r in rows):.3f} nats)\n",
             "| method | " + " | ".join(f"{k} steps" for k in steps) + " |",
             "|---|" + "---:|" * len(steps)]
    lines += [f"| {m} | " + " | ".join(cell[(m, k)] for k in steps) + " |" for m in methods]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4000, help="samples per run")
    ap.add_argument("--steps", type=int, nargs="+", default=[25, 50, 100, 200, 400])
    ap.add_argument("--resample", type=int, nargs="+", default=[5, 10])
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    process = sdeflow.create_process("vp").double()
    start = time.perf_counter()
    for name, gm, mask, y in cases():
        cond = gm.condition(mask=mask, values=y)
        view = gm.score_model(process).given(mask=mask, values=y)
        exact = cond.score_model(process)
        ref = cond.sample(args.n, torch.Generator().manual_seed(1))
        floor = mode_tv(cond, cond.sample(args.n, torch.Generator().manual_seed(2)))
        mode_w = torch.zeros(int(modes(cond).max()) + 1, dtype=F64).index_add_(0, modes(cond), cond.weights.to(F64))
        print(f"\n{name}: weights of the conditional's modes {[round(float(w), 3) for w in mode_w]}; "
              f"TV noise floor {floor:.3f} ({args.n} samples)")
        rows = []
        for steps in args.steps:
            runs = [("exact", exact, sdeflow.create_sampler("ancestral", steps=steps)),
                    ("replacement", view, sdeflow.create_sampler("ancestral", steps=steps)),
                    ("replacement (fresh)", view, sdeflow.create_sampler("repaint", steps=steps, resample=1))]
            runs += [(f"repaint r={r}", view, sdeflow.create_sampler("repaint", steps=steps, resample=r,
                                                                     jump_length=min(10, max(1, steps // 5))))
                     for r in args.resample]
            for method, model, smp in runs:
                d = int(mask.numel()) if model is view else cond.dim
                res = smp.sample(model, (args.n, d), torch.Generator().manual_seed(3))
                xu = res.samples[:, ~mask] if model is view else res.samples
                if model is view:
                    assert float((res.samples[:, mask] - y[mask]).abs().max()) < 1e-8, "observed values changed"
                gap, se = log_density_gap(cond, xu, ref), log_density_gap_stderr(cond, xu, ref)
                rows.append((method, steps, res.nfe, gap, se, mode_tv(cond, xu)))
                print(f"  {method:20s} steps {steps:4d}  NFE {res.nfe:5d}  gap {gap:+.3f} ± {se:.3f}  "
                      f"mode TV {rows[-1][5]:.3f}", flush=True)
        if args.markdown:
            print(markdown(name, rows, args.steps, floor))
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
