"""Data-parallel training: 2 gloo processes on CPU equal one process with the same global batch.

The in-process tests check the pieces (shard bounds, the sharded generator, the sharded data
order). ``test_two_gloo_processes_equal_one`` launches tests/distributed_worker.py under
``python -m torch.distributed.run --nproc_per_node 2 --standalone`` (the rendezvous picks a free
port) and compares, in float64:

* the Trainer API on tensor, distribution and iterable data and on NCSN's discrete times, each
  with uneven shards (and one step where a rank holds no row): weights, EMA and logged losses;
* a run interrupted after 6 steps and resumed by fresh Trainers on both ranks, against a straight
  single-process run;
* ``sdeflow train``, ``sdeflow sample`` and ``sdeflow likelihood`` under torchrun against the same
  commands in one process;
* ``sdeflow bench`` with its (target, process) blocks split over the ranks against one process:
  every column but the wall times equal (each block runs the same single-threaded code wherever it
  runs, so they agree to the last bit; 1e-12 relative leaves room for a BLAS that reduces
  differently), only rank 0 prints and writes, and a rank that fails makes every rank raise.

Equality is up to floating-point summation order (gradients are all-reduced instead of summed in
one backward pass): after 8-12 Adam steps in float64 the differences are ~1e-16; the tolerance
1e-9 leaves six orders of margin while any sharding, weighting or randomness error (which changes
weights at the 1e-3 level) fails it.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from click.testing import CliRunner

from sdeflow.bench.ranks import assign_blocks
from sdeflow.cli import main as cli_main
from sdeflow.data.datasets import nine_gaussians
from sdeflow.training import BatchSource, load_checkpoint
from sdeflow.utils.shapes import rand, randn
from sdeflow.utils.sharding import ShardedGenerator, shard_bounds

sys.path.insert(0, str(Path(__file__).parent))
from distributed_cases import CASES, make_trainer  # noqa: E402

HERE = Path(__file__).parent
TOL = dict(rtol=1e-9, atol=1e-9)
CLI_ARGS = {
    "train": ["--process", "vp", "--model-opt", "hidden=16", "--model-opt", "depth=1", "--data", "nine_gaussians",
              "--data-opt", "n=40", "--steps", "10", "--batch-size", "9", "--checkpoint-every", "5", "--dtype",
              "float64", "--device", "cpu", "--no-progress", "--seed", "3", "--train-opt", "warmup_steps=2",
              "--train-opt", "log_every=2"],
    "sample": ["--sampler", "ode", "--sampler-opt", "method=rk4", "--sampler-opt", "steps=5", "--n", "9",
               "--no-plot", "--no-progress", "--seed", "1", "--device", "cpu"],
    "likelihood": ["-n", "11", "--method", "rk4", "--steps", "8", "--estimator", "exact", "--batch-size", "4",
                   "--no-progress", "--device", "cpu"],
    # 2 targets x 2 processes = 4 blocks, 2 per rank, each target on both ranks
    "bench": ["--targets", "gauss1d,nine_gaussians", "--processes", "vp,ve", "--samplers", "ode euler,sde euler,ddim",
              "--nfe", "4,8", "--samples", "64", "--paths", "8", "--seed", "2", "--dtype", "float64", "--device",
              "cpu", "--no-peers", "--no-overhead", "--no-plots", "--no-progress"],
}
WALL_TIME = ("seconds", "path_seconds")


# --------------------------------------------------------------------------- pieces, in process
@pytest.mark.parametrize("n,world", [(7, 2), (30, 4), (1, 2), (0, 3), (9, 1)])
def test_shard_bounds_partition_the_batch(n: int, world: int) -> None:
    parts = [shard_bounds(n, world, r) for r in range(world)]
    assert parts[0][0] == 0 and parts[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
    sizes = [b - a for a, b in parts]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    with pytest.raises(ValueError, match="rank"):
        shard_bounds(n, world, world)


def test_sharded_generator_draws_the_single_process_numbers() -> None:
    """Rank r's batch-shaped draws are rows [start, stop) of one process's draws, and every rank's
    generator ends in the single process's state; other shapes are drawn as they are."""
    single = torch.Generator().manual_seed(0)
    t, eps, probe = (rand((7,), single, "cpu", torch.float64), randn((7, 3), single, "cpu", torch.float64),
                     randn((5,), single, "cpu", torch.float64))
    for start, stop in ((0, 4), (4, 7)):
        g = ShardedGenerator().manual_seed(0)
        with g.rows(start, stop, 7):
            assert torch.equal(rand((stop - start,), g, "cpu", torch.float64), t[start:stop])
            assert torch.equal(randn((stop - start, 3), g, "cpu", torch.float64), eps[start:stop])
            assert torch.equal(randn((5,), g, "cpu", torch.float64), probe)  # not batch-shaped: drawn as is
        assert torch.equal(g.get_state(), single.get_state())
        assert g.shard is None
    with pytest.raises(ValueError):
        ShardedGenerator().rows(3, 3, 5)


