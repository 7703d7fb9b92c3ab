"""``sdeflow bench``: solver accuracy against ground truth, side by side with diffusers' schedulers."""

from __future__ import annotations

import json
import sys
import time

import click

from .main import main


def _csv(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


@main.command("bench")
@click.option("--quick", "preset_name", flag_value="quick", default=True,
              help="Small grid, under two minutes on 2 CPU cores (default).")
@click.option("--full", "preset_name", flag_value="full", help="The full grid recorded in docs/bench_results.md.")
@click.option("--targets", help="Comma-separated target names (see `sdeflow plugins`); default: the preset's.")
@click.option("--processes", help="Comma-separated process names; default: the preset's.")
@click.option("--samplers", help="Comma-separated sampler configuration labels (e.g. 'ode euler,dpm_solver 2M') or "
                                 "registered sampler names; 'all' for every built-in configuration.")
@click.option("--metrics", help="Comma-separated metric names; default: sw2,mmd,mean_err,cov_err,logp_gap.")
@click.option("--nfe", help="Comma-separated NFE budgets, e.g. 10,20,50.")
@click.option("--samples", type=click.IntRange(min=10), help="Samples per cell (and per reference set).")
@click.option("--paths", type=click.IntRange(min=2), help="Trajectories for pathwise/strong errors.")
@click.option("--seed", type=int, help="Base seed.")
@click.option("--device", help="torch device, e.g. cpu or cuda.")
@click.option("--dtype", type=click.Choice(["float64", "float32"]), help="Precision (default float64).")
@click.option("--peers/--no-peers", default=True, show_default=True,
              help="Run diffusers' schedulers on the same problems (needs `pip install sdeflow[peers]`).")
@click.option("--peer-list", help="Comma-separated peer labels (default: the preset's; 'all' for every one).")
@click.option("--overhead/--no-overhead", default=True, show_default=True,
              help="Time the samplers with a hand-written loop against it.")
@click.option("--threads", type=click.IntRange(min=1), help="torch threads (default: as torch chooses).")
@click.option("--out", "out_dir", default="bench_out", show_default=True, type=click.Path(file_okay=False),
              help="Folder for bench.csv, bench.json, table.txt, summary.md and the PNG plots.")
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON result instead of the table.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar on stderr.")
@click.option("--model", "model_dir", default=None, metavar="DIR",
              help="Benchmark the solvers on this trained network instead of the exact targets: an sdeflow "
                   "checkpoint folder (or step_XXXXXXXX.json) or a diffusers folder. Pathwise error of every "
                   "deterministic sampler and diffusers scheduler against a tight dopri8 solution from the same "
                   "x_T, at NFE 5,8,10,20,50 by default.")
@click.option("--diffusers", "diffusers_dir", default=None, metavar="DIR",
              help="Like --model, for a diffusers pipeline or model folder (sdeflow.interop.from_diffusers).")
@click.option("--reference-tol", type=click.FloatRange(min=0, min_open=True), default=None,
              help="rtol = atol of the dopri8 reference [default: 1e-10 on the targets, 1e-7 on a network].")
def bench_command(preset_name: str, targets: str | None, processes: str | None, samplers: str | None,
                  metrics: str | None, nfe: str | None, samples: int | None, paths: int | None, seed: int | None,
                  device: str | None, dtype: str | None, peers: bool, peer_list: str | None, overhead: bool,
                  threads: int | None, out_dir: str, no_plots: bool, as_json: bool, progress: bool,
                  model_dir: str | None, diffusers_dir: str | None, reference_tol: float | None) -> None:
    """Benchmark every sampler (and diffusers' schedulers) on targets with known density: NFE, time,
    sliced W2, MMD, mean/covariance error, log-density gap with noise floors, pathwise/strong error
    and empirical orders; writes a table, CSV, JSON and error-vs-NFE plots.

    With --model DIR or --diffusers DIR: the accuracy of every deterministic sampler and diffusers
    scheduler on that network (pathwise error against a tight reference from the same initial noise,
    empirical orders, plot).

    \b
    Examples:
      sdeflow bench --quick
      sdeflow bench --diffusers my_ddpm --nfe 5,8,10,20,50 --paths 16 --out bench_ddpm
      sdeflow bench --model runs/digits --samplers all --device cuda
    """
    from ..bench import outputs
    from ..bench.runner import run_bench
    from ..bench.spec import ALL_PEERS, ALL_SAMPLERS, preset
    from ..errors import SdeflowError
    from ..training.distributed import distributed_session

    try:
        budgets = None if nfe is None else [int(b) for b in _csv(nfe) or []]
    except ValueError:
        raise click.BadParameter(f"--nfe takes comma-separated integers, got {nfe!r}") from None
    if model_dir is not None or diffusers_dir is not None:
        given = [f for f, v in (("--targets", targets), ("--processes", processes), ("--metrics", metrics),
                                ("--samples", samples)) if v is not None]
        if given or preset_name == "full":
            names = given or ["--full"]
            raise click.UsageError(f"{', '.join(names)} {'does' if len(names) == 1 else 'do'} not apply to a network "
                                   "benchmark (--model/--diffusers): it measures pathwise errors on the network's "
                                   "own ODE")
        from .network_bench import network_bench

        network_bench(model_dir, diffusers_dir, _csv(samplers), budgets, paths, seed, device, dtype, peers,
                      _csv(peer_list), threads, out_dir, no_plots, as_json, progress, reference_tol)
        return
    sampler_list = _csv(samplers)
    if sampler_list == ["all"]:
        sampler_list = list(ALL_SAMPLERS)
    peer_names = _csv(peer_list)
    if peer_names == ["all"]:
        peer_names = list(ALL_PEERS)
    try:
        spec = preset(preset_name, targets=_csv(targets), processes=_csv(processes), samplers=sampler_list,
                      metrics=_csv(metrics), nfe=budgets, samples=samples, paths=paths, seed=seed, device=device,
                      dtype=dtype, peers=peer_names, threads=threads, reference_tol=reference_tol)
        if not peers:
            spec.peers = []
        spec.overhead = overhead
        if samples is not None and paths is None:
            spec.paths = min(spec.paths, spec.samples)
        spec.validate()
        t0 = time.perf_counter()
        with distributed_session(spec.device) as ctx:  # under torchrun: blocks split over the ranks
            say = (lambda s: click.echo(s, err=True)) if ctx.is_main else None
            result = run_bench(spec, progress=progress and ctx.is_main, echo=say,
                               checkpoint=lambda r: outputs.write_outputs(r, out_dir, plots=not no_plots),
                               distributed=ctx if ctx.active else False)
            if not ctx.is_main:  # rank 0 alone prints and writes
                return
            written = outputs.write_outputs(result, out_dir, plots=not no_plots)
    except SdeflowError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    if as_json:
        click.echo(json.dumps(outputs.to_json(result), indent=1, default=str))
    else:
        click.echo(outputs.terminal_table(result))
    click.echo(f"wrote {', '.join(str(p) for p in written)} ({time.perf_counter() - t0:.0f} s)", err=True)
