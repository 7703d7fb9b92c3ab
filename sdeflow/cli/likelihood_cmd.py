"""``sdeflow likelihood``: log p(x) of data under a checkpoint, through the probability-flow ODE."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import click
import torch

from ..core.likelihood import ESTIMATORS, PROBES
from .main import main
from .options import cli_errors, common_options, parse_assignments, progress_option, resolve_device, resolve_seed


@main.command("likelihood")
@click.argument("checkpoint", metavar="CHECKPOINT", required=False)
@click.option("--diffusers", "diffusers_dir", default=None, metavar="DIR",
              help="Evaluate a diffusers pipeline or model folder instead of a CHECKPOINT (needs --data).")
@click.option("--data", default=None, metavar="NAME|FILE",
              help="Data set name or .pt/.npz/.npy file [default: the data the checkpoint was trained on].")
@click.option("--data-opt", multiple=True, metavar="KEY=VALUE", help="Data-set option (repeatable).")
@click.option("-n", "--n", "n", type=click.IntRange(min=1), default=None,
              help="Rows to evaluate: the first n of a file or fixed set, or n fresh samples of a distribution "
                   "[default: all rows; 1000 samples].")
@click.option("--estimator", type=click.Choice(ESTIMATORS), default="auto", show_default=True,
              help="Divergence: exact, hutchinson (trace estimator), or auto (exact up to 64 dimensions).")
@click.option("--n-probes", type=click.IntRange(min=1), default=1, show_default=True,
              help="Hutchinson probes per sample (>= 2 also gives a per-sample standard error).")
@click.option("--probe", type=click.Choice(PROBES), default="rademacher", show_default=True)
@click.option("--method", default="dopri5", show_default=True, help="Any torchdiffeq method.")
@click.option("--rtol", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Relative tolerance of adaptive methods [default: 1e-5].")
@click.option("--atol", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Absolute tolerance of adaptive methods [default: 1e-5].")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Steps of a fixed-grid method [default: 100].")
@click.option("--batch-size", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Rows per ODE solve.")
@click.option("--bins", type=click.IntRange(min=2), default=None,
              help="Also report discrete bits/dim for data quantised to this many levels in --data-range "
                   "[default: the data set's own, e.g. 17 for digits].")
@click.option("--data-range", type=(float, float), default=(-1.0, 1.0), show_default=True,
              help="Interval the quantised levels were mapped onto (with --bins).")
@click.option("--dequantize", type=click.IntRange(min=2), default=None, metavar="BINS",
              help="The rows are BINS levels lo + k (hi - lo) / (BINS - 1) in --data-range (e.g. 256 for 8-bit "
                   "images read from a uint8 file): dequantize them uniformly, z = lo + (hi - lo) (k + u) / BINS with "
                   "u ~ U[0, 1) (Theis et al. 2016), and report the discrete bits/dim bound with --bins BINS.")
@click.option("--raw", is_flag=True, help="Use the raw trained weights instead of their EMA.")
@click.option("--out", default=None, type=click.Path(dir_okay=False),
              help="Write the summary and per-row log-densities as JSON.")
@progress_option
@common_options
def likelihood_command(checkpoint: str | None, diffusers_dir: str | None, data: str | None, data_opt: tuple[str, ...],
                       n: int | None, estimator: str, n_probes: int, probe: str, method: str, rtol: float | None,
                       atol: float | None, steps: int | None, batch_size: int, bins: int | None,
                       data_range: tuple[float, float], dequantize: int | None, raw: bool, out: str | None,
                       progress: bool, device: str | None, seed: int | None, dtype: str | None) -> None:
    """Log-likelihood of data under the model in CHECKPOINT or --diffusers DIR (nats, nats/dim and bits/dim).

    Computes log p(x) by integrating the probability-flow ODE with the instantaneous change of
    variables (sdeflow.log_likelihood). Under torchrun the rows are split over the ranks.

    \b
    Examples:
      sdeflow likelihood runs/train                    # on fresh samples of its training set
      sdeflow likelihood runs/train --data test.npz --estimator hutchinson --n-probes 4
      sdeflow likelihood runs/train --method rk4 --steps 200 --n 500
      sdeflow likelihood --diffusers my_ddpm --data digits --data-opt split=test --estimator hutchinson
      sdeflow likelihood --diffusers my_ddpm --data images.npz --dequantize 256 --n 100
    """
    from .loading import open_model

    if steps is not None and (rtol is not None or atol is not None):
        raise click.UsageError("--steps is for fixed-grid methods, --rtol/--atol for adaptive ones: give one kind")
    from ..training.distributed import distributed_session

    with distributed_session(resolve_device(device)) as ctx:
        run = open_model(checkpoint, diffusers_dir, raw, ctx, dtype)
        _likelihood(run, data, data_opt, n, estimator, n_probes, probe, method, rtol, atol, steps, batch_size, bins,
                    data_range, raw, out, progress, seed, dequantize)


def _likelihood(run: Any, data: str | None, data_opt: tuple[str, ...], n: int | None, estimator: str, n_probes: int,
                probe: str, method: str, rtol: float | None, atol: float | None, steps: int | None, batch_size: int,
                bins: int | None, data_range: tuple[float, float], raw: bool, out: str | None, progress: bool,
                seed: int | None, dequantize: int | None = None) -> None:
    import torch

    from ..core.likelihood import bits_per_dim, log_likelihood
    from .data import resolve_data

    seed_v = resolve_seed(seed)
    trained_on = run.training_data()
    if data is None:
        if trained_on is None:
            what = run.pretrained or f"checkpoint {run.checkpoint.path}"
            raise click.UsageError(f"{what} does not record its training data: pass --data")
        data, options = trained_on["name"], dict(trained_on.get("options") or {})
        if data_opt:
            options.update(parse_assignments(data_opt, "--data-opt"))
    else:
        options = parse_assignments(data_opt, "--data-opt")
    resolved = resolve_data(data, options, torch.float64)
    if bins is None and resolved.bins is not None and run.model.process.data_levels is None:
        bins = resolved.bins  # dequantized images (digits): report the discrete bound too
    resolved = resolved.for_process(run.model.process)
    if tuple(resolved.sample_shape) != tuple(run.spec.sample_shape):
        raise click.BadParameter(f"data samples have shape {resolved.sample_shape}, the model was trained on "
                                 f"{tuple(run.spec.sample_shape)}", param_hint="--data")
    rows_n = n if n is not None or resolved.size is not None else 1000
    x_all = resolved.rows(rows_n, torch.Generator().manual_seed(seed_v + 7))
    dequantized = resolved.bins is not None and run.model.process.data_levels is None
    if dequantize is not None:
        if dequantized:
            raise click.UsageError(f"data set {data!r} is dequantized already ({resolved.bins} levels); "
                                   "drop --dequantize")
        x_all = _dequantize_rows(x_all, dequantize, data_range, torch.Generator().manual_seed(seed_v + 8))
        if bins is not None and bins != dequantize:
            raise click.UsageError(f"--bins {bins} disagrees with --dequantize {dequantize}")
        bins, dequantized = dequantize, True
    total = x_all.shape[0]
    start, stop = run.ctx.bounds(total)
    x = x_all[start:stop].to(device=run.device, dtype=run.dtype)
    gen = run.generator(seed_v, stream=1)
    kwargs: dict[str, Any] = {"estimator": estimator, "n_probes": n_probes, "probe": probe, "method": method,
                              "rtol": rtol, "atol": atol, "steps": steps}
    logps, nfes = [], []
    t0 = time.perf_counter()
    chunks = list(range(0, x.shape[0], batch_size))
    bar = None
    if progress and run.is_main and len(chunks) > 1:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(chunks), desc="likelihood", leave=False)
    with cli_errors():
        for i in chunks:
            res = log_likelihood(run.model, x[i:i + batch_size], generator=gen, **kwargs)
            logps.append(res.log_prob.detach())
            nfes.append(int(res.nfe))
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - t0
    local = torch.cat(logps) if logps else torch.empty(0, device=run.device, dtype=run.dtype)
    gathered = run.ctx.gather_rows(local.reshape(-1, 1), total)
    if not run.is_main or gathered is None:
        return
    lp = gathered.reshape(-1).double().cpu()
    dims = int(math.prod(run.spec.sample_shape))
    mean = float(lp.mean())
    se = float(lp.std() / math.sqrt(lp.numel())) if lp.numel() > 1 else float("nan")
    summary: dict[str, Any] = {
        "checkpoint": str(run.checkpoint.path), "step": None if run.pretrained else run.checkpoint.step,
        "pretrained": run.pretrained, "data": data, "data_options": options, "dequantized": dequantized,
        "n": int(lp.numel()), "dims": dims, "log_prob_mean": mean, "log_prob_stderr": se,
        "nats_per_dim": -mean / dims, "bits_per_dim": -mean / (dims * math.log(2.0)),
        "bits_per_dim_stderr": se / (dims * math.log(2.0)), "estimator": estimator, "n_probes": n_probes,
        "method": method, "rtol": rtol, "atol": atol, "steps": steps, "nfe_per_batch": max(nfes) if nfes else 0,
        "seconds": seconds, "ema": not raw, "world_size": run.ctx.world_size,
    }
    lines = [f"log p(x) over {lp.numel()} rows of {data} ({run.origin(raw)}, {estimator}/{method}): "
             f"{mean:.4f} ± {se:.4f} nats",
             f"  = {-mean / dims:.4f} nats/dim = {summary['bits_per_dim']:.4f} ± {summary['bits_per_dim_stderr']:.4f} "
             f"bits/dim (continuous, D = {dims}); nfe {summary['nfe_per_batch']} per batch, {seconds:.2f} s"]
    if bins is not None:
        bpd = float(bits_per_dim(lp, dims, bins=bins, data_range=data_range).mean())
        summary["discrete_bits_per_dim"] = bpd
        how = ("uniform dequantization bound, Theis et al. 2016" if dequantized else
               "the bound assumes uniformly dequantized rows; these were not: pass --dequantize")
        lines.append(f"  discrete ({bins} levels in {list(data_range)}, {how}): {bpd:.4f} bits/dim")
    if resolved.target is not None:
        true = float(resolved.target.log_prob(x_all.to(resolved.target.dtype)).mean())
        summary["true_log_prob_mean"] = true
        lines.append(f"  exact log p of the same rows under the true density: {true:.4f} nats "
                     f"(model - true = {mean - true:+.4f})")
    click.echo("\n".join(lines))
    if out is not None:
        with cli_errors():
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            Path(out).write_text(json.dumps({**summary, "log_prob": lp.tolist()}, indent=2, default=str))
        click.echo(f"wrote {out}")


def _dequantize_rows(x: Any, bins: int, data_range: tuple[float, float], generator: Any) -> Any:
    """Rows on the level grid ``lo + k (hi - lo) / (bins - 1)`` dequantized uniformly:
    ``lo + (hi - lo) (k + u) / bins`` (:func:`sdeflow.core.likelihood.dequantize`).

    Raises:
        click.BadParameter: rows off the level grid (more than 1e-3 of a level away from it).
    """
    from ..core.likelihood import dequantize

    lo, hi = (float(v) for v in data_range)
    k = (x.double() - lo) * ((bins - 1) / (hi - lo))
    levels = k.round()
    if float((k - levels).abs().max()) > 1e-3 or float(levels.min()) < 0 or float(levels.max()) > bins - 1:
        raise click.BadParameter(f"the rows are not on the grid of {bins} levels in {list(data_range)}; --dequantize "
                                 "takes quantised data (e.g. uint8 images, which are read as k/127.5 - 1)",
                                 param_hint="--dequantize")
    return dequantize(levels.to(torch.int64), bins, (lo, hi), generator=generator, dtype=x.dtype)
