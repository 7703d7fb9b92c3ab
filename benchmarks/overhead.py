"""Overhead of the ``sde`` and ``ode`` samplers against hand-written PyTorch loops (issue 2).

The loops and the timing machinery live in :mod:`sdeflow.bench.hand_loops` and
:mod:`sdeflow.bench.overhead` (``sdeflow bench`` reports the same ratio for every sampler with a
hand loop); this script runs issue 2's problems with its targets.

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
import os
import sys
from pathlib import Path

import torch

from sdeflow.bench.hand_loops import hand_ode, hand_sde_euler
from sdeflow.bench.overhead import (
    Problem,
    Variant,
    compare,
    hand_variant,
    machine,
    make_problems,
    score_only,
    sdeflow_variant,
    time_group,
    wait_quiet,
)

TARGETS = {"1d": 2.0, "mlp": 1.10, "echo": None}


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
        ("ode euler", hand_variant("hand loop", hand_ode, sm, shape, method="euler"), [
            sdeflow_variant("sdeflow", sm, shape, "ode", method="euler"),
            sdeflow_variant("sdeflow check_finite=False", sm, shape, "ode", method="euler", check_finite=False),
        ]),
        ("ode rk4", hand_variant("hand loop", hand_ode, sm, shape, method="rk4"), [
            sdeflow_variant("sdeflow", sm, shape, "ode", method="rk4"),
            sdeflow_variant("sdeflow check_finite=False", sm, shape, "ode", method="rk4", check_finite=False),
        ]),
    ]


QUIET = {"wait": 0.0, "quiet": 0, "busy": 0}


def _before_run() -> None:
    if QUIET["wait"] > 0:
        QUIET["quiet" if wait_quiet(QUIET["wait"]) else "busy"] += 1


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
    info.update(steps=steps, repeats=repeats, loadavg_start=info.pop("loadavg"))
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
            time_group([hand, *variants], steps, reps, seed=0, before_run=_before_run)
            for v in [hand, *variants]:
                row = compare(hand, v)
                reference = "interval" in v.label or "check_finite" in v.label or v is hand
                target = None if reference else TARGETS[p.key]
                row.update(problem=p.key, sampler=name, target=target,
                           rel_diff=None if "interval" in v.label else row["rel_diff"])
                rows.append(row)
                flag = "" if target is None else ("ok" if row["ratio"] <= target else "MISS")
                tgt = f"{target:.2f}" if target else ""
                dstr = "-" if row["rel_diff"] is None else f"{row['rel_diff']:.1e}"
                print(f"{name:<11} {v.label:<29} {v.nfe:>5} {row['median_s']:>9.3f} {row['ratio']:>6.2f} "
                      f"{row['paired_ratio']:>6.2f} {tgt:>6} {row['min_s']:>7.3f} {row['ratio_of_min']:>6.2f} "
                      f"{row['cpu_median_s']:>7.3f} {row['cpu_ratio']:>6.2f} {row['overhead_us_per_eval']:>8.0f} "
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
