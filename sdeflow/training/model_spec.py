"""Rebuilding a trained :class:`sdeflow.ScoreModel` from a checkpoint, without code.

:func:`sdeflow.create_process` and :func:`sdeflow.create_model` record on the objects they build
the registry name and options they were called with; the :class:`~sdeflow.training.Trainer`
writes them, with the parametrization, the per-sample data shape and the dtype, into every
checkpoint manifest as ``model_spec``::

    "model_spec": {"process": {"name": "vp", "options": {"beta_max": 10.0}},
                   "model": {"name": "mlp", "options": {"dim": 2, "hidden": 64, "num_classes": 9}},
                   "parametrization": "eps", "sample_shape": [2], "dtype": "float32",
                   "class_names": ["0", "1", ...]}

A class-conditional network records its ``num_classes`` among its options (so it is rebuilt with its
label embedding) and the class names, when the run knew them (``class_names``, else ``None``).

:func:`load_score_model` reads it back, builds the same components through the plugin registry
and loads the weights (the EMA weights by default). A third-party process or network rebuilds the
same way, provided its plugin is installed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..core.score_model import ScoreModel
from ..errors import SdeflowError
from ..plugins.api import component_spec, create_model, create_process
from .checkpoint import Checkpoint, CheckpointError, load_checkpoint

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
                                  "bfloat16": torch.bfloat16}


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32 -> "float32"``."""
    return str(dtype).removeprefix("torch.")


