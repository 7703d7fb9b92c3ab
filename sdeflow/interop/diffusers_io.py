"""diffusers checkpoints as sdeflow :class:`~sdeflow.ScoreModel` objects, and back.

:func:`from_diffusers` reads a pipeline folder (``unet/`` + ``scheduler/``), a model folder plus a
scheduler configuration, or live diffusers objects. The scheduler's configuration becomes the
``ddpm`` process (:mod:`sdeflow.interop.scheduler_config`); the network is called at the timestep
of :func:`~sdeflow.interop.timesteps.network_timestep`. :func:`save_diffusers` writes a model
(trained with sdeflow's Trainer, say) in diffusers' ``save_pretrained`` layout.

Only safetensors weights are read (``use_safetensors=True``; a folder with pickled ``.bin``
weights alone is refused), nothing is fetched (``local_files_only=True``), and no code from the
folder is run (diffusers' model classes are looked up by name in the installed library).
diffusers is imported inside the functions, never when :mod:`sdeflow` is.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from ..core.score_model import ScoreModel
from ..errors import CheckpointError, IncompatibleError, OptionError
from .dependency import require_diffusers
from .scheduler_config import CONFIG_NAME, SchedulerSpec, parse_scheduler_config, read_scheduler_config
from .timesteps import network_timestep

MODEL_CONFIG = "config.json"
PIPELINE_INDEX = "model_index.json"
#: the options :func:`from_diffusers` takes besides its three arguments
OPTIONS = ("device", "dtype", "variant")


class DiffusersNetwork(nn.Module):
    """A diffusers model as an sdeflow network ``net(x, t)``: ``model(x, timestep(t)).sample`` with
    ``timestep(t) = (t - 1/N) N`` (:func:`~sdeflow.interop.timesteps.network_timestep`).

    Args:
        model: a diffusers model whose ``forward(sample, timestep)`` returns an object with
            ``.sample`` (``UNet2DModel``, ``UNet1DModel``, ...) or a tensor.
        num_train_timesteps: ``N``.
        learned_variance: the model outputs twice the input's channels, a prediction and a variance
            (improved DDPM, Nichol & Dhariwal 2021, Sec. 3.1); the first half is kept.
        scheduler_config: the scheduler configuration the model came with (written back by
            :func:`save_diffusers`).
    """

    def __init__(self, model: nn.Module, num_train_timesteps: int, learned_variance: bool = False,
                 scheduler_config: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.model = model
        self.num_train_timesteps = int(num_train_timesteps)
        self.learned_variance = bool(learned_variance)
        self.scheduler_config = dict(scheduler_config or {})

    @property
    def sample_shape(self) -> tuple[int, ...] | None:
        """The shape of one sample from the model's configuration (``(C, H, W)`` for a 2-D UNet), or ``None``."""
        cfg = getattr(self.model, "config", None)
        if cfg is None:
            return None
        channels, size = cfg.get("in_channels"), cfg.get("sample_size")
        if not isinstance(channels, int) or size is None:
            return None
        if isinstance(size, int):
            two_d = "2D" in type(self.model).__name__ or "2d" in type(self.model).__module__
            return (channels, size, size) if two_d else (channels, size)
        return (channels, *[int(s) for s in size])

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        """The model's prediction at continuous times ``t`` (shape ``(batch,)``)."""
        out = self.model(x, network_timestep(t, self.num_train_timesteps))
        out = getattr(out, "sample", out)
        if isinstance(out, tuple):
            out = out[0]
        if self.learned_variance and out.shape[1] == 2 * x.shape[1]:
            out = out[:, : x.shape[1]]
        return out


# ----------------------------------------------------------------------------------------- loading
def _model_folder(path: Path, subfolder: str | None) -> Path:
    """The folder of the network's ``config.json`` inside a pipeline or model folder."""
    if not path.exists():
        raise CheckpointError(f"no such folder: {path}")
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a folder; give a diffusers pipeline folder (unet/ + scheduler/) or a "
                              f"model folder ({MODEL_CONFIG} + diffusion_pytorch_model.safetensors)")
    if subfolder is not None:
        folder = path / subfolder
        if not (folder / MODEL_CONFIG).is_file():
            raise CheckpointError(f"no model in {folder}: {MODEL_CONFIG} is missing")
        return folder
    if (path / MODEL_CONFIG).is_file():
        return path
    index = path / PIPELINE_INDEX
    if index.is_file():
        names = _pipeline_models(index)
        found = [n for n in names if (path / n / MODEL_CONFIG).is_file()]
        if len(found) == 1:
            return path / found[0]
        if len(found) > 1:
            raise CheckpointError(f"pipeline {path} holds several models ({', '.join(found)}); pick the denoiser "
                                  f"with subfolder=...")
    if (path / "unet" / MODEL_CONFIG).is_file():
        return path / "unet"
    raise CheckpointError(f"{path} is neither a diffusers model folder ({MODEL_CONFIG}) nor a pipeline folder with a "
                          "unet/ subfolder; give subfolder= for another layout")


