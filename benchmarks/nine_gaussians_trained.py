"""Mode frequencies of trained nine-Gaussian models against the mixture weights (issue 3).

Trains the nine-Gaussian mixture of reference text 004 with NCSN, DDPM, sub-VP and rectified flow (the same
recipes as ``tests/test_methods_trained.py`` by default: MLP width 64, depth 3, Adam lr 5e-3 with
cosine decay, batch 1024, EMA 0.999, ``CI_STEPS`` steps) for several training lengths and
training seeds, samples each model with its method's own sampler and reports, per run:

* ``p`` and ``w``: the classical chi-square goodness-of-fit test of the 9 mode counts of
  ``--n`` samples (sampling seed 0, as in the CI test) against the mixture weights, 8 degrees of
  freedom; ``w = sqrt(chi2 / n)`` is Cohen's effect size (the RMS relative frequency error);
* ``w_model``: the model's own frequency bias, estimated from ``--n-big`` further samples
  (sampling seed 1): ``sqrt(max(0, chi2_big - 8) / n_big)`` (``E[chi2] = 8 + n w^2`` for a
  multinomial with probabilities off by ``w``), so sampling noise is removed;
* ``P(pass)``: the probability that the classical test at ``--alpha`` passes with ``--n``
  samples at a random sampling seed, given ``w_model``:
  ``ncx2.cdf(chi2.ppf(1 - alpha, 8), 8, n w_model^2)`` (the statistic is approximately
  noncentral chi-square with noncentrality ``n w^2``);
* ``frac``: the fraction of the ``--n`` samples within 3 std of a mode.

The exact-score rows (``--exact``) run the same samplers on the exact mixture score, which
separates the samplers' own discretisation error from the networks'.

Usage::

    python benchmarks/nine_gaussians_trained.py                        # the CI recipe, seeds 0-2
    python benchmarks/nine_gaussians_trained.py --methods ddpm subvp --exact --n-big 10000
    python benchmarks/nine_gaussians_trained.py --methods ncsn ddpm100 --exact-only --n-big 40000
    python benchmarks/nine_gaussians_trained.py --steps 1500 3000 6000 --seeds 0 1 2 3 4
    python benchmarks/nine_gaussians_trained.py --methods ncsn --hidden 64 --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from typing import Any

import torch
from scipy.stats import chi2 as chi2_dist
from scipy.stats import chisquare, ncx2

import sdeflow
from sdeflow.data.datasets import nine_gaussians
from sdeflow.data.metrics import mode_coverage
from sdeflow.training import Trainer

# method: (process, process options, [(sampler label, sampler, sampler options), ...])
METHODS: dict[str, tuple[str, dict[str, Any], list[tuple[str, str, dict[str, Any]]]]] = {
    "ncsn": ("ncsn", {}, [("langevin T=100", "langevin", {}), ("langevin T=300", "langevin", {"n_steps_each": 300})]),
    # reference text 004's betas 1e-3..0.02 on a 1000-step chain (beta(t) = 1..20), as in the CI test
    "ddpm": ("ddpm", {"num_steps": 1000, "beta_start": 1e-3, "beta_end": 0.02}, [("ancestral", "ancestral", {})]),
    # the same VP SDE respaced to 100 steps: betas 1e-3..0.2 (beta(t) = 0.1..20 on a 100-step grid)
    "ddpm100": ("ddpm", {"num_steps": 100, "beta_start": 1e-3, "beta_end": 0.2}, [("ancestral", "ancestral", {})]),
    "subvp": ("subvp", {"beta_max": 10.0}, [("sde", "sde", {"steps": 100}),
                                            ("ode", "ode", {"rtol": 1e-3, "atol": 1e-3})]),
    # rectified flow trained by flow matching (a velocity network), Euler on the flow with 100 steps as in the CI
    "rectified_flow": ("rectified_flow", {}, [("euler 100", "ode", {"method": "euler", "steps": 100}),
                                              ("ode", "ode", {"rtol": 1e-3, "atol": 1e-3})]),
}


#: training steps of the CI recipe (tests/test_methods_trained.py's NINE_STEPS), the default --steps
CI_STEPS = {"ncsn": 3000, "ddpm": 3000, "ddpm100": 3000, "subvp": 4000, "rectified_flow": 3000}


def frequency_stats(samples: torch.Tensor) -> tuple[float, list[int], float, float]:
    """Coverage fraction, mode counts, chi-square statistic and p-value against the weights."""
    target = nine_gaussians()
    frac, counts = mode_coverage(target, samples)
    n = float(counts.sum())
    expected = (target.weights.double() / target.weights.double().sum() * n).numpy()
    stat, p = chisquare(counts.double().numpy(), expected)
    return frac, counts.tolist(), float(stat), float(p)


def train(method: str, steps: int, seed: int, args: argparse.Namespace) -> sdeflow.ScoreModel:
    """One model of ``method`` trained for ``steps`` steps from seed ``seed``; the EMA copy."""
    process, p_opts, _ = METHODS[method]
    torch.manual_seed(seed)
    net = sdeflow.create_model("mlp", dim=2, hidden=args.hidden, depth=args.depth, embed_dim=args.embed_dim,
                              time_scale=args.time_scale)
    model = sdeflow.ScoreModel(net, sdeflow.create_process(process, **p_opts))
    trainer = Trainer(model, nine_gaussians(dtype=torch.float32), steps=steps, batch_size=args.batch, lr=args.lr,
                      warmup_steps=min(100, steps // 10), lr_schedule="cosine", ema_decay=args.ema, seed=seed)
    trainer.fit()
    ema = trainer.ema_model()
    ema.eval()
    return ema


def evaluate(model: sdeflow.ScoreModel, sampler: str, s_opts: dict[str, Any], args: argparse.Namespace) -> dict:
    """The statistics of one model under one sampler (see the module docstring)."""
    s = sdeflow.create_sampler(sampler, **s_opts)
    x = s.sample(model, (args.n, 2), torch.Generator().manual_seed(0)).samples
    frac, counts, stat, p = frequency_stats(x)
    row = {"frac": frac, "counts": counts, "chi2": stat, "p": p, "w": math.sqrt(stat / max(1, sum(counts)))}
    if args.n_big:
        xb = s.sample(model, (args.n_big, 2), torch.Generator().manual_seed(1)).samples
        _, cb, sb, _ = frequency_stats(xb)
        w_model = math.sqrt(max(0.0, sb - 8.0) / max(1, sum(cb)))
        row.update(w_model=w_model, p_pass=pass_probability(w_model, args.n, args.alpha))
    return row


def pass_probability(w_model: float, n: int, alpha: float) -> float:
    """P(classical chi-square test at ``alpha`` passes with ``n`` samples) for a frequency bias ``w_model``."""
    crit = float(chi2_dist.ppf(1.0 - alpha, 8))
    return float(ncx2.cdf(crit, 8, n * w_model**2)) if w_model > 0 else float(chi2_dist.cdf(crit, 8))


def summary(rows: list[dict], alpha: float, n: int) -> str:
    """One line per (method, sampler, steps) over the training seeds: how many pass the classical
    test at ``alpha`` at sampling seed 0, the range of p and w, the largest ``w_model`` and the
    smallest ``P(pass)``."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["sampler"], r["steps"]), []).append(r)
    out = [f"| method | sampler | steps | seeds | pass at {alpha:g} | p | w | max w_model | min P(pass) |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for (method, sampler, steps), rs in groups.items():
        ps, ws = [r["p"] for r in rs], [r["w"] for r in rs]
        wm = [r["w_model"] for r in rs if "w_model" in r]
        pp = [pass_probability(w, n, alpha) for w in wm]
        out.append(f"| {method} | {sampler} | {steps or 'exact'} | {len(rs)} | {sum(p >= alpha for p in ps)}/{len(rs)} | "
                   f"{min(ps):.2g} .. {max(ps):.2g} | {min(ws):.3f} .. {max(ws):.3f} | "
                   f"{max(wm) if wm else float('nan'):.3f} | {min(pp) if pp else float('nan'):.2f} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", nargs="+", default=["ncsn", "ddpm", "subvp"], choices=list(METHODS))
    ap.add_argument("--steps", nargs="*", type=int, default=None,
                    help="training lengths (default: the CI recipe's, per method)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--embed-dim", type=int, default=16)
    ap.add_argument("--time-scale", type=float, default=1000.0, help="the MLP's time_scale (t_cond multiplier)")
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--exact-prior", action="store_true",
                    help="exact-score rows start from the exact p_T (default: the data-free prior, as trained models)")
    ap.add_argument("--n", type=int, default=5000, help="samples for the test at sampling seed 0")
    ap.add_argument("--n-big", type=int, default=20000, help="samples for the bias estimate (0: skip)")
    ap.add_argument("--alpha", type=float, default=0.001)
    ap.add_argument("--exact", action="store_true", help="also the exact-score rows")
    ap.add_argument("--exact-only", action="store_true", help="only the exact-score rows (no training)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=str, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, python {platform.python_version()}, threads={args.threads}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; mlp hidden={args.hidden} depth={args.depth} "
          f"embed={args.embed_dim} time_scale={args.time_scale:g}, batch {args.batch}, lr {args.lr} cosine, EMA {args.ema}; n={args.n}, "
          f"n_big={args.n_big}, alpha={args.alpha}")
    print()
    print("| method | sampler | steps | seed | train s | frac | chi2 | p | w | w_model | P(pass) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = []
    for method in args.methods:
        process, p_opts, samplers = METHODS[method]
        if args.exact or args.exact_only:
            exact = nine_gaussians(dtype=torch.float32).score_model(sdeflow.create_process(process, **p_opts),
                                                                     exact_prior=args.exact_prior)
            for label, sampler, s_opts in samplers:
                r = evaluate(exact, sampler, s_opts, args)
                rows.append({"method": method, "sampler": label, "steps": 0, "seed": -1, **r})
                print(f"| {method} | {label} | exact | - | - | {r['frac']:.4f} | {r['chi2']:.1f} | {r['p']:.3g} | "
                      f"{r['w']:.3f} | {r.get('w_model', float('nan')):.3f} | {r.get('p_pass', float('nan')):.2f} |",
                      flush=True)
        for steps in [] if args.exact_only else args.steps or [CI_STEPS[method]]:
            for seed in args.seeds:
                t0 = time.process_time()
                model = train(method, steps, seed, args)
                secs = time.process_time() - t0
                for label, sampler, s_opts in samplers:
                    r = evaluate(model, sampler, s_opts, args)
                    rows.append({"method": method, "sampler": label, "steps": steps, "seed": seed, "train_s": secs,
                                 **r})
                    print(f"| {method} | {label} | {steps} | {seed} | {secs:.0f} | {r['frac']:.4f} | {r['chi2']:.1f} | "
                          f"{r['p']:.3g} | {r['w']:.3f} | {r.get('w_model', float('nan')):.3f} | "
                          f"{r.get('p_pass', float('nan')):.2f} |", flush=True)
    print()
    print(summary(rows, args.alpha, args.n))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "rows": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
