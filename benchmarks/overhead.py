"""Overhead of the ``sde`` and ``ode`` samplers against hand-written PyTorch loops (issue 2).

Each sdeflow sampler is timed against a plain loop doing the SAME arithmetic: the same process
formulas (VP: ``beta(t) = beta_min + t (beta_max - beta_min)``, ``f = -beta x / 2``,
``g^2 = beta``), the same score callable (``score_model.score(x, t, check=False)``), the same
number of score evaluations and ``torch.randn`` from the same generator for the noise. With the
same seed both sides produce the same samples up to float rounding, which the script checks
(column ``rel diff``: max |difference| / max(1, max |hand-loop sample|)), so the ratio
sdeflow / hand loop measures only the integration machinery: the torchsde / torchdiffeq solver
code, sdeflow's adapters, the derived reverse SDE / probability-flow ODE objects, the
non-finite watch and the NFE count.

Problems:

* ``1d``: ``N(5, 2^2)`` under ``vp`` with its exact score (``GaussianMixture.score_model``),
  10,000 samples: a cheap score, so per-step overhead is exposed (target ratio <= 2).
* ``mlp``: an untrained ``create_model("mlp", dim=2, hidden=128, depth=3)`` in a
  :class:`sdeflow.ScoreModel` under ``vp``, batch 4096: a realistic network cost per step
  (target ratio <= 1.10).
* ``echo``: a free network ``net(x, t) = x`` at the MLP's shape (no target): the time per
  step is the overhead itself, measured without the MLP's noise; the extra microseconds per
  evaluation it shows, divided by the MLP's time per evaluation, predict the MLP's ratio.

Samplers: ``sde`` euler (denoising on, as by default: N + 1 evaluations) with
``brownian="fast"`` (default), ``check_finite=False`` and ``brownian="interval"`` (references,
no target); ``ode`` euler and rk4 (N and 4 N evaluations) with ``check_finite`` on and off.

Usage::

    python benchmarks/overhead.py                 # full run: 1000 steps (long on 2 busy cores)
    python benchmarks/overhead.py --quick         # 100 steps, 2 repeats: a smoke test
    python benchmarks/overhead.py --out DIR       # also write DIR/overhead.json and DIR/overhead.md
    python benchmarks/overhead.py --problems 1d --samplers "sde euler" --threads 1 --wait-quiet 60

Timing: ``time.perf_counter`` around the whole ``sample`` call (prior draw included on both
sides), a short warm-up run of every variant, then ``--repeats`` rounds in which the variants
run interleaved (a drift in machine load hits all of them alike); the median is reported, with
the median of the per-round ratios (``paired``: each round's sdeflow time over the same round's
hand-loop time), the minimum, the median process CPU time (``time.process_time``; on a shared
machine the CPU time of a one-thread run does not count the time the process waited for a core)
and the extra time per score evaluation, ``(median - hand-loop median) / NFE``.
``torch.set_num_threads(--threads)`` (default 2, as in CI). Exit status 1 when a full run misses
a target (by the median wall-time ratio).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

import sdeflow
from sdeflow.datasets import gaussian_1d

TARGETS = {"1d": 2.0, "mlp": 1.10, "echo": None}


# ---------------------------------------------------------------------------- problems
@dataclass
class Problem:
    """A score model, a sample shape and a description."""

    key: str
    title: str
    score_model: sdeflow.ScoreModel
    shape: tuple[int, ...]


class EchoNet(torch.nn.Module):
    """``net(x, t_cond) = x``: a network that costs nothing, so a sampler's time is its overhead."""

    def forward(self, x: torch.Tensor, t_cond: torch.Tensor) -> torch.Tensor:
        return x


def make_problems(batch_1d: int, batch_mlp: int) -> list[Problem]:
    """The two benchmark problems of issue 2, and the free network at the MLP's batch (``echo``)."""
    torch.manual_seed(0)
    vp = sdeflow.create_process("vp")
    exact = gaussian_1d().score_model(vp)
    net = sdeflow.create_model("mlp", dim=2, hidden=128, depth=3)
    mlp = sdeflow.ScoreModel(net, sdeflow.create_process("vp")).eval()
    echo = sdeflow.ScoreModel(EchoNet(), sdeflow.create_process("vp"))
    return [
        Problem("1d", f"1-D N(5,2^2), vp, exact score, batch {batch_1d}", exact, (batch_1d, 1)),
        Problem("mlp", f"MLP 3x128 (dim 2), vp, batch {batch_mlp}", mlp, (batch_mlp, 2)),
        Problem("echo", f"free network net(x, t) = x (dim 2), vp, batch {batch_mlp}: the overhead per step "
                        "itself (no target)", echo, (batch_mlp, 2)),
    ]


