"""Bits per dimension of VDM on sklearn's 8x8 digits after a fixed training budget (issue 4).

Data: ``sdeflow.data.images.load_digits_levels()`` (scikit-learn's 1,797 images of 8x8 pixels with 17 grey
levels 0..16, shipped with scikit-learn, nothing downloaded), flattened to 64 values and mapped onto
``[-1, 1]`` with ``sdeflow.data.images.levels_to_signed(k, 16)``; the first 1,500 images train, the last 297
test.

Model: ``create_model("mlp", dim=64, hidden=256)`` (eps prediction) on ``create_process("vdm", bins=17,
...)``, trained by :class:`sdeflow.training.Trainer` on ``ScoreModel.loss`` (the VDM bound in bits per
dimension) with its defaults (Adam, EMA 0.999, gradient clipping 1.0), batch 128, lr 2e-3, the same
seed and data order for every variant. Variants (``--variants``):

* ``learned``: the default learned schedule, its interior trained to minimise the variance of the
  diffusion loss (``minimize_variance=True``), endpoints on the VLB;
* ``learned-vlb``: the learned schedule with every parameter on the VLB gradient;
* ``linear-ends``: linear ``gamma`` with learned endpoints;
* ``linear``: the fixed linear schedule ``gamma`` from -10 to 20.

Reported on the test images with the EMA weights: the bound per term and in total (bits/dim,
``vlb_breakdown`` with ``--repeats`` evaluations per image), its standard error, the standard
deviation of the per-image diffusion-term estimate (what variance minimisation lowers), the learned
endpoints, and the training time. The uniform distribution over 17 levels has ``log2(17) = 4.09``
bits/dim.

Usage::

    python benchmarks/vdm_digits.py                 # 2000 steps, all variants
    python benchmarks/vdm_digits.py --quick         # 100 steps (smoke test)
    python benchmarks/vdm_digits.py --steps 5000 --variants learned,linear --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time

import torch

import sdeflow
from sdeflow import ScoreModel
from sdeflow.data.images import levels_to_signed, load_digits_levels
from sdeflow.training import TrainConfig, Trainer
from sdeflow_plugins.vdm import vlb_breakdown, vlb_terms

VARIANTS = {
    "learned": dict(),
    "learned-vlb": dict(minimize_variance=False),
    "linear-ends": dict(schedule="linear", learn_endpoints=True),
    "linear": dict(schedule="linear"),
}


def load() -> tuple[torch.Tensor, torch.Tensor]:
    """Digits as data on the 17 levels of [-1, 1]: (train 1500x64, test 297x64)."""
    x = levels_to_signed(load_digits_levels().reshape(-1, 64), 16)
    return x[:1500], x[1500:]


def run(name: str, train: torch.Tensor, test: torch.Tensor, steps: int, repeats: int, seed: int) -> dict:
    """Train one variant and evaluate it; returns the row of the table."""
    torch.manual_seed(seed)
    process = sdeflow.create_process("vdm", bins=17, **VARIANTS[name])
    model = ScoreModel(sdeflow.create_model("mlp", dim=64, hidden=256), process)
    cfg = TrainConfig(steps=steps, batch_size=128, lr=2e-3, seed=seed, progress=False)
    trainer = Trainer(model, train, cfg)
    wall, cpu = time.perf_counter(), time.process_time()
    trainer.fit()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    ema = trainer.ema_model()
    gen = torch.Generator().manual_seed(seed + 1)
    res = vlb_breakdown(ema, test, gen, repeats=repeats)
    with torch.no_grad():
        diff = torch.cat([vlb_terms(ema, test, gen).diffusion for _ in range(repeats)]) / (64 * math.log(2.0))
        g0, g1 = ema.process.endpoints(torch.zeros((), dtype=torch.float64))
    train_res = vlb_breakdown(ema, train[: test.shape[0]], torch.Generator().manual_seed(seed + 2), repeats=repeats)
    return dict(variant=name, **res, diffusion_sd=float(diff.std()), train_total=train_res["total"],
                gamma_min=float(g0), gamma_max=float(g1), train_wall_s=wall, train_cpu_s=cpu)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=16, help="bound evaluations per test image")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="100 steps, 2 repeats")
    ap.add_argument("--json", default=None, help="write the rows to this file")
    args = ap.parse_args(argv)
    if args.quick:
        args.steps, args.repeats = 100, 2
    names = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        ap.error(f"unknown variants {unknown}; valid: {', '.join(VARIANTS)}")
    torch.set_num_threads(args.threads)
    train, test = load()
    print(f"# VDM on 8x8 digits: {args.steps} steps, batch 128, MLP 64-256x3, {args.repeats} bound evaluations "
          f"per test image; torch {torch.__version__}, Python {platform.python_version()}, {args.threads} thread(s)")
    print("| variant | test bpd | +- se | diffusion | prior | reconstruction | sd(diffusion est.) | train bpd "
          "| gamma_min | gamma_max | train CPU s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = []
    for name in names:
        r = run(name, train, test, args.steps, args.repeats, args.seed)
        rows.append(r)
        print(f"| {name} | {r['total']:.3f} | {r['total_se']:.3f} | {r['diffusion']:.3f} | {r['prior']:.2e} "
              f"| {r['reconstruction']:.2e} | {r['diffusion_sd']:.2f} | {r['train_total']:.3f} | {r['gamma_min']:.2f} "
              f"| {r['gamma_max']:.2f} | {r['train_cpu_s']:.0f} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(steps=args.steps, repeats=args.repeats, rows=rows), f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
