"""Training throughput of :class:`sdeflow.training.Trainer` against a hand-written PyTorch loop (issue 3).

The hand loop is reference text 001's DDPM training loop, written out with the same pieces
the Trainer uses, so the ratio measures only the Trainer's machinery:

* model: ``create_model("mlp", dim=1)`` (hidden 128, depth 3; reference 001's "SimpleNet"
  generalised), the same initial weights on both sides;
* data: 50,000 draws of ``N(5, 2^2)`` (reference 001), batch 256, reshuffled every epoch by a
  seeded ``torch.randperm`` (the Trainer's :class:`~sdeflow.training.BatchSource` does the same);
* loss: DDPM's eps-MSE (Ho et al. 2020, Algorithm 1) under ``ddpm`` (linear betas 1e-4..0.02,
  N = 1000): ``i ~ U{1..N}``, ``x_t = sqrt(abar_i) x0 + sqrt(1 - abar_i) eps``, ``||eps_theta(x_t,
  i/N) - eps||^2``. The hand loop looks ``abar_i`` up in a table, as reference 001 does; the
  Trainer calls ``score_model.loss`` (sdeflow's generic denoising score matching, which reads the
  process's marginal), so its own loss-building cost is part of what is measured;
* optimiser: Adam, lr 1e-3, multi-tensor (``foreach=True``) on both sides: the Trainer asks for
  it (torch picks it by itself only on CUDA), and a hand loop can too. One more row times the
  hand loop with ``torch.optim.Adam``'s CPU default (single-tensor) for reference.

Rows (each Trainer variant against the hand loop with the same options):

* ``plain``: EMA and gradient clipping OFF on both sides, full precision (the like-for-like
  ratio; target <= 1.10);
* ``defaults``: the Trainer's defaults (EMA 0.999 with warm-up, clipping at 1.0) against the
  hand loop with a hand-written EMA (``torch._foreach_lerp_``) and ``clip_grad_norm_`` (target
  <= 1.10);
* ``plain vs hand loop with torch's default Adam`` and ``defaults vs plain hand loop`` (what EMA
  and clipping cost): for information, no target.

Timing: every variant is built and warmed up once, then ``--repeats`` rounds run the variants
interleaved, ``--steps`` optimiser steps each (order reversed every other round). Samples/s are
medians over rounds; a ratio is the median over rounds of that round's Trainer time over its
hand-loop time (paired, so slow drifts of a shared machine's load cancel). Wall time
(``time.perf_counter``) and process CPU time (``time.process_time``) are both recorded: with one
thread the CPU time does not count time the process waited for a busy machine, so on a shared
box the CPU-time ratio is the trustworthy one. ``torch.set_num_threads(--threads)`` (default 1).

Usage::

    python benchmarks/training_throughput.py            # 200 steps x 15 repeats
    python benchmarks/training_throughput.py --quick    # 60 steps x 3 repeats (smoke test)
    python benchmarks/training_throughput.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from typing import Callable

import torch

import sdeflow
from sdeflow.training import Trainer

TARGET = 1.10
N_DATA, BATCH, LR, NUM_STEPS = 50_000, 256, 1e-3, 1000


def make_model() -> sdeflow.ScoreModel:
    """The MLP eps-model under DDPM, with fixed initial weights."""
    torch.manual_seed(0)
    return sdeflow.ScoreModel(sdeflow.create_model("mlp", dim=1), sdeflow.create_process("ddpm", num_steps=NUM_STEPS))


class HandLoop:
    """Reference text 001's loop: table-lookup DDPM loss, Adam, optional EMA and clipping."""

    def __init__(self, data: torch.Tensor, ema: bool, clip: bool, foreach: bool | None = True) -> None:
        self.model = make_model()
        self.net = self.model.network
        process = self.model.process
        abar = torch.exp(process.log_abar[1:]).to(torch.float32)  # abar_i, i = 1..N, exactly the chain's
        self.sqrt_abar, self.sqrt_1m_abar = abar.sqrt(), (1 - abar).sqrt()
        self.data = data
        self.opt = torch.optim.Adam(self.net.parameters(), lr=LR, foreach=foreach)
        self.gen = torch.Generator().manual_seed(0)
        self.noise = torch.Generator().manual_seed(1)
        self.perm, self.pos = torch.randperm(N_DATA, generator=self.gen), 0
        self.params = list(self.net.parameters())
        self.shadow = [p.detach().clone() for p in self.params] if ema else None
        self.updates = 0
        self.clip = clip

    def run(self, steps: int) -> None:
        for _ in range(steps):
            if self.pos + BATCH > N_DATA:
                self.perm, self.pos = torch.randperm(N_DATA, generator=self.gen), 0
            x0 = self.data[self.perm[self.pos:self.pos + BATCH]]
            self.pos += BATCH
            i = torch.randint(0, NUM_STEPS, (BATCH,), generator=self.noise)
            eps = torch.randn(x0.shape, generator=self.noise)
            xt = self.sqrt_abar[i, None] * x0 + self.sqrt_1m_abar[i, None] * eps
            loss = (self.net(xt, (i + 1).to(torch.float32) / NUM_STEPS) - eps).pow(2).mean()
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            if self.clip:
                torch.nn.utils.clip_grad_norm_(self.params, 1.0)
            self.opt.step()
            if self.shadow is not None:
                d = min(0.999, (1 + self.updates) / (10 + self.updates))
                with torch.no_grad():
                    torch._foreach_lerp_(self.shadow, [p.detach() for p in self.params], 1 - d)
                self.updates += 1


