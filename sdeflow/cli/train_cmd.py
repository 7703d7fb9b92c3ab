"""``sdeflow train``: train a score model from flags or a TOML config; data-parallel under torchrun."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ..core.parametrization import PARAMETRIZATIONS
from .config import RunConfig, apply_overrides, coerce_training_value, load_config
from .data import dataset_help, infer_model_options, infer_process_options, resolve_data
from .main import main
from .options import (
    build_component,
    cli_errors,
    common_options,
    component_option,
    parse_assignments,
    progress_option,
    resolve_device,
    resolve_dtype,
)


@main.command("train")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="TOML config file (see --print-config); every flag overrides it.")
@component_option("process", help="Forward process (vp, subvp, ve, ddpm, ncsn, ... see `sdeflow plugins`).")
@component_option("model", help="Network (mlp, unet, ...).")
@click.option("--parametrization", type=click.Choice(PARAMETRIZATIONS), default=None,
              help="What the network predicts [default: the process's own: eps; velocity for rectified_flow].")
@click.option("--data", default=None, metavar="NAME|FILE|FOLDER",
              help="Data set name, a .pt/.pth/.npz/.npy file (N, *dims) (4-D: images) or a folder of PNG images "
              "[default: nine_gaussians]. Names: " + dataset_help())
@click.option("--data-opt", multiple=True, metavar="KEY=VALUE",
              help="Data-set option (repeatable), e.g. n=20000 for a fixed set, noise=0.05, size=16 (digits); "
                   "key=NAME, "
                   "value_range=[0,1], layout=nhwc for files; channels=1, size=32 for PNG folders.")
@click.option("--labels/--no-labels", "labels", default=None,
              help="Train a class-conditional network on the data's class labels (a mixture's component, the digits' "
                   "digit, the 'y' array of a .npz/.pt file, the sub-folder of a PNG folder), with label dropout "
                   "p_uncond (--train-opt p_uncond=0.1) for classifier-free guidance [default: off].")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Optimiser steps in total [default: 1000].")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Global batch size (split over ranks under torchrun) [default: 128].")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None, help="Learning rate [default: 1e-3].")
@click.option("--checkpoint-every", type=click.IntRange(min=0), default=None,
              help="Checkpoint every N steps (0: only at the end) [default: 0].")
@click.option("--train-opt", multiple=True, metavar="KEY=VALUE",
              help="Any other TrainConfig field (repeatable): warmup_steps, ema_decay, grad_clip (none: off), "
                   "lr_schedule, optimizer, precision, log_every, keep_checkpoints, ...")
@click.option("--out", "out", default=None, type=click.Path(file_okay=False),
              help="Checkpoint folder [default: runs/train].")
@click.option("--resume/--no-resume", default=True, show_default=True,
              help="Continue from the newest checkpoint in --out; --no-resume refuses a folder that has one.")
@click.option("--print-config", is_flag=True, help="Print the effective config as TOML and exit.")
@click.option("--save-config", type=click.Path(dir_okay=False), default=None,
              help="Write the effective config as TOML to this file and exit.")
@progress_option
@common_options
def train_command(config_path: str | None, process: str | None, process_opt: tuple[str, ...], model: str | None,
                  model_opt: tuple[str, ...], parametrization: str | None, data: str | None, data_opt: tuple[str, ...],
                  labels: bool | None, steps: int | None, batch_size: int | None, lr: float | None,
                  checkpoint_every: int | None,
                  train_opt: tuple[str, ...], out: str | None, resume: bool, print_config: bool,
                  save_config: str | None, progress: bool, device: str | None, seed: int | None,
                  dtype: str | None) -> None:
    """Train a score model and write resumable checkpoints to --out.

    \b
    Examples:
      sdeflow train --process subvp --data two_moons --steps 3000 --out runs/moons
      sdeflow train --process vp --process-opt beta_max=10 --model-opt hidden=256 --data points.npz
      sdeflow train --process vdm --model unet --data digits --steps 1000 --out runs/digits
      sdeflow train --model unet --data digits --labels --steps 2000 --out runs/digits_cond   # then --class/--guidance
      sdeflow train --process rectified_flow --data two_moons --out runs/flow   # flow matching, velocity net
      sdeflow train --config run.toml --steps 5000          # the flag overrides the file
      torchrun --nproc_per_node 2 -m sdeflow.cli train --config run.toml   # data-parallel
    """
    base = load_config(config_path) if config_path else RunConfig()
    training = {k: coerce_training_value(k, v) for k, v in parse_assignments(train_opt, "--train-opt").items()}
    for key, val in (("steps", steps), ("batch_size", batch_size), ("lr", lr), ("checkpoint_every", checkpoint_every)):
        if val is not None:
            training[key] = val
    cfg = apply_overrides(base, out=out, seed=seed, device=device, dtype=dtype, process=process,
                          process_options=parse_assignments(process_opt, "--process-opt"), model=model,
                          model_options=parse_assignments(model_opt, "--model-opt"), parametrization=parametrization,
                          data=data, data_options=parse_assignments(data_opt, "--data-opt"), training=training,
                          labels=labels)
    cfg = cfg.complete()
    if print_config:
        click.echo(cfg.to_toml(), nl=False)
        return
    if save_config:
        text = cfg.to_toml()
        with cli_errors():
            Path(save_config).parent.mkdir(parents=True, exist_ok=True)
            Path(save_config).write_text(text)
        click.echo(f"wrote {save_config}")
        return
    run_training(cfg, progress=progress, resume=resume)


def run_training(cfg: RunConfig, progress: bool = True, resume: bool = True, echo: Any = click.echo) -> Any:
    """Build everything ``cfg`` names and train (under torchrun: data-parallel, see
    :mod:`sdeflow.training.distributed`). Returns the :class:`~sdeflow.training.Trainer`."""
    from ..training.distributed import distributed_session

    with distributed_session(resolve_device(cfg.device)) as session:
        return _train(cfg, session if session.active else None, session.device, progress, resume, echo)


def _train(cfg: RunConfig, ctx: Any, dev: Any, progress: bool, resume: bool, echo: Any) -> Any:
    import torch

    from ..core.score_model import ScoreModel
    from ..training import Trainer, list_checkpoints, load_checkpoint
    from ..training.model_spec import describe_score_model
    from .outputs import write_losses

    main_rank = ctx is None or ctx.is_main
    say = echo if main_rank else (lambda *a, **k: None)
    dt = resolve_dtype(cfg.dtype)
    tcfg = cfg.train_config(progress=progress and main_rank)
    out = Path(cfg.out)
    with cli_errors():
        data = resolve_data(cfg.data, cfg.data_options, dt, labels=cfg.labels)
        torch.manual_seed(cfg.seed)  # the network's initial weights
        process = build_component("process", cfg.process, infer_process_options(cfg.process, data, cfg.process_options))
        data = data.for_process(process)  # quantised images: dequantized, or their levels for vdm
        net = build_component("model", cfg.model, infer_model_options(cfg.model, data.sample_shape, cfg.model_options,
                                                                      data.num_classes))
        score_model = ScoreModel(net, process, parametrization=cfg.parametrization).to(device=dev, dtype=dt)
        existing = list_checkpoints(out)
        if existing and not resume:
            raise click.UsageError(f"{out} already holds checkpoints (newest: {existing[-1].name}); pass --resume to "
                                   "continue them or choose another --out")
        metadata = {"data": data.spec, "sdeflow_train": True}
        trainer = Trainer(score_model, data.training_data(), config=tcfg, out_dir=out, metadata=metadata,
                          distributed=ctx if ctx is not None else False, class_names=data.class_names)
        if existing:
            ckpt = load_checkpoint(out)
            _check_same_model(ckpt, describe_score_model(score_model, data.sample_shape, data.class_names), out)
            trainer.load_state(ckpt)
            say(f"resumed {ckpt.path} at step {trainer.step}")
        if main_rank:
            out.mkdir(parents=True, exist_ok=True)
            (out / "config.toml").write_text(cfg.to_toml())
        world = f" on {ctx.world_size} ranks ({ctx.backend})" if ctx is not None else ""
        classes = f" with {data.num_classes} class labels" if data.num_classes is not None else ""
        say(f"training {cfg.process} + {cfg.model} ({cfg.parametrization}) on {cfg.data}{classes} "
            f"{'x'.join(map(str, data.sample_shape))}: {tcfg.steps} steps, batch {tcfg.batch_size}{world}, "
            f"{sum(p.numel() for p in score_model.parameters())} parameters, {dev}, {cfg.dtype}")
        if trainer.step >= tcfg.steps:
            say(f"already at step {trainer.step} >= steps={tcfg.steps}: nothing to do")
            return trainer
        result = trainer.fit()
    if main_rank:
        files = write_losses(out, trainer.losses, f"{cfg.process} + {cfg.model} on {cfg.data}")
        last = result.losses[-1][1] if result.losses else float("nan")
        say(f"step {result.step}: loss {last:.4g} ({result.seconds:.1f} s); checkpoint {trainer.last_checkpoint}; "
            f"{files[0].name}, {files[1].name} and config.toml in {out}")
        guide = " --class 0 --guidance 2" if data.num_classes is not None else ""
        if len(data.sample_shape) == 3:
            say(f"sample it: sdeflow sample {out} --sampler ancestral --n 64{guide} --out samples.npz"
                "   (+ samples.png, a grid)")
        else:
            say(f"sample it: sdeflow sample {out} --sampler ode --n 2000{guide} --out samples.npz")
    if ctx is not None:
        ctx.barrier()
    return trainer


def _check_same_model(ckpt: Any, wanted: dict[str, Any] | None, out: Path) -> None:
    have = ckpt.manifest.get("model_spec")
    if have is None or wanted is None:
        return
    wanted = json.loads(json.dumps(wanted))  # tuples -> lists, as in the manifest
    keys = ("process", "model", "parametrization", "sample_shape", "dtype", "class_names")
    diff = [k for k in keys if have.get(k) != wanted.get(k)]
    if diff:
        lines = "; ".join(f"{k}: checkpoint {have.get(k)!r}, this run {wanted.get(k)!r}" for k in diff)
        raise click.UsageError(f"the checkpoint in {out} was trained with another model ({lines}); use another --out "
                               "or the checkpoint's settings (see its config.toml)")