@pytest.mark.parametrize("kind", ["tensor", "distribution", "iterable"])
def test_sharded_batches_concatenate_to_the_global_batch(kind: str) -> None:
    x = nine_gaussians().sample(30, torch.Generator().manual_seed(0))
    data = {"tensor": x, "distribution": nine_gaussians(), "iterable": list(x[:15].split([7, 7, 1]))}[kind]
    whole = BatchSource(data, 7, seed=2)
    ranks = [BatchSource(data, 7, seed=2, shard=(r, 2)) for r in range(2)]
    for _ in range(6):
        full = whole.next()
        parts = [src.next_shard() for src in ranks]
        if full.shape[0] == 1:  # one row for two ranks: rank 1 repeats row 0 with weight 0
            assert [p.weight for p in parts] == [1.0, 0.0] and torch.equal(parts[1].x, full)
            continue
        assert torch.equal(torch.cat([p.x for p in parts]), full)
        assert sum(p.weight for p in parts) == pytest.approx(1.0)
        assert [p.total for p in parts] == [full.shape[0]] * 2


# --------------------------------------------------------------------------- two processes
@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    out = tmp_path_factory.mktemp("ddp")
    (out / "cli_args.json").write_text(json.dumps(CLI_ARGS))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
           str(HERE / "distributed_worker.py"), str(out)]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"torchrun did not finish in 300 s; output so far:\n{exc.stdout}\n{exc.stderr}")
    assert proc.returncode == 0, f"torchrun failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_two_gloo_processes_equal_one(ddp_run: Path, name: str) -> None:
    got = torch.load(ddp_run / f"{name}.pt", weights_only=True)
    single = make_trainer(name)
    result = single.fit()
    for key, val in single.model.state_dict().items():
        torch.testing.assert_close(got["model"][key], val, **TOL, msg=f"{name}: weights {key}")
    for key, val in single.ema.state_dict().items():
        torch.testing.assert_close(got["ema"][key], val, **TOL, msg=f"{name}: EMA {key}")
    assert [s for s, _ in got["losses"]] == [s for s, _ in result.losses]
    torch.testing.assert_close(torch.tensor([v for _, v in got["losses"]]), torch.tensor([v for _, v in result.losses]),
                               **TOL)


def test_resumed_two_process_run_equals_a_straight_single_run(ddp_run: Path) -> None:
    report = json.loads((ddp_run / "report.json").read_text())
    assert report["resumed_at"] == 6 and report["world_size"] == 2
    assert sorted(p.name for p in (ddp_run / "resume").glob("*.json")) == [f"step_{s:08d}.json" for s in (6, 9, 12)]
    assert not list((ddp_run / "resume").glob(".*tmp")), "temporary files left behind"
    manifest = load_checkpoint(ddp_run / "resume").manifest
    assert manifest["world_size"] == 2 and manifest["step"] == 12
    got = torch.load(ddp_run / "resumed.pt", weights_only=True)
    straight = make_trainer("tensor")
    straight.fit()
    for key, val in straight.model.state_dict().items():
        torch.testing.assert_close(got["model"][key], val, **TOL, msg=key)
    for key, val in straight.ema.state_dict().items():
        torch.testing.assert_close(got["ema"][key], val, **TOL, msg=key)