@dataclass
class ModelSpec:
    """How to rebuild a score model by name: process and network (registry name + options),
    parametrization, per-sample data shape and dtype.

    Attributes:
        process, process_options: :func:`sdeflow.create_process` arguments.
        model, model_options: :func:`sdeflow.create_model` arguments.
        parametrization: ``"eps"``, ``"score"``, ``"x0"`` or ``"v"``.
        sample_shape: shape of one sample (``[2]`` for 2-D points, ``[c, h, w]`` for images), or
            ``None`` if unknown (no training step was taken).
        dtype: floating dtype of the weights, by name.
        class_names: the names of the classes of a class-conditional model (``None``: unknown; the
            classes are then named by their indices).
    """

    process: str
    model: str
    process_options: dict[str, Any] = field(default_factory=dict)
    model_options: dict[str, Any] = field(default_factory=dict)
    parametrization: str = "eps"
    sample_shape: list[int] | None = None
    dtype: str = "float32"
    class_names: list[str] | None = None

    def to_manifest(self) -> dict[str, Any]:
        """The ``model_spec`` entry of a checkpoint manifest."""
        entry: dict[str, Any] = {"process": {"name": self.process, "options": dict(self.process_options)},
                                 "model": {"name": self.model, "options": dict(self.model_options)},
                                 "parametrization": self.parametrization,
                                 "sample_shape": (None if self.sample_shape is None
                                                  else [int(s) for s in self.sample_shape]),
                                 "dtype": self.dtype}
        if self.class_names is not None:
            entry["class_names"] = list(self.class_names)
        return entry

    @classmethod
    def from_manifest(cls, entry: Any, where: str = "checkpoint") -> "ModelSpec":
        """Parse a ``model_spec`` entry.

        Raises:
            CheckpointError: a malformed entry (names ``where``).
        """
        try:
            spec = cls(process=str(entry["process"]["name"]), model=str(entry["model"]["name"]),
                       process_options=dict(entry["process"].get("options") or {}),
                       model_options=dict(entry["model"].get("options") or {}),
                       parametrization=str(entry.get("parametrization", "eps")),
                       sample_shape=(None if entry.get("sample_shape") is None
                                     else [int(s) for s in entry["sample_shape"]]),
                       dtype=str(entry.get("dtype", "float32")),
                       class_names=(None if entry.get("class_names") is None
                                    else [str(c) for c in entry["class_names"]]))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(f"{where}: malformed model_spec {entry!r} ({type(exc).__name__}: {exc})") from exc
        if spec.dtype not in DTYPES:
            raise CheckpointError(f"{where}: model_spec dtype {spec.dtype!r} is not one of {', '.join(DTYPES)}")
        return spec

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint) -> "ModelSpec":
        """The spec stored in ``ckpt``'s manifest.

        Raises:
            CheckpointError: the checkpoint has no ``model_spec`` (its process or network was not
                built by ``sdeflow.create_process`` / ``sdeflow.create_model``).
        """
        entry = ckpt.manifest.get("model_spec")
        if entry is None:
            raise CheckpointError(
                f"checkpoint {ckpt.path} has no model_spec, so the model cannot be rebuilt by name (its process or "
                "network was not built by sdeflow.create_process / sdeflow.create_model, or their options are not "
                "JSON-serialisable); build the ScoreModel in code and load the checkpoint's 'model.' tensors into it")
        return cls.from_manifest(entry, where=f"checkpoint {ckpt.path}")

    def build(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> ScoreModel:
        """A freshly initialised score model of this spec (through the plugin registry).

        Raises:
            sdeflow.errors.UnknownComponentError / OptionError: the plugin is not installed or
                no longer takes these options.
        """
        process = create_process(self.process, **self.process_options)
        net = create_model(self.model, **self.model_options)
        model = ScoreModel(net, process, parametrization=self.parametrization)
        return model.to(device=device or "cpu", dtype=dtype or DTYPES[self.dtype])

    def as_dict(self) -> dict[str, Any]:
        """The fields as a plain dict."""
        return asdict(self)


def describe_score_model(model: ScoreModel, sample_shape: tuple[int, ...] | list[int] | None = None,
                         class_names: list[str] | None = None) -> dict[str, Any] | None:
    """The ``model_spec`` manifest entry of ``model``, or ``None`` if its process or network was
    not built by name (or its options are not JSON-serialisable)."""
    p, n = component_spec(model.process), component_spec(model.network)
    if p is None or n is None:
        return None
    spec = ModelSpec(process=p["name"], model=n["name"], process_options=p["options"], model_options=n["options"],
                     parametrization=model.parametrization,
                     sample_shape=None if sample_shape is None else list(sample_shape), dtype=dtype_name(model.dtype),
                     class_names=None if class_names is None else list(class_names))
    entry = spec.to_manifest()
    try:
        json.dumps(entry)
    except (TypeError, ValueError):
        return None
    return entry


def load_score_model(checkpoint: str | Path | Checkpoint, *, ema: bool = True, device: torch.device | str | None = None,
                     dtype: torch.dtype | None = None) -> ScoreModel:
    """Rebuild the :class:`sdeflow.ScoreModel` a :class:`~sdeflow.training.Trainer` checkpoint holds.

    The process and network are built by name from the manifest's ``model_spec`` (see the module
    docstring), then the weights are loaded: the exponential moving average (the weights
    Ho et al. 2020 and Song et al. 2021 sample with) unless ``ema=False`` or the run had no EMA.

    Args:
        checkpoint: a manifest (``step_XXXXXXXX.json``), its ``.safetensors`` file, a checkpoint
            folder (the newest valid checkpoint in it), or a loaded :class:`Checkpoint`.
        ema: load the EMA weights (default) rather than the raw trained weights.
        device: where to put the model (default CPU).
        dtype: cast the model to this dtype (default: the dtype it was trained in).

    Returns:
        The score model in eval mode.

    Raises:
        CheckpointError: missing or corrupt files, no ``model_spec``, a plugin that is not
            installed, or weights that do not fit the rebuilt model; the message names the file.
    """
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    spec = ModelSpec.from_checkpoint(ckpt)
    try:
        model = spec.build()
    except SdeflowError as exc:
        raise CheckpointError(f"checkpoint {ckpt.path} cannot be rebuilt: {exc}") from exc
    state = ckpt.section("model")
    if not state:
        raise CheckpointError(f"checkpoint {ckpt.path} holds no model weights ('model.' tensors)")
    if ema:
        state.update(ckpt.section("ema"))  # the EMA holds every floating entry; the rest stays raw
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {ckpt.path}: the weights do not fit the rebuilt {spec.model!r} model: "
                              f"{exc}") from exc
    if device is not None or dtype is not None:
        model = model.to(device=device or "cpu", dtype=dtype or model.dtype)
    return model.eval()
