"""``Trainer``: the training loop for any :class:`sdeflow.ScoreModel`."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from ..core.conditioning import drop_labels
from ..core.score_model import ScoreModel
from ..errors import NonFiniteError, OptionError
from ..utils.sharding import ShardedGenerator
from .checkpoint import (
    Checkpoint,
    CheckpointError,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from .data import BatchSource
from .distributed import DistributedContext, LossModule, resolve_context, wrap_ddp
from .ema import EMA
from .model_spec import describe_score_model

LossFn = Callable[[ScoreModel, Tensor, torch.Generator], Tensor]
Callback = Callable[["Trainer", int], None]
OPTIMIZERS = ("adam", "adamw", "sgd")
PRECISIONS = ("auto", "off", "bf16", "fp16")
LR_SCHEDULES = ("constant", "cosine")


@dataclass
class TrainConfig:
    """Training options.

    Attributes:
        steps: optimiser steps to run in total (a resumed run continues to this count).
        batch_size: batch size (for tensor and distribution data).
        lr: peak learning rate.
        optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"``.
        betas, weight_decay, momentum: optimiser hyper-parameters.
        warmup_steps: linear learning-rate warm-up from ``lr / warmup_steps`` to ``lr``.
        lr_schedule: after the warm-up, ``"constant"`` (Ho et al. 2020; Song et al. 2021) or
            ``"cosine"``: ``lr_t = lr (min_lr_ratio + (1 - min_lr_ratio) (1 + cos(pi p)) / 2)``
            with ``p = k / (steps - warmup_steps + 1)`` after ``k`` post-warm-up steps
            (Loshchilov & Hutter 2017, without restarts); steps beyond ``steps`` keep the final rate.
        min_lr_ratio: final learning rate of the cosine schedule, as a fraction of ``lr``.
        grad_clip: clip the global gradient norm to this value (``None``: no clipping).
        ema_decay: decay of the weights' EMA (``None``: no EMA).
        seed: seeds the data order and the loss's time/noise draws (two generators).
        log_every: how often the running loss is read back from the device, checked for NaN
            and shown on the progress bar.
        eval_every: how often the callbacks run (0: never).
        checkpoint_every: how often a checkpoint is written (0: only at the end; needs ``out_dir``).
        keep_checkpoints: how many checkpoints to keep (the newest; 0 keeps all).
        precision: ``"auto"`` (bf16 autocast on CUDA when supported, else full precision),
            ``"off"``, ``"bf16"`` or ``"fp16"`` (CUDA only, with gradient scaling).
        progress: show a progress bar with the running loss.
        p_uncond: label dropout of a class-conditional model: each label is replaced by the null
            label with this probability, so that one network also learns the unconditional
            prediction that classifier-free guidance needs (Ho & Salimans 2022, Algorithm 1; they
            use 0.1 or 0.2). Unconditional models ignore it.
    """

    steps: int = 1000
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: str = "adam"
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    momentum: float = 0.9
    warmup_steps: int = 0
    lr_schedule: str = "constant"
    min_lr_ratio: float = 0.0
    grad_clip: float | None = 1.0
    ema_decay: float | None = 0.999
    seed: int = 0
    log_every: int = 50
    eval_every: int = 0
    checkpoint_every: int = 0
    keep_checkpoints: int = 3
    precision: str = "auto"
    progress: bool = False
    p_uncond: float = 0.1

    def validate(self) -> None:
        """Raise :class:`OptionError` for values out of range."""
        if self.optimizer not in OPTIMIZERS:
            raise OptionError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.precision not in PRECISIONS:
            raise OptionError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        for name in ("steps", "batch_size", "log_every"):
            if int(getattr(self, name)) < 1:
                raise OptionError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        for name in ("warmup_steps", "eval_every", "checkpoint_every", "keep_checkpoints"):
            if int(getattr(self, name)) < 0:
                raise OptionError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise OptionError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        if not 0.0 <= self.p_uncond <= 1.0:
            raise OptionError(f"p_uncond must lie in [0, 1], got {self.p_uncond}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise OptionError(f"min_lr_ratio must lie in [0, 1], got {self.min_lr_ratio}")
        if not self.lr > 0:
            raise OptionError(f"lr must be positive, got {self.lr}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise OptionError(f"grad_clip must be positive or None, got {self.grad_clip}")
        if self.ema_decay is not None and not 0 <= self.ema_decay < 1:
            raise OptionError(f"ema_decay must lie in [0, 1) or be None, got {self.ema_decay}")


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns: the step reached, logged losses, wall time."""

    step: int
    losses: list[tuple[int, float]] = field(default_factory=list)
    seconds: float = 0.0


