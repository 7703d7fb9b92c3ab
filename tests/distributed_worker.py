"""Run by tests/test_distributed.py under ``torchrun --nproc_per_node 2 --standalone`` (gloo, CPU).

Every case trains (or samples, or benchmarks) data-parallel and rank 0 saves what the test compares
with one process: ``python distributed_worker.py OUT``.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import torch

from sdeflow.cli import main as cli_main
from sdeflow.training import init_distributed, shutdown_distributed

sys.path.insert(0, str(Path(__file__).parent))
from distributed_cases import CASES, make_trainer  # noqa: E402


def _failing_rank_raises_everywhere(ctx: Any) -> str:
    """run_bench picking up the process group by itself, with target preparation failing on rank 1
    only: every rank must raise (naming rank 1) instead of rank 0 waiting in the gather forever."""
    from sdeflow.bench import BenchSpec, runner
    from sdeflow.errors import SdeflowError

    real = runner.prepare_target

    def broken(name: str, *a: Any, **kw: Any) -> Any:
        if ctx.rank == 1:
            raise RuntimeError(f"no reference sets for {name} here")
        return real(name, *a, **kw)

    spec = BenchSpec(targets=["gauss1d"], processes=["vp", "ve"], samplers=["ode euler"], nfe=[2], samples=20,
                     paths=4, entropy_samples=100, overhead=False, limits=False)
    runner.prepare_target = broken
    try:
        runner.run_bench(spec, progress=False)
    except SdeflowError as exc:
        return str(exc)
    finally:
        runner.prepare_target = real
    return ""


def main() -> None:
    out = Path(sys.argv[1])
    ctx = init_distributed(device="cpu")
    assert ctx.world_size == 2 and ctx.backend == "gloo", ctx
    report: dict = {"world_size": ctx.world_size}
    # the Trainer API on every data kind, uneven shards included
    for name in CASES:
        tr = make_trainer(name, distributed=ctx)
        result = tr.fit()
        if ctx.is_main:
            torch.save({"model": tr.model.state_dict(), "ema": tr.ema.state_dict(), "losses": result.losses},
                       out / f"{name}.pt")
    # resume: 6 steps with checkpoints from rank 0, a fresh Trainer on each rank resumes, 6 more
    first = make_trainer("tensor", distributed=ctx, out_dir=out / "resume", checkpoint_every=3)
    first.fit(6)
    del first
    torch.manual_seed(1000 + ctx.rank)  # a different global RNG state per rank: resume must restore it
    second = make_trainer("tensor", distributed=ctx, out_dir=out / "resume", checkpoint_every=3)
    report["resumed_at"] = second.resume()
    second.fit()
    if ctx.is_main:
        torch.save({"model": second.model.state_dict(), "ema": second.ema.state_dict()}, out / "resumed.pt")
    # the command line: sdeflow train, sample and likelihood under torchrun
    args = json.loads((out / "cli_args.json").read_text())
    cli_main(["train", *args["train"], "--out", str(out / "cli")], standalone_mode=False)
    cli_main(["sample", str(out / "cli"), *args["sample"], "--out", str(out / "samples.pt")], standalone_mode=False)
    cli_main(["likelihood", str(out / "cli"), *args["likelihood"], "--out", str(out / "likelihood.json")],
             standalone_mode=False)
    # sdeflow bench: blocks split over the ranks; each rank is given its own --out and stdout file,
    # so the test sees that rank 1 writes and prints nothing
    with open(out / f"bench_stdout_{ctx.rank}.txt", "w") as fh, contextlib.redirect_stdout(fh):
        cli_main(["bench", *args["bench"], "--out", str(out / f"bench_rank{ctx.rank}")], standalone_mode=False)
    (out / f"bench_error_{ctx.rank}.txt").write_text(_failing_rank_raises_everywhere(ctx))
    ctx.barrier()
    if ctx.is_main:
        (out / "report.json").write_text(json.dumps(report))
    shutdown_distributed()


if __name__ == "__main__":
    main()
