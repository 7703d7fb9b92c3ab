"""Overhead of sdeflow's samplers against hand-written loops with the same arithmetic (issues 2 and 6).

Each sampler is timed against its loop in :mod:`sdeflow.bench.hand_loops`: same formulas, same
score callable, same number of evaluations, same noise stream. With one seed both produce the
same samples up to rounding (``rel_diff``: ``max |difference| / max(1, max |hand-loop sample|)``),
so the ratio sdeflow / hand loop measures only the integration machinery (torchsde/torchdiffeq
solver code, sdeflow's adapters, the non-finite watch and the NFE count).

Timing: ``time.perf_counter`` around the whole ``sample`` call (prior draw included on both
sides), a short warm-up of every variant, then ``repeats`` rounds in which the variants run
interleaved (a drift in machine load hits all of them alike). Reported: medians, the median of
the per-round ratios (``paired``), minima and median process CPU time (``time.process_time``; on a
shared machine the CPU time of a one-thread run does not count the time spent waiting for a core).
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..core.score_model import ScoreModel
from ..data.datasets import gaussian_1d
from ..plugins.api import create_model, create_process, create_sampler
from .hand_loops import HAND_LOOPS

Run = Callable[[torch.Generator], "tuple[torch.Tensor, int]"]


@dataclass
class Variant:
    """One thing to time: ``make(steps)`` builds ``run(generator) -> (samples, nfe)``."""

    label: str
    make: Callable[[int], Run]
    times: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    nfe: int = 0
    samples: torch.Tensor | None = None


def sdeflow_variant(label: str, sm: ScoreModel, shape: tuple[int, ...], name: str, **opts: Any) -> Variant:
    """A sdeflow sampler ``name`` with ``opts`` and ``steps=`` as the variable."""

    def make(steps: int) -> Run:
        sampler = create_sampler(name, steps=steps, **opts)

        def run(gen: torch.Generator) -> tuple[torch.Tensor, int]:
            r = sampler.sample(sm, shape, gen)
            return r.samples, r.nfe

        return run

    return Variant(label, make)


def hand_variant(label: str, fn: Callable[..., Any], sm: ScoreModel, shape: tuple[int, ...], **opts: Any) -> Variant:
    """A hand loop ``fn(sm, shape, generator, steps=..., **opts)``."""
    return Variant(label, lambda steps: (lambda gen: fn(sm, shape, gen, steps=steps, **opts)))


def time_group(variants: list[Variant], steps: int, repeats: int, seed: int, warmup_steps: int = 20,
               before_run: Callable[[], None] | None = None) -> None:
    """Warm up every variant with a short run, then time ``repeats`` interleaved rounds of ``steps``
    steps (the first round's samples and NFE are kept for the comparison).

    Args:
        before_run: called before each timed run (e.g. to wait for an idle machine).
    """
    for v in variants:
        v.make(min(warmup_steps, steps))(torch.Generator().manual_seed(seed))
    runs = [v.make(steps) for v in variants]
    for r in range(repeats):
        for v, run in zip(variants, runs):
            if before_run is not None:
                before_run()
            gen = torch.Generator().manual_seed(seed)
            c0, t0 = time.process_time(), time.perf_counter()
            samples, nfe = run(gen)
            v.times.append(time.perf_counter() - t0)
            v.cpu.append(time.process_time() - c0)
            if r == 0:
                v.samples, v.nfe = samples, nfe
            if nfe != v.nfe:
                raise RuntimeError(f"{v.label}: NFE changed between repeats ({v.nfe} then {nfe})")


def compare(hand: Variant, v: Variant) -> dict[str, Any]:
    """Ratios of ``v`` against ``hand`` (both timed by :func:`time_group`) and their sample difference."""
    th, tv = statistics.median(hand.times), statistics.median(v.times)
    assert hand.samples is not None and v.samples is not None
    diff = float((v.samples - hand.samples).abs().max() / hand.samples.abs().max().clamp_min(1.0))
    return dict(variant=v.label, nfe=v.nfe, hand_nfe=hand.nfe, median_s=tv, hand_median_s=th, ratio=tv / th,
                paired_ratio=statistics.median(a / b for a, b in zip(v.times, hand.times)),
                min_s=min(v.times), ratio_of_min=min(v.times) / min(hand.times),
                cpu_median_s=statistics.median(v.cpu), cpu_ratio=statistics.median(v.cpu) / statistics.median(hand.cpu),
                overhead_us_per_eval=(tv - th) / max(1, v.nfe) * 1e6, times_s=list(v.times), cpu_s=list(v.cpu),
                repeats=len(v.times), rel_diff=diff)


def score_only(sm: ScoreModel, shape: tuple[int, ...], calls: int, repeats: int) -> float:
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


# ---------------------------------------------------------------------------- problems
@dataclass
class Problem:
    """A score model, a sample shape and a description."""

    key: str
    title: str
    score_model: ScoreModel
    shape: tuple[int, ...]


class EchoNet(torch.nn.Module):
    """``net(x, t_cond) = x``: a network that costs nothing, so a sampler's time is its overhead."""

    def forward(self, x: torch.Tensor, t_cond: torch.Tensor) -> torch.Tensor:
        return x


def make_problems(batch_1d: int, batch_mlp: int) -> list[Problem]:
    """The overhead benchmark's problems: the 1-D exact score (``N(5, 2^2)`` under ``vp``), an untrained 3x128 MLP under
    ``vp``, and the free network at the MLP's batch (``echo``)."""
    torch.manual_seed(0)
    exact = gaussian_1d().score_model(create_process("vp"))
    net = create_model("mlp", dim=2, hidden=128, depth=3)
    mlp = ScoreModel(net, create_process("vp")).eval()
    echo = ScoreModel(EchoNet(), create_process("vp"))
    return [
        Problem("1d", f"1-D N(5,2^2), vp, exact score, batch {batch_1d}", exact, (batch_1d, 1)),
        Problem("mlp", f"MLP 3x128 (dim 2), vp, batch {batch_mlp}", mlp, (batch_mlp, 2)),
        Problem("echo", f"free network net(x, t) = x (dim 2), vp, batch {batch_mlp}: the overhead per step "
                        "itself (no target)", echo, (batch_mlp, 2)),
    ]


# ---------------------------------------------------------------------------- shared-machine helpers
def others_busy(interval: float = 1.0) -> float | None:
    """CPU cores used by *other* processes over ``interval`` seconds while this one sleeps
    (``/proc/stat``; ``None`` where it cannot be read)."""
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


def machine() -> dict[str, Any]:
    """Versions, processor, threads and load average (for the record of a timing run)."""
    from importlib.metadata import PackageNotFoundError, version

    def ver(dist: str) -> str:
        try:
            return version(dist)
        except PackageNotFoundError:
            return "?"

    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), None)
    except OSError:
        pass
    return {"python": platform.python_version(), "torch": torch.__version__, "torchsde": ver("torchsde"),
            "torchdiffeq": ver("torchdiffeq"), "platform": platform.platform(),
            "processor": cpu or platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None}


# ---------------------------------------------------------------------------- the suite's overhead table
def suite_overhead(score_model: ScoreModel, shape: tuple[int, ...], configs: list[tuple[str, str, dict[str, Any]]],
                   repeats: int, seed: int = 0) -> list[dict[str, Any]]:
    """Time each ``(label, sampler name, options)`` that has a hand loop in
    :data:`~sdeflow.bench.hand_loops.HAND_LOOPS` against it (interleaved, ``repeats`` rounds).

    Returns:
        One dict per configuration (:func:`compare`'s keys plus ``sampler`` and ``options``).
    """
    rows = []
    for label, name, options in configs:
        fn = HAND_LOOPS.get(label)
        if fn is None:
            continue
        opts = dict(options)
        steps = int(opts.pop("steps"))
        hand = hand_variant("hand loop", fn, score_model, shape, **opts)
        mine = sdeflow_variant(label, score_model, shape, name, **opts)
        time_group([hand, mine], steps, repeats, seed, warmup_steps=min(steps, 4))
        row = compare(hand, mine)
        row.update(sampler=label, options=" ".join(f"{k}={v}" for k, v in options.items()))
        rows.append(row)
    return rows