class TrainerLoop:
    """The Trainer on the same model, data, loss and optimiser."""

    def __init__(self, data: torch.Tensor, defaults: bool) -> None:
        opts = {} if defaults else {"ema_decay": None, "grad_clip": None}
        self.trainer = Trainer(make_model(), data, batch_size=BATCH, lr=LR, optimizer="adam", precision="off",
                               steps=10**9, log_every=100, **opts)

    def run(self, steps: int) -> None:
        self.trainer.fit(self.trainer.step + steps)


def measure(variants: dict[str, Callable[[int], None]], steps: int, repeats: int) -> dict[str, dict[str, list[float]]]:
    """Seconds per run (wall and CPU) of every variant, ``repeats`` interleaved rounds after a warm-up."""
    for run in variants.values():
        run(max(10, steps // 10))
    out: dict[str, dict[str, list[float]]] = {k: {"wall": [], "cpu": []} for k in variants}
    for r in range(repeats):
        names = list(variants) if r % 2 == 0 else list(reversed(variants))
        for name in names:
            w0, c0 = time.perf_counter(), time.process_time()
            variants[name](steps)
            out[name]["wall"].append(time.perf_counter() - w0)
            out[name]["cpu"].append(time.process_time() - c0)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="60 steps x 3 repeats (a smoke test)")
    ap.add_argument("--steps", type=int, default=None, help="optimiser steps per timed run (default 200)")
    ap.add_argument("--repeats", type=int, default=None, help="interleaved rounds (default 15)")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    ap.add_argument("--json", type=str, default=None, help="write the raw timings here")
    args = ap.parse_args(argv)
    steps = args.steps or (60 if args.quick else 200)
    repeats = args.repeats or (3 if args.quick else 15)
    torch.set_num_threads(args.threads)

    data = (torch.randn(N_DATA, 1, generator=torch.Generator().manual_seed(123)) * 2.0 + 5.0)
    variants = {  # pairs adjacent: the order within a round alternates, so each pair runs back to back
        "hand plain": HandLoop(data, ema=False, clip=False).run,
        "trainer plain": TrainerLoop(data, defaults=False).run,
        "hand plain, torch default Adam": HandLoop(data, ema=False, clip=False, foreach=None).run,
        "hand ema+clip": HandLoop(data, ema=True, clip=True).run,
        "trainer defaults": TrainerLoop(data, defaults=True).run,
    }
    times = measure(variants, steps, repeats)
    med = {k: {c: statistics.median(v[c]) for c in ("wall", "cpu")} for k, v in times.items()}

    def sps(name: str, clock: str) -> float:
        return steps * BATCH / med[name][clock]

    rows = [("plain (EMA, clipping off)", "trainer plain", "hand plain", True),
            ("defaults (EMA 0.999, clip 1.0)", "trainer defaults", "hand ema+clip", True),
            ("plain vs hand loop with torch's default Adam", "trainer plain", "hand plain, torch default Adam", False),
            ("defaults vs plain hand loop (cost of EMA + clipping)", "trainer defaults", "hand plain", False)]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, python {platform.python_version()}, {platform.machine()}, "
          f"threads={args.threads}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
          f"load avg {load:.2f}; {steps} steps x batch {BATCH}, median of {repeats}")
    print()
    print("| comparison | Trainer samples/s (CPU) | hand loop samples/s (CPU) | ratio CPU | ratio wall |")
    print("|---|---:|---:|---:|---:|")
    ok = True
    results = []
    for label, tr, hand, target in rows:
        # per-round paired ratios: the two variants of a pair ran back to back, so a drift in machine
        # load between rounds cancels; the median over rounds is the reported ratio
        paired = {c: statistics.median(t / h for t, h in zip(times[tr][c], times[hand][c])) for c in ("cpu", "wall")}
        print(f"| {label} | {sps(tr, 'cpu'):,.0f} | {sps(hand, 'cpu'):,.0f} | {paired['cpu']:.3f} | {paired['wall']:.3f} |")
        results.append({"comparison": label, "trainer": tr, "hand": hand, "ratio_cpu": paired["cpu"],
                        "ratio_wall": paired["wall"], "target": target})
        if target:
            ok &= paired["cpu"] <= TARGET
    print()
    print(f"target: time ratio (Trainer / hand loop) <= {TARGET} for the like-for-like rows: "
          f"{'met' if ok else 'MISSED'}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"steps": steps, "repeats": repeats, "batch": BATCH, "threads": args.threads, "load": load,
                       "times": times, "results": results}, fh, indent=2)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
