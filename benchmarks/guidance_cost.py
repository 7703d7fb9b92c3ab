"""What a guided score evaluation costs: one network call on the doubled batch vs two calls vs none.

A guided view ``model.given(labels, guidance=w)`` evaluates ``(1 + w) eps(x, c) - w eps(x, null)``.
By default both predictions come from ONE network call on ``[x, x]`` with labels ``[c, null]``
(``batched=False``: two calls); a sampler's ``nfe`` counts guided score evaluations, each the
network work of two unguided ones. This script times, in one process, one score evaluation of
the unguided view, the guided view batched and unbatched, for the class-conditional ``mlp`` (2-D,
hidden 128, batch 4096) and ``unet`` (8x8, base_channels 32, batch 64), and a whole ``dpm_solver``
run (20 steps) of each; times are medians of the process CPU time of interleaved repeats (one thread),
reported as ratios to the unguided view.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/guidance_cost.py`` (about a minute).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch

import sdeflow


def interleaved_cpu_seconds(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    """Median process CPU time of each of ``fns``, timed in interleaved rounds after one warm-up each
    (CPU time, not wall time: the machine is shared, and each call runs on one thread)."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.process_time()
            fn()
            times[i].append(time.process_time() - t0)
    return [statistics.median(t) for t in times]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    process = sdeflow.create_process("vp")
    cases = [("mlp, 2-D, batch 4096", sdeflow.create_model("mlp", dim=2, num_classes=10), (4096, 2)),
             ("unet, 8x8, batch 64", sdeflow.create_model("unet", in_channels=1, image_size=8, num_classes=10), (64, 1, 8, 8))]
    print("| network | what | one evaluation, CPU ms | ratio | dpm_solver 20 steps, CPU s | ratio | NFE |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, net, shape in cases:
        model = sdeflow.ScoreModel(net, process).eval()
        labels = torch.arange(shape[0]) % 10
        views = [("unguided, given(c)", model.given(labels)),
                 ("guided, one batched call", model.given(labels, guidance=2.0)),
                 ("guided, two calls", model.given(labels, guidance=2.0, batched=False))]
        x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
        t = torch.full((shape[0],), 0.5)
        smp = sdeflow.create_sampler("dpm_solver", steps=20)
        with torch.no_grad():
            evals = interleaved_cpu_seconds([lambda v=v: v.score(x, t) for _, v in views], args.repeats)
            runs = interleaved_cpu_seconds([lambda v=v: smp.sample(v, shape, torch.Generator().manual_seed(1))
                                            for _, v in views], max(3, args.repeats // 5))
            nfes = [smp.sample(v, shape, torch.Generator().manual_seed(1)).nfe for _, v in views]
        for (what, _), ev, run, nfe in zip(views, evals, runs, nfes):
            print(f"| {name} | {what} | {1e3 * ev:.2f} | {ev / evals[0]:.2f} | {run:.3f} | {run / runs[0]:.2f} | "
                  f"{nfe} |", flush=True)


if __name__ == "__main__":
    main()