# ---------------------------------------------------------------------------- hand loops
class Counted:
    """``score_model.score(x, t, check=False)`` with a call counter (the hand loops' NFE)."""

    def __init__(self, score_model: sdeflow.ScoreModel) -> None:
        self.sm, self.nfe = score_model, 0

    def __call__(self, x: torch.Tensor, t: float) -> torch.Tensor:
        self.nfe += 1
        return self.sm.score(x, torch.full((x.shape[0],), t, dtype=x.dtype), check=False)


def _vp(sm: sdeflow.ScoreModel) -> tuple[float, float, float, float]:
    p = sm.process
    return float(p.beta_min), float(p.beta_max), float(p.t_min), float(p.t_max)


def hand_sde_euler(sm: sdeflow.ScoreModel, shape: tuple[int, ...], gen: torch.Generator, steps: int):
    """Euler-Maruyama on the reverse VP SDE ``dx = [f - g^2 score] dt + g dw`` (Song et al. 2021,
    Eq. 6), then the posterior-mean denoising step, written out by hand."""
    bmin, bmax, t_end, t_start = _vp(sm)
    score = Counted(sm)
    with torch.no_grad():
        x = sm.prior_sample(shape, gen)
        h = (t_start - t_end) / steps
        for k in range(steps):
            t = t_start - k * h
            beta = bmin + t * (bmax - bmin)
            drift = -0.5 * beta * x - beta * score(x, t)
            x = x - h * drift + math.sqrt(h * beta) * torch.randn(x.shape, generator=gen, dtype=x.dtype)
        score.nfe += 1
        x = sm.x0(x, torch.full((shape[0],), t_end, dtype=x.dtype), check=False)
    return x, score.nfe


def _velocity(score: Counted, bmin: float, bmax: float) -> Callable[[torch.Tensor, float], torch.Tensor]:
    def v(x: torch.Tensor, t: float) -> torch.Tensor:
        beta = bmin + t * (bmax - bmin)
        return -0.5 * beta * x - 0.5 * beta * score(x, t)  # f - g^2 score / 2 (Song et al. 2021, Eq. 13)
    return v


def hand_ode_euler(sm: sdeflow.ScoreModel, shape: tuple[int, ...], gen: torch.Generator, steps: int):
    """Euler on the probability-flow ODE, by hand."""
    bmin, bmax, t_end, t_start = _vp(sm)
    score = Counted(sm)
    v = _velocity(score, bmin, bmax)
    with torch.no_grad():
        x = sm.prior_sample(shape, gen)
        dt = (t_end - t_start) / steps
        for k in range(steps):
            x = x + dt * v(x, t_start + k * dt)
    return x, score.nfe


def hand_ode_rk4(sm: sdeflow.ScoreModel, shape: tuple[int, ...], gen: torch.Generator, steps: int):
    """Classical fourth-order Runge-Kutta (3/8 rule, as torchdiffeq's ``rk4``) on the
    probability-flow ODE, by hand."""
    bmin, bmax, t_end, t_start = _vp(sm)
    score = Counted(sm)
    v = _velocity(score, bmin, bmax)
    with torch.no_grad():
        x = sm.prior_sample(shape, gen)
        dt = (t_end - t_start) / steps
        for k in range(steps):
            t0 = t_start + k * dt
            k1 = v(x, t0)
            k2 = v(x + dt * k1 / 3, t0 + dt / 3)
            k3 = v(x + dt * (k2 - k1 / 3), t0 + 2 * dt / 3)
            k4 = v(x + dt * (k1 - k2 + k3), t0 + dt)
            x = x + (k1 + 3 * (k2 + k3) + k4) * dt * 0.125
    return x, score.nfe