class Trainer:
    """Trains a :class:`sdeflow.ScoreModel` on its default objective (or ``loss_fn``).

    The loop is a plain PyTorch loop: sample a batch, compute the loss, backward, clip, step,
    update the EMA. The loss is read back from the device only every ``log_every`` steps
    (accumulated on the device in between), so the loop does not synchronise every step; a
    NaN/Inf loss is detected at that point, before any checkpoint is written, and raises
    :class:`NonFiniteError` naming the first bad step. The last good checkpoint stays.

    A class-conditional model (its network has ``num_classes``, e.g.
    ``create_model("mlp", dim=2, num_classes=9)``) trains on labelled data: each step's loss is that of
    ``score_model.given(labels)``, with the labels dropped to the null label with probability
    ``config.p_uncond`` (classifier-free guidance, Ho & Salimans 2022, Algorithm 1).

    Args:
        score_model: the model (its ``parameters()`` include a learned schedule, if any).
        data: a tensor ``(N, *dims)``, an iterable of tensors, or an object with
            ``sample(n, generator)`` (see :class:`BatchSource`); for a class-conditional model,
            labelled data: ``(x, y)``, a distribution with ``sample_labelled``, or ``(x, y)`` batches.
        config: a :class:`TrainConfig`; keyword ``overrides`` replace its fields.
        out_dir: checkpoint folder (``None``: no checkpoints).
        loss_fn: ``loss_fn(score_model, x0, generator) -> scalar`` (default:
            ``score_model.loss``).
        callbacks: called as ``callback(trainer, step)`` every ``eval_every`` steps (on every
            rank when distributed; :attr:`is_main` tells rank 0).
        metadata: JSON-serialisable user metadata stored in every checkpoint's manifest
            (``manifest["metadata"]``). The manifest also records ``model_spec`` (the registry
            names and options of the process and network, when they were built by
            :func:`sdeflow.create_process` / :func:`sdeflow.create_model`) so that
            :func:`sdeflow.load_score_model` can rebuild the model without code.
        distributed: a :class:`~sdeflow.training.distributed.DistributedContext` to train
            data-parallel over its ranks (see :mod:`sdeflow.training.distributed`); ``None``
            (default): use the running ``torch.distributed`` process group if there is one with
            more than one rank; ``False``: train in this process alone.
        find_unused_parameters: passed to DistributedDataParallel (for objectives that leave
            some parameters without a gradient in a step).
        class_names: names of the classes of a class-conditional model, recorded in the
            checkpoints' ``model_spec`` (``sdeflow sample --class NAME``).
    """

    def __init__(self, score_model: ScoreModel, data: Any, config: TrainConfig | None = None,
                 out_dir: str | Path | None = None, loss_fn: LossFn | None = None,
                 callbacks: Sequence[Callback] = (), metadata: dict[str, Any] | None = None,
                 distributed: DistributedContext | bool | None = None, find_unused_parameters: bool = False,
                 class_names: Sequence[str] | None = None, **overrides: Any) -> None:
        cfg = config or TrainConfig()
        unknown = set(overrides) - set(asdict(cfg))
        if unknown:
            raise OptionError(f"unknown training option(s) {sorted(unknown)}; valid: {', '.join(asdict(cfg))}")
        cfg = TrainConfig(**{**asdict(cfg), **overrides})
        cfg.validate()
        self.config, self.model = cfg, score_model
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.loss_fn = loss_fn or (lambda m, x, g: m.loss(x, generator=g))
        self.callbacks = list(callbacks)
        self.device = score_model.device
        self.metadata = dict(metadata or {})
        params = [p for p in score_model.parameters() if p.requires_grad]
        if not params:
            raise OptionError("the score model has no trainable parameters")
        #: whether the model is class-conditional (trained on labelled data with label dropout)
        self.conditional = score_model.num_classes is not None
        self.class_names = None if class_names is None else [str(c) for c in class_names]
        if self.class_names is not None and (not self.conditional or len(self.class_names) != score_model.num_classes):
            raise OptionError(f"class_names must name the {score_model.num_classes} classes of a class-conditional "
                              "model, "
                              f"got {len(self.class_names)} names")
        #: the data-parallel context (``None``: this process alone)
        self.dist: DistributedContext | None = resolve_context(distributed)
        world = self.dist.world_size if self.dist is not None else 1
        rank = self.dist.rank if self.dist is not None else 0
        self.data = BatchSource(data, cfg.batch_size, seed=cfg.seed, device=self.device,
                                dtype=score_model.dtype, shard=(rank, world) if world > 1 else None,
                                labelled=self.conditional)
        gen_device = self.device if self.device.type == "cuda" else "cpu"
        gen_cls = ShardedGenerator if self.dist is not None else torch.Generator
        self.noise_generator = gen_cls(device=gen_device).manual_seed(cfg.seed + 1)
        self._ddp = (wrap_ddp(LossModule(score_model, self.loss_fn), self.dist, find_unused_parameters)
                     if self.dist is not None else None)
        self._sample_shape: tuple[int, ...] | None = None
        self.optimizer = self._make_optimizer(params)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.ema = EMA(score_model, cfg.ema_decay) if cfg.ema_decay is not None else None
        self._params = params
        self.step = 0
        self.losses: list[tuple[int, float]] = []
        #: manifest path of the newest checkpoint this trainer wrote or resumed from
        self.last_checkpoint: Path | None = None
        self.autocast_dtype = self._autocast_dtype()
        self.scaler = torch.amp.GradScaler("cuda") if self.autocast_dtype == torch.float16 else None

    # ------------------------------------------------------------------ setup helpers
    def _make_optimizer(self, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
        c = self.config
        # foreach=True: the multi-tensor implementation, which torch picks by itself only on CUDA; on
        # CPU it is the same update in fewer kernels (about 40% cheaper for a small MLP)
        if c.optimizer == "adam":
            return torch.optim.Adam(params, lr=c.lr, betas=c.betas, weight_decay=c.weight_decay, foreach=True)
        if c.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=c.lr, betas=c.betas, weight_decay=c.weight_decay, foreach=True)
        return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay, foreach=True)

    def _lr_factor(self, step: int) -> float:
        """Multiplier of ``lr`` for optimiser step ``step + 1`` (``step`` counts completed steps)."""
        c = self.config
        w = c.warmup_steps
        if w > 0 and step + 1 < w:
            return (step + 1) / w
        if c.lr_schedule == "constant":
            return 1.0
        done = min(1.0, max(0, step + 1 - w) / (max(c.steps, w) - w + 1))  # < 1 on the last step
        return c.min_lr_ratio + (1.0 - c.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * done))

    def _autocast_dtype(self) -> torch.dtype | None:
        p, dev = self.config.precision, self.device.type
        if p == "off" or (p == "auto" and dev != "cuda"):
            return None
        if p == "fp16":
            if dev != "cuda":
                raise OptionError("precision='fp16' needs a CUDA device; use 'bf16' or 'off' on CPU")
            return torch.float16
        if p == "auto":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16

    # ------------------------------------------------------------------ the loop
    @property
    def is_main(self) -> bool:
        """True in a one-process run and on rank 0 of a distributed one."""
        return self.dist is None or self.dist.is_main

    def train_step(self, x0: Tensor, labels: Tensor | None = None) -> Tensor:
        """One optimiser step on batch ``x0`` (with its ``labels`` for a class-conditional model); returns
        the (device) loss without synchronising.

        When distributed, ``x0`` is this rank's part of the step's batch and the ranks' parts are
        weighted equally; :meth:`fit` instead draws global batches and weights each rank's rows
        by their share, so that the step equals one process's step on the whole batch.
        """
        world = self.dist.world_size if self.dist is not None else 1
        if self.conditional and labels is None:
            raise OptionError("this model is class-conditional: train_step(x0, labels)")
        return self._step(x0, 1.0 / world, None, labels)

    def _step(self, x0: Tensor, weight: float, rows: tuple[int, int, int] | None,
              labels: Tensor | None = None) -> Tensor:
        """One optimiser step; ``weight`` is this rank's share of the global batch mean, ``rows``
        its ``(start, stop, total)`` in the global batch (distributed only)."""
        if not self.model.training:
            (self._ddp if self._ddp is not None else self.model).train()
        self._sample_shape = tuple(x0.shape[1:])
        self.optimizer.zero_grad(set_to_none=True)
        gen = self.noise_generator
        if self._ddp is not None and rows is not None:
            with gen.rows(*rows):  # type: ignore[attr-defined]
                loss = self._forward(x0, labels)
        else:
            loss = self._forward(x0, labels)
        if self.dist is not None:
            # DDP averages gradients over ranks: scale so the average is the global batch mean's;
            # the returned value, summed over ranks at the next log step, is the global mean loss
            loss = loss * weight
            backward_loss = loss * self.dist.world_size
        else:
            backward_loss = loss
        if self.scaler is not None:
            self.scaler.scale(backward_loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            backward_loss.backward()
        if self.config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self._params, self.config.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        self.step += 1
        return loss.detach()

    def _forward(self, x0: Tensor, labels: Tensor | None = None) -> Tensor:
        gen = self.noise_generator
        if labels is not None:  # label dropout first, from the noise generator (resumable, per-row under DDP)
            labels = drop_labels(labels.to(self.device), self.config.p_uncond, gen)

        def call(x: Tensor) -> Tensor:
            if self._ddp is not None:
                return self._ddp(x, gen, labels)
            return self.loss_fn(self.model if labels is None else self.model.given(labels, check=False), x, gen)

        if self.autocast_dtype is not None:
            with torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype):
                return call(x0)
        return call(x0)

    def _next_step(self) -> Tensor:
        """Draw the next batch (this rank's rows when distributed) and take one step on it."""
        shard = self.data.next_shard()
        if self.dist is None:
            return self._step(shard.x, 1.0, None, shard.y)
        return self._step(shard.x, shard.weight, (shard.start, shard.stop, shard.total), shard.y)

    def fit(self, steps: int | None = None) -> TrainResult:
        """Train until ``steps`` (default ``config.steps``) optimiser steps are done in total.

        Losses stay on the device, one slot per step, until the next log or checkpoint step;
        there they are read back at once (one host sync), averaged into :attr:`losses` and
        checked: a NaN/Inf raises :class:`NonFiniteError` naming the first bad step, before any
        checkpoint of a later step is written.
        """
        total = int(steps if steps is not None else self.config.steps)
        c = self.config
        start = time.perf_counter()
        first = self.step
        bar = None
        if c.progress and self.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, initial=self.step, desc="train", leave=False)
        window_losses = torch.empty(max(1, min(c.log_every, total - self.step)), device=self.device,
                                    dtype=torch.float64)
        window = 0
        try:
            while self.step < total:
                loss = self._next_step()
                window_losses[window].copy_(loss)  # one device op; no host sync
                window += 1
                at_log = self.step % c.log_every == 0 or self.step == total
                at_ckpt = bool(self.out_dir is not None and c.checkpoint_every and self.step % c.checkpoint_every == 0)
                if at_log or at_ckpt:
                    mean = self._flush(window_losses[:window])
                    window = 0
                    if bar is not None:
                        bar.set_postfix(loss=f"{mean:.4g}")
                if at_ckpt:
                    self.save()
                if c.eval_every and self.step % c.eval_every == 0:
                    for cb in self.callbacks:
                        cb(self, self.step)
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        if window:
            self._flush(window_losses[:window])
        if self.out_dir is not None and self.step > first and (
                not c.checkpoint_every or self.step % c.checkpoint_every):
            self.save()
        return TrainResult(self.step, list(self.losses), time.perf_counter() - start)

    def _flush(self, values: Tensor) -> float:
        """Read back the losses of the last ``len(values)`` steps, check them, log their mean
        (distributed: the ranks' weighted parts are summed first, one all-reduce)."""
        if self.dist is not None:
            values = self.dist.all_reduce_sum(values.clone())
        mean = float(values.mean())
        if not math.isfinite(mean):
            bad = int(torch.argmin(torch.isfinite(values).to(torch.uint8)))  # first non-finite slot
            self._raise_nonfinite(self.step - values.numel() + bad + 1, float(values[bad]))
        self.losses.append((self.step, mean))
        return mean

    def _raise_nonfinite(self, step: int, value: float) -> None:
        lr = self.optimizer.param_groups[0]["lr"]
        where = (f"; the last good checkpoint, {self.last_checkpoint}, is intact" if self.last_checkpoint is not None
                 else "; no checkpoint had been written yet" if self.out_dir is not None else "")
        raise NonFiniteError(
            f"training loss became {value} at step {step} (learning rate {lr:g}); no checkpoint was written "
            f"after it{where}. Lower the learning rate, enable grad_clip, or check the data for NaN/Inf."
        )

    # ------------------------------------------------------------------ EMA access
    def ema_model(self) -> ScoreModel:
        """A copy of the score model with the EMA weights (the model itself when EMA is off)."""
        return self.ema.averaged_model(self.model) if self.ema is not None else self.model  # type: ignore[return-value]

    # ------------------------------------------------------------------ checkpoints
    def state_tensors(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """Everything needed to resume: ``(tensors, manifest)``."""
        tensors: dict[str, Tensor] = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        if self.ema is not None:
            tensors.update({f"ema.{k}": v for k, v in self.ema.state_dict().items()})
        opt = self.optimizer.state_dict()
        scalars: dict[str, dict[str, Any]] = {}
        for idx, st in opt["state"].items():
            for key, val in st.items():
                if isinstance(val, Tensor):
                    tensors[f"optim.{idx}.{key}"] = val
                else:
                    scalars.setdefault(str(idx), {})[key] = val
        data_t, data_s = self.data.state()
        tensors.update({f"data.{k}": v for k, v in data_t.items()})
        tensors["rng.torch"] = torch.get_rng_state()
        tensors["rng.noise"] = self.noise_generator.get_state()
        if torch.cuda.is_available():
            for i, s in enumerate(torch.cuda.get_rng_state_all()):
                tensors[f"rng.cuda{i}"] = s
        manifest = {
            "optimizer": {"param_groups": opt["param_groups"], "scalars": scalars},
            "scheduler": self.scheduler.state_dict() | {"lr_lambdas": None},
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "ema_updates": self.ema.num_updates if self.ema is not None else None,
            "data": data_s,
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self.config).items()},
            "losses": self.losses[-1000:],
            "model_class": type(self.model.network).__name__,
            "process_class": type(self.model.process).__name__,
            "parametrization": self.model.parametrization,
            "metadata": self.metadata,
            "world_size": self.dist.world_size if self.dist is not None else 1,
        }
        spec = describe_score_model(self.model, self._sample_shape, self.class_names)
        if spec is not None:
            manifest["model_spec"] = spec
        return tensors, manifest

    def save(self) -> Path:
        """Write a checkpoint of the current step atomically; returns the manifest path."""
        if self.out_dir is None:
            raise OptionError("Trainer was built without out_dir: nowhere to save checkpoints")
        if self.is_main:  # distributed: rank 0 writes, the others wait for the file to exist
            tensors, manifest = self.state_tensors()
            path = save_checkpoint(self.out_dir, self.step, tensors, manifest)
            prune_checkpoints(self.out_dir, self.config.keep_checkpoints)
        else:
            path = self.out_dir / f"step_{self.step:08d}.json"
        if self.dist is not None:
            self.dist.barrier()
        self.last_checkpoint = path
        return path

    def resume(self, path: str | Path | None = None) -> int:
        """Restore the newest valid checkpoint in ``path`` (default ``out_dir``) or the given file.

        Returns:
            The step resumed from: 0, with nothing changed, if ``path`` is a folder that holds no
            checkpoint yet or is omitted and ``out_dir`` does not exist yet (a first run).

        Raises:
            CheckpointError: an explicit file that is missing or invalid, a folder whose
                checkpoints are all invalid, or a checkpoint that does not fit this trainer.
        """
        target = Path(path) if path is not None else self.out_dir
        if target is None:
            raise OptionError("resume() needs a checkpoint path or a Trainer out_dir")
        if (path is None and not target.exists()) or (target.is_dir() and not list_checkpoints(target)):
            return 0
        self.load_state(load_checkpoint(target))
        return self.step

    def load_state(self, ckpt: Checkpoint) -> None:
        """Restore model, EMA, optimiser, scheduler, data order, RNG and step from ``ckpt``.

        Raises:
            CheckpointError: the checkpoint does not fit this trainer (another architecture,
                optimiser or data kind, or missing entries); the message names the file.
        """
        try:
            self._load_state(ckpt)
        except CheckpointError:
            raise
        except (KeyError, ValueError, RuntimeError, TypeError, IndexError) as exc:
            raise CheckpointError(f"checkpoint {ckpt.path} does not fit this trainer: "
                                  f"{type(exc).__name__}: {exc}") from exc
        self.last_checkpoint = ckpt.path

    def _load_state(self, ckpt: Checkpoint) -> None:
        m = ckpt.manifest
        data_kind = m["data"]["kind"]
        if data_kind != self.data.kind:
            raise CheckpointError(f"checkpoint {ckpt.path} was trained on {data_kind} data, this trainer has "
                                  f"{self.data.kind} data")
        self.model.load_state_dict(ckpt.section("model"))
        if self.ema is not None:
            self.ema.load_state_dict(ckpt.section("ema"), m["ema_updates"] or 0)
        state: dict[Any, dict[str, Any]] = {}
        for key, val in ckpt.section("optim").items():
            idx, name = key.split(".", 1)
            state.setdefault(int(idx), {})[name] = val.to(self.device) if name != "step" else val
        for idx, vals in m["optimizer"]["scalars"].items():
            state.setdefault(int(idx), {}).update(vals)
        self.optimizer.load_state_dict({"state": state, "param_groups": m["optimizer"]["param_groups"]})
        sched = dict(m["scheduler"])
        sched.pop("lr_lambdas", None)
        self.scheduler.load_state_dict(sched | {"lr_lambdas": [None]})
        if self.scaler is not None and m.get("scaler"):
            self.scaler.load_state_dict(m["scaler"])
        self.data.load_state(ckpt.section("data"), m["data"])
        torch.set_rng_state(ckpt.tensors["rng.torch"])
        self.noise_generator.set_state(ckpt.tensors["rng.noise"])
        if torch.cuda.is_available():
            states = [ckpt.tensors[k] for k in sorted(ckpt.tensors) if k.startswith("rng.cuda")]
            if states:
                torch.cuda.set_rng_state_all(states)
        self.step = int(m["step"])
        self.losses = [tuple(x) for x in m.get("losses", [])]  # type: ignore[misc]
