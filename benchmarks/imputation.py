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
(about 4 minutes of one CPU core); ``--markdown`` prints the tables for docs/conditioning.md.
"""

from __future__ import annotations

import argparse
import time

import torch

import sdeflow
from sdeflow.data import anisotropic_mixture, nine_gaussians
from sdeflow.data.metrics import log_density_gap, log_density_gap_stderr

F64 = torch.float64


def mode_tv(cond: sdeflow.GaussianMixture, x: torch.Tensor) -> float:
    """Total variation between the frequencies of the samples' most responsible components and the weights."""
    n = x.shape[0]
    logits, _, _ = cond._components(x, torch.ones(n, dtype=x.dtype), torch.zeros(n, dtype=x.dtype))
    freq = torch.bincount(logits.argmax(1), minlength=cond.n_components).to(F64) / n
    return 0.5 * float((freq - cond.weights).abs().sum())


def cases() -> list[tuple[str, sdeflow.GaussianMixture, torch.Tensor, torch.Tensor]]:
    """(name, joint mixture, mask, observed values)."""
    nine = nine_gaussians(dtype=F64)
    aniso = anisotropic_mixture(16, dtype=F64)
    y16 = aniso.sample(1, torch.Generator().manual_seed(7))[0]
    m16 = torch.arange(16) % 2 == 0
    return [("nine Gaussians, x1 = 1 observed", nine, torch.tensor([True, False]), torch.tensor([1.0, 0.0], dtype=F64)),
            ("16-D anisotropic mixture, 8 of 16 coordinates observed", aniso, m16, y16)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4000, help="samples per run")
    ap.add_argument("--steps", type=int, nargs="+", default=[25, 50, 100, 200, 400])
    ap.add_argument("--resample", type=int, nargs="+", default=[5])
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
        print(f"\n{name}: conditional weights {[round(float(w), 3) for w in cond.weights if w > 1e-3]}; "
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
                    assert torch.equal(res.samples[:, mask], y[mask].expand(args.n, -1)), "observed values changed"
                gap, se = log_density_gap(cond, xu, ref), log_density_gap_stderr(cond, xu, ref)
                rows.append((method, steps, res.nfe, gap, se, mode_tv(cond, xu)))
                print(f"  {method:20s} steps {steps:4d}  NFE {res.nfe:5d}  gap {gap:+.3f} ± {se:.3f}  "
                      f"mode TV {rows[-1][5]:.3f}", flush=True)
        if args.markdown:
            print(f"\n| method | steps | NFE | log-density gap (nats) | mode TV (floor {floor:.3f}) |\n|---|---:|---:|---:|---:|")
            for method, steps, nfe, gap, se, tv in sorted(rows, key=lambda r: (r[0], r[1])):
                print(f"| {method} | {steps} | {nfe} | {gap:+.3f} ± {se:.3f} | {tv:.3f} |")
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
