"""UNet throughput: sdeflow's Trainer and sampler against hand-written PyTorch loops (issue 4).

Training: ``create_model("unet", in_channels=1, image_size=S)`` (defaults otherwise) under ``vp``
on the digits (``sdeflow.data.images.load_digits``, padded to ``S``), batch ``B``, Adam lr 1e-3
(``foreach=True`` on both sides), EMA and gradient clipping off, full precision (or the same
autocast on both sides with ``--precision``). The hand loop draws a seeded permutation per epoch,
``t ~ U[t_min, 1]``, ``eps ~ N(0, I)``, builds ``x_t = alpha_t x_0 + sigma_t eps`` from the VP
closed form ``log alpha_t = -t^2 (beta_max - beta_min) / 4 - t beta_min / 2`` (Song et al. 2021,
Eq. 33) and minimises ``mean((net(x_t, t) - eps)^2)`` (Ho et al. 2020, Alg. 1); the Trainer calls
``score_model.loss`` (sdeflow's generic denoising score matching). Same initial weights.

Sampling: the ``ode`` sampler with ``method="euler"`` and ``N`` steps against Euler on the VP
probability-flow ODE ``dx/dt = -beta(t)/2 (x + score)`` written by hand
(:func:`sdeflow.bench.hand_loops.hand_ode`: the same ``score_model.score`` calls, time grid and
prior draw); the script checks that both give the same samples (column ``rel diff``).

Timing: every variant is warmed up, then ``--repeats`` interleaved rounds (order reversed every
other round); samples/s from medians, ratios = median over rounds of the paired (back-to-back)
time ratio sdeflow / hand loop, from process CPU time (which a one-thread process waiting for a
busy core does not accrue) and wall time. On CUDA the wall time after ``torch.cuda.synchronize``
is the one that counts. CPU always; CUDA too when available (``--devices``).

Usage::

    python benchmarks/unet_throughput.py             # 30 steps x 9 repeats on CPU (and CUDA if present)
    python benchmarks/unet_throughput.py --quick     # smoke test
    python benchmarks/unet_throughput.py --json out.json --image-size 16 --batch 256
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Callable

import torch

import sdeflow
from sdeflow.bench.hand_loops import hand_ode
from sdeflow.bench.overhead import machine
from sdeflow.data.images import load_digits
from sdeflow.training import Trainer

LR = 1e-3


def make_model(image_size: int, device: torch.device) -> sdeflow.ScoreModel:
    """The default UNet under ``vp``, with fixed initial weights."""
    torch.manual_seed(0)
    net = sdeflow.create_model("unet", in_channels=1, image_size=image_size)
    return sdeflow.ScoreModel(net, sdeflow.create_process("vp")).to(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class HandTrain:
    """The hand-written training loop (see the module docstring)."""

    def __init__(self, data: torch.Tensor, batch: int, device: torch.device, autocast: torch.dtype | None) -> None:
        self.model = make_model(data.shape[-1], device)
        self.net, p = self.model.network, self.model.process
        self.bmin, self.bmax, self.t_min = float(p.beta_min), float(p.beta_max), float(p.t_min)
        self.data, self.batch, self.device, self.autocast = data.to(device), batch, device, autocast
        self.opt = torch.optim.Adam(self.net.parameters(), lr=LR, foreach=True)
        self.perm_gen = torch.Generator().manual_seed(0)
        self.noise = torch.Generator(device=device).manual_seed(1)
        self.perm, self.pos = torch.randperm(data.shape[0], generator=self.perm_gen).to(device), 0

    def run(self, steps: int) -> None:
        n, b = self.data.shape[0], self.batch
        for _ in range(steps):
            if self.pos + b > n:
                self.perm, self.pos = torch.randperm(n, generator=self.perm_gen).to(self.device), 0
            x0 = self.data[self.perm[self.pos:self.pos + b]]
            self.pos += b
            t = self.t_min + (1.0 - self.t_min) * torch.rand(b, generator=self.noise, device=self.device)
            eps = torch.randn(x0.shape, generator=self.noise, device=self.device)
            log_a = (-0.25 * (self.bmax - self.bmin) * t * t - 0.5 * self.bmin * t)[:, None, None, None]
            xt = log_a.exp() * x0 + (-torch.expm1(2.0 * log_a)).sqrt() * eps
            with torch.autocast(self.device.type, dtype=self.autocast or torch.float32,
                                enabled=self.autocast is not None):
                loss = (self.net(xt, t) - eps).pow(2).mean()
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        sync(self.device)


class SdeflowTrain:
    """The Trainer on the same model, data, loss and optimiser."""

    def __init__(self, data: torch.Tensor, batch: int, device: torch.device, precision: str) -> None:
        self.device = device
        self.trainer = Trainer(make_model(data.shape[-1], device), data.to(device), batch_size=batch, lr=LR, optimizer="adam",
                               precision=precision, ema_decay=None, grad_clip=None, steps=10**9, log_every=100)

    def run(self, steps: int) -> None:
        self.trainer.fit(self.trainer.step + steps)
        sync(self.device)


def measure(variants: dict[str, Callable[[], object]], repeats: int) -> dict[str, dict[str, list[float]]]:
    """Wall and CPU seconds of every variant over ``repeats`` interleaved rounds, after a warm-up call each."""
    for run in variants.values():
        run()
    out: dict[str, dict[str, list[float]]] = {k: {"wall": [], "cpu": []} for k in variants}
    for r in range(repeats):
        for name in (list(variants) if r % 2 == 0 else list(reversed(variants))):
            w0, c0 = time.perf_counter(), time.process_time()
            variants[name]()
            out[name]["wall"].append(time.perf_counter() - w0)
            out[name]["cpu"].append(time.process_time() - c0)
    return out


def paired(times: dict[str, dict[str, list[float]]], a: str, b: str, clock: str) -> float:
    return statistics.median(x / y for x, y in zip(times[a][clock], times[b][clock]))


def bench_device(device: torch.device, args: argparse.Namespace) -> list[dict[str, object]]:
    """The training and sampling rows for one device."""
    data = load_digits(args.image_size)
    autocast = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.precision]
    hand, trainer = HandTrain(data, args.batch, device, autocast), SdeflowTrain(data, args.batch, device, args.precision)
    steps = args.steps
    times = measure({"hand": lambda: hand.run(steps), "trainer": lambda: trainer.run(steps)}, args.repeats)
    clock = "wall" if device.type == "cuda" else "cpu"
    rows = [{"device": str(device), "what": f"training, batch {args.batch}, {steps} steps",
             "sdeflow_per_s": steps * args.batch / statistics.median(times["trainer"][clock]),
             "hand_per_s": steps * args.batch / statistics.median(times["hand"][clock]),
             "ratio_cpu": paired(times, "trainer", "hand", "cpu"), "ratio_wall": paired(times, "trainer", "hand", "wall"),
             "rel_diff": None}]

    sm = trainer.trainer.model.eval()
    shape = (args.sample_batch, 1, args.image_size, args.image_size)
    sampler = sdeflow.create_sampler("ode", method="euler", steps=args.sample_steps)
    gen_device = "cuda" if device.type == "cuda" else "cpu"
    out: dict[str, torch.Tensor] = {}

    def run_sdeflow() -> None:
        out["sdeflow"] = sampler.sample(sm, shape, generator=torch.Generator(gen_device).manual_seed(0)).samples
        sync(device)

    def run_hand() -> None:
        out["hand"] = hand_ode(sm, shape, torch.Generator(gen_device).manual_seed(0), args.sample_steps, "euler")[0]
        sync(device)

    stimes = measure({"hand": run_hand, "sdeflow": run_sdeflow}, args.repeats)
    diff = float((out["sdeflow"] - out["hand"]).abs().max() / out["hand"].abs().max().clamp_min(1.0))
    rows.append({"device": str(device), "what": f"sampling, ode euler {args.sample_steps} steps, batch {shape[0]}",
                 "sdeflow_per_s": shape[0] / statistics.median(stimes["sdeflow"][clock]),
                 "hand_per_s": shape[0] / statistics.median(stimes["hand"][clock]),
                 "ratio_cpu": paired(stimes, "sdeflow", "hand", "cpu"),
                 "ratio_wall": paired(stimes, "sdeflow", "hand", "wall"), "rel_diff": diff})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="5 steps x 3 repeats (a smoke test)")
    ap.add_argument("--steps", type=int, default=None, help="optimiser steps per timed run (default 30)")
    ap.add_argument("--repeats", type=int, default=None, help="interleaved rounds (default 9)")
    ap.add_argument("--batch", type=int, default=128, help="training batch (default 128)")
    ap.add_argument("--image-size", type=int, default=8, help="digits padded to this size (default 8)")
    ap.add_argument("--sample-batch", type=int, default=256, help="images per sampling run (default 256)")
    ap.add_argument("--sample-steps", type=int, default=None, help="Euler steps per sampling run (default 50)")
    ap.add_argument("--precision", default="off", choices=("off", "bf16", "fp16"), help="autocast (CUDA), both sides")
    ap.add_argument("--devices", default="auto", help="comma list of devices, or auto: cpu (+ cuda if available)")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    ap.add_argument("--json", type=str, default=None, help="write rows and machine details here")
    args = ap.parse_args(argv)
    args.steps = args.steps or (5 if args.quick else 30)
    args.repeats = args.repeats or (3 if args.quick else 9)
    args.sample_steps = args.sample_steps or (10 if args.quick else 50)
    torch.set_num_threads(args.threads)
    devices = (["cpu"] + (["cuda"] if torch.cuda.is_available() else [])) if args.devices == "auto" \
        else args.devices.split(",")
    info = machine()
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    print(f"torch {torch.__version__}, {info['processor']}, threads={args.threads}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, load avg {info['loadavg']}; "
          f"median of {args.repeats} interleaved rounds")
    print("\n| device | what | sdeflow samples/s | hand loop samples/s | ratio CPU | ratio wall | rel diff |")
    print("|---|---|---:|---:|---:|---:|---:|")
    rows = []
    for dev in devices:
        for row in bench_device(torch.device(dev), args):
            rows.append(row)
            rd = "-" if row["rel_diff"] is None else f"{row['rel_diff']:.1e}"
            print(f"| {row['device']} | {row['what']} | {row['sdeflow_per_s']:,.0f} | {row['hand_per_s']:,.0f} | "
                  f"{row['ratio_cpu']:.3f} | {row['ratio_wall']:.3f} | {rd} |", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": info, "args": vars(args), "rows": rows}, fh, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