def _pipeline_models(index: Path) -> list[str]:
    """Components of a pipeline's ``model_index.json`` that are models (not schedulers, tokenizers, ...)."""
    try:
        data = json.loads(index.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{index} is not readable JSON: {exc}") from exc
    out = []
    for key, val in data.items():
        if key.startswith("_") or not isinstance(val, list) or len(val) != 2:
            continue
        cls = str(val[1] or "")
        if cls.endswith("Model") or cls.startswith("UNet"):
            out.append(key)
    return out


def _scheduler_source(path: Path, folder: Path) -> Path:
    """Where the scheduler configuration of a model loaded from ``folder`` (inside ``path``) lies."""
    for cand in (folder / CONFIG_NAME, path / "scheduler" / CONFIG_NAME, folder.parent / "scheduler" / CONFIG_NAME):
        if cand.is_file():
            return cand
    raise CheckpointError(f"no scheduler configuration for the model in {folder}: looked for {CONFIG_NAME} there, in "
                          f"{path / 'scheduler'} and in {folder.parent / 'scheduler'}; pass scheduler= (a folder with "
                          f"{CONFIG_NAME}, the JSON file, a dict or a diffusers scheduler)")


def _load_model(folder: Path, variant: str | None) -> nn.Module:
    """The diffusers model in ``folder``, its class looked up by name in diffusers (safetensors only)."""
    diffusers = require_diffusers("sdeflow.interop.from_diffusers")
    try:
        config = json.loads((folder / MODEL_CONFIG).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{folder / MODEL_CONFIG} is not readable JSON: {exc}") from exc
    name = config.get("_class_name") if isinstance(config, dict) else None
    cls = getattr(diffusers, str(name), None) if name else None
    if cls is None or not (inspect.isclass(cls) and issubclass(cls, diffusers.ModelMixin)):
        raise IncompatibleError(f"{folder / MODEL_CONFIG} names the model class {name!r}, which is not a diffusers "
                                "model class (e.g. UNet2DModel)")
    try:
        model: nn.Module = cls.from_pretrained(  # type: ignore[attr-defined]
            str(folder), use_safetensors=True, local_files_only=True, low_cpu_mem_usage=False, variant=variant)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise CheckpointError(f"cannot load the {name} in {folder} from safetensors weights (pickled .bin weights are "
                              f"never read): {type(exc).__name__}: {exc}") from exc
    return model


def _check_model(model: nn.Module) -> None:
    """Refuse models that need more than ``(sample, timestep)``, or class labels."""
    cfg = getattr(model, "config", None) or {}
    if cfg.get("num_class_embeds") or cfg.get("class_embed_type"):
        raise IncompatibleError(
            f"{type(model).__name__} is class-conditional (num_class_embeds={cfg.get('num_class_embeds')}, "
            f"class_embed_type={cfg.get('class_embed_type')!r}): it needs class labels, and sdeflow score models "
            "take none yet; only unconditional models load")
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return
    required = [p.name for p in params[2:] if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY,
                                                                                  p.POSITIONAL_OR_KEYWORD)]
    if len(params) < 2 or required:
        needs = ", ".join(required) or "other arguments"
        raise IncompatibleError(f"{type(model).__name__}.forward needs {needs} besides "
                                "(sample, timestep); only models called as model(sample, timestep) load "
                                "(e.g. UNet2DModel, not a text-conditioned UNet2DConditionModel)")


def from_diffusers(path_or_model: str | Path | nn.Module, scheduler: Any = None, subfolder: str | None = None,
                   **options: Any) -> ScoreModel:
    """A diffusers checkpoint as a :class:`~sdeflow.ScoreModel` every sdeflow sampler, the likelihood
    and the Trainer work with.

    The process is sdeflow's ``ddpm`` with the scheduler's betas (``beta_schedule`` linear,
    scaled_linear, squaredcos_cap_v2 or sigmoid, or ``trained_betas``, over ``num_train_timesteps``;
    ``rescale_betas_zero_snr`` as in Lin et al. 2024), so its marginal at ``t = (k + 1)/N`` is the
    scheduler's ``alphas_cumprod[k]``; ``prediction_type`` epsilon / sample / v_prediction is the
    parametrization eps / x0 / v; the network gets the timestep ``(t - 1/N) N``
    (:mod:`sdeflow.interop.timesteps`).

    Args:
        path_or_model: a pipeline folder (``model_index.json``, ``unet/``, ``scheduler/``), a model
            folder (``config.json`` + ``diffusion_pytorch_model.safetensors``, with
            ``scheduler_config.json`` beside it or ``scheduler=``), or a live diffusers model.
        scheduler: the scheduler configuration: a folder with ``scheduler_config.json``, the JSON
            file, a dict, or a diffusers scheduler; default: the one of the pipeline or folder (a
            live model needs it).
        subfolder: the model's subfolder of a pipeline (default: its single model, ``unet``).
        **options: ``device``, ``dtype`` (where and in what precision to put the model; default as
            saved, on the CPU) and ``variant`` (diffusers' weight-file variant, e.g. ``"fp16"``).

    Returns:
        The score model, in eval mode; ``score_model.network`` is a :class:`DiffusersNetwork`
        (``.model`` the diffusers model, ``.sample_shape`` the shape of one sample).

    Raises:
        MissingDependencyError: diffusers is not installed (loading from a folder needs it).
        CheckpointError: a missing folder, no scheduler configuration, no safetensors weights.
        IncompatibleError: a scheduler outside the DDPM family, an unknown ``beta_schedule`` or
            ``prediction_type``, or a model that needs more inputs than ``(sample, timestep)``.
        OptionError: an unknown option.
    """
    bad = sorted(set(options) - set(OPTIONS))
    if bad:
        raise OptionError(f"from_diffusers got unknown option(s) {', '.join(bad)}; valid: {', '.join(OPTIONS)}")
    if isinstance(path_or_model, (str, Path)):
        path = Path(path_or_model)
        folder = _model_folder(path, subfolder)
        config = read_scheduler_config(scheduler if scheduler is not None else _scheduler_source(path, folder))
        spec = parse_scheduler_config(config)  # before the (slow) model load: a bad config fails fast
        model = _load_model(folder, options.get("variant"))
    elif isinstance(path_or_model, nn.Module):
        if subfolder is not None:
            raise OptionError("subfolder= applies to a folder, not to a live model")
        if scheduler is None:
            raise CheckpointError(f"a live {type(path_or_model).__name__} carries no noise schedule: pass scheduler= "
                                  f"(a diffusers scheduler, its config dict, or a folder with {CONFIG_NAME})")
        spec = parse_scheduler_config(read_scheduler_config(scheduler))
        model = path_or_model
    else:
        raise OptionError(f"from_diffusers takes a folder path or a diffusers model, got "
                          f"{type(path_or_model).__name__}")
    return _score_model(model, spec, options.get("device"), options.get("dtype"))


def _score_model(model: nn.Module, spec: SchedulerSpec, device: Any, dtype: Any) -> ScoreModel:
    _check_model(model)
    net = DiffusersNetwork(model, spec.num_train_timesteps, spec.learned_variance, spec.config)
    sm = ScoreModel(net, spec.process(), parametrization=spec.parametrization)
    if device is not None or dtype is not None:
        sm = sm.to(device=device or sm.device, dtype=dtype or sm.dtype)
    return sm.eval()


# ----------------------------------------------------------------------------------------- saving
def save_diffusers(score_model: ScoreModel, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write a :func:`from_diffusers` model in diffusers' ``save_pretrained`` layout: ``unet/``
    (``config.json`` + safetensors weights), ``scheduler/scheduler_config.json`` and, for a
    ``UNet2DModel``, ``model_index.json`` of a ``DDPMPipeline``, so that
    ``DDPMPipeline.from_pretrained(path)`` and :func:`from_diffusers` both load it. Written into a
    temporary folder beside ``path`` and renamed into place.

    To save a trained model's exponential moving average, pass ``trainer.ema_model()``.

    Args:
        score_model: a model whose network is a :class:`DiffusersNetwork`.
        path: the pipeline folder to create.
        overwrite: replace an existing folder (otherwise an existing non-empty ``path`` is refused).

    Returns:
        ``path``.
    """
    diffusers = require_diffusers("sdeflow.interop.save_diffusers")
    net = getattr(score_model, "network", None)
    if not isinstance(net, DiffusersNetwork):
        raise IncompatibleError(f"save_diffusers needs a score model whose network is a DiffusersNetwork (from "
                                f"sdeflow.interop.from_diffusers), got {type(net).__name__}")
    path = Path(path)
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise CheckpointError(f"{path} exists and is not empty; pass overwrite=True to replace it")
    config = dict(net.scheduler_config)
    cls_name = config.get("_class_name") or "DDPMScheduler"
    sched_cls = getattr(diffusers, str(cls_name), None) or diffusers.DDPMScheduler
    scheduler = sched_cls.from_config({k: v for k, v in config.items() if not k.startswith("_")})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        if isinstance(net.model, diffusers.UNet2DModel):
            pipe = diffusers.DDPMPipeline(unet=net.model, scheduler=scheduler)
            pipe.save_pretrained(str(tmp), safe_serialization=True)
        else:
            net.model.save_pretrained(str(tmp / "unet"), safe_serialization=True)  # type: ignore[operator]
            scheduler.save_pretrained(str(tmp / "scheduler"))
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def is_diffusers_folder(path: str | Path) -> bool:
    """True when ``path`` looks like a diffusers pipeline or model folder (``model_index.json``,
    ``unet/config.json``, or ``config.json`` naming a class)."""
    p = Path(path)
    if (p / PIPELINE_INDEX).is_file() or (p / "unet" / MODEL_CONFIG).is_file():
        return True
    cfg = p / MODEL_CONFIG
    if cfg.is_file():
        try:
            return "_class_name" in json.loads(cfg.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return False
    return False


__all__ = ["DiffusersNetwork", "from_diffusers", "is_diffusers_folder", "save_diffusers"]
