"""Classifier-free guidance on two Gaussian classes, measured against closed forms.

The data: two overlapping Gaussian classes in 2-D (weights 1/2). Exact scores under ``vp``;
sampler ``ode`` (dopri5, rtol = atol = 1e-8) unless said otherwise.

1. Guidance towards class 1 away from class 0 (``given(1, guidance=w, negative=0)``): the guided
   score ``(1 + w) s_1 - w s_0`` is linear in ``x`` at every ``t``, so the probability-flow ODE is
   linear, ``x_0 = Phi x_T + r``; ``Phi`` and ``r`` are integrated by scipy's DOP853 (rtol 1e-12).
   Reported: the largest deviation of a guided sample from ``Phi x_T + r`` (same ``x_T``), and the
   largest error of the samples' mean and covariance against ``Phi m_T + r`` and ``Phi C_T Phi^T`` in
   standard errors of the sample (sampling error alone: a few units at most).
2. Classifier-free guidance proper (``given(1, guidance=w)``, null = the mixture): per ``w``, the mean
   class-conditional log-density ``E log p(x | c=1)``, the mean log-probability of the class under the
   exact classifier ``E log p(c=1 | x)``, the share of samples that classifier assigns to class 1, and
   the diversity ``sqrt(det Cov)`` of the samples, for the ODE and for the reverse SDE (Euler-Maruyama,
   1000 steps).

Usage: ``OMP_NUM_THREADS=1 python benchmarks/guidance_effect.py [--n 4000]`` (about a minute).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

import sdeflow
from sdeflow import GaussianMixture

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_conditioning import linear_flow_map  # noqa: E402  (the closed-form flow map the tests use)

F64 = torch.float64


def classes() -> GaussianMixture:
    """Two overlapping classes: N((-1, 0), diag(0.6, 0.4)) and N((1, 0.5), [[0.5, 0.2], [0.2, 0.7]])."""
    covs = torch.tensor([[[0.6, 0.0], [0.0, 0.4]], [[0.5, 0.2], [0.2, 0.7]]], dtype=F64)
    return GaussianMixture([0.5, 0.5], [[-1.0, 0.0], [1.0, 0.5]], covs, dtype=F64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--scales", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0, 4.0, 8.0])
    args = ap.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    gm = classes()
    process = sdeflow.create_process("vp").double()
    exact = gm.score_model(process)
    ode = sdeflow.create_sampler("ode", rtol=1e-8, atol=1e-8)
    print("1. guidance towards class 1 away from class 0: the linear flow")
    print("| w | max deviation from Phi x_T + r | mean error / SE | covariance error / SE | sqrt(det Cov) |\n"
          "|---:|---:|---:|---:|---:|")
    prior = exact.marginal_mixture(float(process.t_max)).condition(component=1)
    for w in args.scales:
        view = exact.given(1, guidance=w, negative=0)
        x_T = view.prior_sample((args.n, 2), torch.Generator().manual_seed(0))
        x = ode.sample(view, (args.n, 2), torch.Generator().manual_seed(0)).samples
        phi, r = (torch.as_tensor(v) for v in linear_flow_map(gm, process, 1, 0, w))
        dev = float((x - (x_T @ phi.T + r)).abs().max())
        mean, cov = phi @ prior.means[0] + r, phi @ prior.covs[0] @ phi.T
        # errors in standard errors of the sample mean and covariance (the central-limit ones of assert_moments)
        c = x - x.mean(0)
        prods = c[:, :, None] * c[:, None, :]
        me = float(((x.mean(0) - mean).abs() / (x.std(0) / math.sqrt(args.n))).max())
        ce = float(((torch.cov(x.T) - cov).abs() / (prods.std(0) / math.sqrt(args.n))).max())
        print(f"| {w:g} | {dev:.1e} | {me:.2f} | {ce:.2f} | {math.sqrt(float(torch.linalg.det(cov))):.3f} |")
    print("\n2. classifier-free guidance towards class 1 (null: the mixture)")
    print("| sampler | w | E log p(x given c) | E log p(c given x) | classified as c | sqrt(det Cov) |\n"
          "|---|---:|---:|---:|---:|---:|")
    comp = gm.condition(component=1)
    ref = comp.sample(args.n, torch.Generator().manual_seed(5))

    def row(name: str, w: float | str, x: torch.Tensor) -> None:
        lp = comp.log_prob(x)
        post = comp.log_prob(x) + math.log(float(gm.weights[1])) - gm.log_prob(x)
        se = float(lp.std()) / math.sqrt(x.shape[0])
        det = math.sqrt(float(torch.linalg.det(torch.cov(x.T))))
        print(f"| {name} | {w} | {float(lp.mean()):.3f} ± {se:.3f} | {float(post.mean()):.3f} | "
              f"{100 * float((post > math.log(0.5)).to(F64).mean()):.1f}% | {det:.3f} |", flush=True)

    row("exact draws of p(x given c)", "-", ref)
    for name, smp in (("ode", ode), ("sde (1000 steps)", sdeflow.create_sampler("sde", steps=1000))):
        for w in args.scales:
            x = smp.sample(exact.given(1, guidance=w), (args.n, 2), torch.Generator().manual_seed(1)).samples
            row(name, f"{w:g}", x)
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