def _invoke(args: list[str]) -> str:
    result = CliRunner().invoke(cli_main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_cli_under_torchrun_equals_one_process(ddp_run: Path, tmp_path: Path) -> None:
    single_dir = tmp_path / "single"
    _invoke(["train", *CLI_ARGS["train"], "--out", str(single_dir)])
    a, b = load_checkpoint(ddp_run / "cli"), load_checkpoint(single_dir)
    assert a.step == b.step == 10 and a.manifest["world_size"] == 2 and b.manifest["world_size"] == 1
    assert [s for s, _ in a.manifest["losses"]] == [s for s, _ in b.manifest["losses"]]
    torch.testing.assert_close(torch.tensor([v for _, v in a.manifest["losses"]]),
                               torch.tensor([v for _, v in b.manifest["losses"]]), **TOL)
    for prefix in ("model", "ema"):
        sa, sb = a.section(prefix), b.section(prefix)
        assert sa.keys() == sb.keys()
        for key in sa:
            torch.testing.assert_close(sa[key], sb[key], **TOL, msg=f"{prefix}.{key}")
    assert (ddp_run / "cli" / "config.toml").is_file() and (ddp_run / "cli" / "losses.csv").is_file()

    # sampling: 9 samples split 5 + 4 and gathered in rank order; rank 0's rows are what one
    # process draws with the same seed (rank 1 draws from a seed mixed from the seed and its rank)
    drawn = torch.load(ddp_run / "samples.pt", weights_only=True)
    assert drawn["samples"].shape == (9, 2) and drawn["world_size"] == 2
    assert bool(torch.isfinite(drawn["samples"]).all())
    args = list(CLI_ARGS["sample"])
    args[args.index("--n") + 1] = "5"
    _invoke(["sample", str(single_dir), *args, "--out", str(tmp_path / "first5.pt")])
    first5 = torch.load(tmp_path / "first5.pt", weights_only=True)["samples"]
    torch.testing.assert_close(drawn["samples"][:5], first5, **TOL)
    assert not torch.allclose(drawn["samples"][5:], first5[:4])  # rank 1 drew its own numbers

    # likelihood: 11 rows split 6 + 5 (batches of 4); fixed-step rk4 with the exact divergence makes
    # every row's value independent of its batch, so the gathered rows equal one process's
    _invoke(["likelihood", str(single_dir), *CLI_ARGS["likelihood"], "--out", str(tmp_path / "lik.json")])
    ddp_lik = json.loads((ddp_run / "likelihood.json").read_text())
    one_lik = json.loads((tmp_path / "lik.json").read_text())
    assert ddp_lik["n"] == one_lik["n"] == 11 and ddp_lik["world_size"] == 2
    torch.testing.assert_close(torch.tensor(ddp_lik["log_prob"]), torch.tensor(one_lik["log_prob"]), **TOL)


# --------------------------------------------------------------------------- the benchmark suite
def test_assign_blocks_is_longest_processing_time_first() -> None:
    # heaviest first, each to the least-loaded rank (ties: earlier block, lower rank)
    assert assign_blocks([1, 5, 2, 2, 3], 2) == [1, 0, 1, 0, 1]
    assert assign_blocks([4, 4, 4], 1) == [0, 0, 0]
    assert assign_blocks([1, 1], 3) == [0, 1]  # more ranks than blocks: the rest idle
    owner = assign_blocks([65, 17, 3, 2] * 4, 3)
    loads = [sum(w for w, o in zip([65, 17, 3, 2] * 4, owner) if o == r) for r in range(3)]
    assert loads == [130, 109, 109]  # the full grid's dimension proxy (1+64, 1+16, 1+2, 1+1) on 3 ranks
    for bad in ([1, 0], [1, math.inf], [1, math.nan]):
        with pytest.raises(ValueError, match="positive finite"):
            assign_blocks(bad, 2)
    with pytest.raises(ValueError, match="world_size"):
        assign_blocks([1], 0)


def _close(a: object, b: object, where: str) -> None:
    """Equal plain data, floats to 1e-12 relative (non-finite ones as their JSON strings)."""
    if isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-300), f"{where}: {a} != {b}"
    elif isinstance(a, dict) and isinstance(b, dict):
        assert list(a) == list(b), f"{where}: keys {list(a)} != {list(b)}"
        for k in a:
            _close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), f"{where}: {len(a)} != {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def test_bench_under_torchrun_equals_one_process(ddp_run: Path, tmp_path: Path) -> None:
    _invoke(["bench", *CLI_ARGS["bench"], "--out", str(tmp_path / "one")])
    one = json.loads((tmp_path / "one" / "bench.json").read_text())
    two = json.loads((ddp_run / "bench_rank0" / "bench.json").read_text())
    assert two["meta"]["world_size"] == 2 and one["meta"]["world_size"] == 1
    assert sorted(set(two["meta"]["block_ranks"].values())) == [0, 1]  # both ranks ran blocks
    assert len(one["rows"]) == 4 * 3 * 2
    for r in one["rows"] + two["rows"]:
        assert r["status"] == "ok", r
        for k in WALL_TIME:
            r.pop(k)
    for key in ("rows", "floors", "path_floors", "limits", "targets", "orders", "notes", "spec"):
        _close(two[key], one[key], key)
    # rank 0 alone printed the table and wrote the files; rank 1 neither
    assert sorted(p.name for p in (ddp_run / "bench_rank0").iterdir()) == ["bench.csv", "bench.json", "summary.md",
                                                                           "table.txt"]
    assert not (ddp_run / "bench_rank1").exists()
    printed = (ddp_run / "bench_stdout_0.txt").read_text()
    assert printed.count("== ") == 4 and "== nine_gaussians" in printed
    assert (ddp_run / "bench_stdout_1.txt").read_text() == ""


def test_bench_rank_failure_raises_on_every_rank(ddp_run: Path) -> None:
    for rank in (0, 1):
        msg = (ddp_run / f"bench_error_{rank}.txt").read_text()
        assert "failed on rank 1" in msg and "no reference sets for gauss1d" in msg, (rank, msg)