# ---------------------------------------------------------------------------- variants
Run = Callable[[torch.Generator], tuple[torch.Tensor, int]]


@dataclass
class Variant:
    """One thing to time: ``make(steps)`` builds ``run(generator) -> (samples, nfe)``."""

    label: str
    make: Callable[[int], Run]
    times: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    nfe: int = 0
    samples: torch.Tensor | None = None


def sdeflow_variant(label: str, sm: sdeflow.ScoreModel, shape: tuple[int, ...], name: str, **opts) -> Variant:
    def make(steps: int) -> Run:
        sampler = sdeflow.create_sampler(name, steps=steps, **opts)

        def run(gen: torch.Generator) -> tuple[torch.Tensor, int]:
            r = sampler.sample(sm, shape, gen)
            return r.samples, r.nfe

        return run

    return Variant(label, make)


def hand_variant(label: str, fn, sm: sdeflow.ScoreModel, shape: tuple[int, ...]) -> Variant:  # type: ignore[no-untyped-def]
    return Variant(label, lambda steps: (lambda gen: fn(sm, shape, gen, steps)))


def groups(p: Problem, interval: bool = True) -> list[tuple[str, Variant, list[Variant]]]:
    """``(group name, hand loop, sdeflow variants)`` for one problem."""
    sm, shape = p.score_model, p.shape
    sde = [
        sdeflow_variant("sdeflow", sm, shape, "sde", method="euler"),
        sdeflow_variant("sdeflow check_finite=False", sm, shape, "sde", method="euler", check_finite=False),
    ]
    if interval:
        sde.append(sdeflow_variant("sdeflow brownian='interval'", sm, shape, "sde", method="euler",
                                   brownian="interval"))
    return [
        ("sde euler", hand_variant("hand loop", hand_sde_euler, sm, shape), sde),
        ("ode euler", hand_variant("hand loop", hand_ode_euler, sm, shape), [
            sdeflow_variant("sdeflow", sm, shape, "ode", method="euler"),
            sdeflow_variant("sdeflow check_finite=False", sm, shape, "ode", method="euler", check_finite=False),
        ]),
        ("ode rk4", hand_variant("hand loop", hand_ode_rk4, sm, shape), [
            sdeflow_variant("sdeflow", sm, shape, "ode", method="rk4"),
            sdeflow_variant("sdeflow check_finite=False", sm, shape, "ode", method="rk4", check_finite=False),
        ]),
    ]


def others_busy(interval: float = 1.0) -> float | None:
    """CPU cores used by *other* processes over ``interval`` seconds while this one sleeps
    (from ``/proc/stat``; ``None`` where it cannot be read)."""
    def busy() -> int:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        return sum(v) - v[3] - v[4]  # all but idle and iowait

    try:
        b0 = busy()
        time.sleep(interval)
        return (busy() - b0) / os.sysconf("SC_CLK_TCK") / interval
    except (OSError, ValueError):
        return None


def wait_quiet(max_wait: float, threshold: float = 0.15) -> bool:
    """Wait (up to ``max_wait`` s) until other processes use less than ``threshold`` cores."""
    deadline = time.monotonic() + max_wait
    while True:
        used = others_busy()
        if used is None or used < threshold:
            return True
        if time.monotonic() > deadline:
            return False


QUIET = {"wait": 0.0, "quiet": 0, "busy": 0}


def time_group(variants: list[Variant], steps: int, repeats: int, seed: int, warmup_steps: int = 20) -> None:
    """Warm up every variant with a short run, then time ``repeats`` interleaved rounds of
    ``steps`` steps (the first round's samples and NFE are kept for the comparison). With
    ``--wait-quiet`` every timed run waits for the other processes on the machine to go idle."""
    for v in variants:
        v.make(min(warmup_steps, steps))(torch.Generator().manual_seed(seed))
    runs = [v.make(steps) for v in variants]
    for r in range(repeats):
        for v, run in zip(variants, runs):
            if QUIET["wait"] > 0:
                QUIET["quiet" if wait_quiet(QUIET["wait"]) else "busy"] += 1
            gen = torch.Generator().manual_seed(seed)
            c0, t0 = time.process_time(), time.perf_counter()
            samples, nfe = run(gen)
            v.times.append(time.perf_counter() - t0)
            v.cpu.append(time.process_time() - c0)
            if r == 0:
                v.samples, v.nfe = samples, nfe
            assert nfe == v.nfe


def score_only(sm: sdeflow.ScoreModel, shape: tuple[int, ...], calls: int, repeats: int) -> float:
    """Median time of ``calls`` bare score evaluations at a fixed state (the floor of any sampler)."""
    x = sm.prior_sample(shape, torch.Generator().manual_seed(0))
    t = torch.full((shape[0],), 0.5, dtype=x.dtype)
    out = []
    with torch.no_grad():
        sm.score(x, t, check=False)
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(calls):
                sm.score(x, t, check=False)
            out.append(time.perf_counter() - t0)
    return statistics.median(out)


# ---------------------------------------------------------------------------- main
def machine() -> dict[str, object]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchsde": _version("torchsde"),
        "torchdiffeq": _version("torchdiffeq"),
        "platform": platform.platform(),
        "processor": _cpu_model() or platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "loadavg_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _version(dist: str) -> str:
    from importlib.metadata import version

    try:
        return version(dist)
    except Exception:  # pragma: no cover
        return "?"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="100 steps, 2 repeats (smoke test)")
    ap.add_argument("--steps", type=int, default=None, help="fixed steps (default 1000; 100 with --quick)")
    ap.add_argument("--repeats", type=int, default=None, help="timed rounds (default 5; 2 with --quick)")
    ap.add_argument("--mlp-repeats", type=int, default=None,
                    help="timed rounds for the MLP problem (default: as --repeats)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2, as in CI)")
    ap.add_argument("--problems", default="1d,mlp,echo", help="comma-separated subset of: 1d, mlp, echo")
    ap.add_argument("--samplers", default="sde euler,ode euler,ode rk4",
                    help="comma-separated subset of: sde euler, ode euler, ode rk4")
    ap.add_argument("--no-interval", action="store_true", help="skip the brownian='interval' reference")
    ap.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                    help="before each timed run wait up to S seconds for other processes to go idle "
                         "(for shared machines; /proc/stat)")
    ap.add_argument("--out", type=Path, default=None, help="directory for overhead.json and overhead.md")
    args = ap.parse_args(argv)
    steps = args.steps or (100 if args.quick else 1000)
    repeats = args.repeats or (2 if args.quick else 5)
    torch.set_num_threads(args.threads)
    QUIET["wait"] = args.wait_quiet
    wanted = set(args.problems.split(","))

    info = machine()
    info.update(steps=steps, repeats=repeats)
    rows: list[dict[str, object]] = []
    notes: dict[str, float] = {}
    print(f"# sdeflow sampler overhead: {steps} fixed steps, median of {repeats}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    for p in make_problems(10_000, 4096):
        if p.key not in wanted:
            continue
        reps = args.mlp_repeats if (p.key == "mlp" and args.mlp_repeats) else repeats
        so = score_only(p.score_model, p.shape, steps, reps)
        notes[p.key] = so
        print(f"\n## {p.title}\nbare score, {steps} calls: {so:.3f} s")
        print(f"{'sampler':<11} {'variant':<29} {'NFE':>5} {'median s':>9} {'ratio':>6} {'paired':>6} {'target':>6} "
              f"{'min s':>7} {'ratio':>6} {'cpu s':>7} {'ratio':>6} {'+us/eval':>8} {'rel diff':>9}")
        for name, hand, variants in groups(p, interval=not args.no_interval):
            if name not in args.samplers.split(","):
                continue
            time_group([hand, *variants], steps, reps, seed=0)
            th, th_min, th_cpu = statistics.median(hand.times), min(hand.times), statistics.median(hand.cpu)
            for v in [hand, *variants]:
                tv, tv_min, tv_cpu = statistics.median(v.times), min(v.times), statistics.median(v.cpu)
                ratio, ratio_min, ratio_cpu = tv / th, tv_min / th_min, tv_cpu / th_cpu
                diff = float((v.samples - hand.samples).abs().max() / hand.samples.abs().max().clamp_min(1.0))
                reference = "interval" in v.label or "check_finite" in v.label or v is hand
                target = None if reference else TARGETS[p.key]
                paired = statistics.median(a / b for a, b in zip(v.times, hand.times))
                per_eval_us = (tv - th) / max(1, v.nfe) * 1e6
                row = dict(problem=p.key, sampler=name, variant=v.label, nfe=v.nfe, median_s=tv, min_s=tv_min,
                           times_s=v.times, ratio=ratio, ratio_of_min=ratio_min, cpu_median_s=tv_cpu,
                           cpu_s=v.cpu, cpu_ratio=ratio_cpu, repeats=len(v.times), target=target,
                           paired_ratio=paired, overhead_us_per_eval=per_eval_us,
                           rel_diff=None if "interval" in v.label else diff)
                rows.append(row)
                flag = "" if target is None else ("ok" if ratio <= target else "MISS")
                tgt = f"{target:.2f}" if target else ""
                dstr = "-" if row["rel_diff"] is None else f"{diff:.1e}"
                print(f"{name:<11} {v.label:<29} {v.nfe:>5} {tv:>9.3f} {ratio:>6.2f} {paired:>6.2f} {tgt:>6} "
                      f"{tv_min:>7.3f} {ratio_min:>6.2f} {tv_cpu:>7.3f} {ratio_cpu:>6.2f} {per_eval_us:>8.0f} "
                      f"{dstr:>9} {flag}")
                if v is not hand and v.nfe != hand.nfe:
                    print(f"  WARNING: NFE differs from the hand loop ({hand.nfe})")
            sys.stdout.flush()
    info["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    if args.wait_quiet > 0:
        info["quiet_runs"], info["busy_runs"] = QUIET["quiet"], QUIET["busy"]
        print(f"\nwait-quiet: {QUIET['quiet']} timed runs started on an idle machine, {QUIET['busy']} did not")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "overhead.json").write_text(json.dumps(dict(machine=info, score_only_s=notes, rows=rows),
                                                           indent=1, default=str))
        (args.out / "overhead.md").write_text(markdown(info, notes, rows))
        print(f"\nwrote {args.out / 'overhead.json'} and {args.out / 'overhead.md'}")
    misses = [r for r in rows if r["target"] is not None and r["ratio"] > r["target"]]
    return 1 if misses and not args.quick else 0


def _load(v: object) -> str:
    return "?" if not v else "/".join(f"{float(x):.2f}" for x in v)  # type: ignore[union-attr]


def markdown(info: dict[str, object], notes: dict[str, float], rows: list[dict[str, object]]) -> str:
    """The results as a markdown table."""
    reps = sorted({int(r["repeats"]) for r in rows})
    lines = [f"{info['steps']} fixed steps, median of {'/'.join(map(str, reps))} runs; torch {info['torch']}, "
             f"torchsde {info['torchsde']}, torchdiffeq {info['torchdiffeq']}, {info['torch_threads']} threads, "
             f"{info['cpu_count']} CPUs ({info['processor']}); load average at start {_load(info['loadavg_start'])}, "
             f"at end {_load(info.get('loadavg_end'))}"
             + (f"; {info['quiet_runs']} timed runs started on an idle machine, {info['busy_runs']} on a busy one"
                if "quiet_runs" in info else "") + ".", ""]
    lines += ["| problem | sampler | variant | NFE | median s | ratio | paired ratio | target | min s | ratio of min "
              "| CPU s | CPU ratio | extra us per eval | rel diff |",
              "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        tgt = "" if r["target"] is None else f"<= {r['target']:.2f}"
        diff = "-" if r["rel_diff"] is None else f"{r['rel_diff']:.1e}"
        lines.append(f"| {r['problem']} | {r['sampler']} | {r['variant']} | {r['nfe']} | {r['median_s']:.3f} | "
                     f"{r['ratio']:.2f} | {r['paired_ratio']:.2f} | {tgt} | {r['min_s']:.3f} | {r['ratio_of_min']:.2f} | "
                     f"{r['cpu_median_s']:.3f} | {r['cpu_ratio']:.2f} | {r['overhead_us_per_eval']:.0f} | {diff} |")
    lines += [""] + [f"Bare score, {info['steps']} calls ({k}): {v:.3f} s" for k, v in notes.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
