"""The TOML configuration of ``sdeflow train``: load, validate, merge with flags, write.

Layout (every key optional; ``sdeflow train --print-config`` prints a complete one)::

    out = "runs/train"      # checkpoint folder
    seed = 0
    device = "auto"
    dtype = "float32"

    [process]
    name = "vp"
    [process.options]
    beta_max = 10.0

    [model]
    name = "mlp"
    parametrization = "eps"     # default: the process's own (eps; velocity for rectified_flow)
    [model.options]
    hidden = 256

    [data]
    name = "nine_gaussians"     # a registered data set or a .pt/.npz/.npy file
    labels = true               # train a class-conditional model on the data's labels (--labels)
    [data.options]
    n = 20000

    [training]                  # the fields of sdeflow.training.TrainConfig (but seed)
    steps = 2000
    batch_size = 256
    ema_decay = 0.999           # "none" turns an optional value off (TOML has no null)

Precedence: built-in defaults < the file < command-line flags. A flag that changes a component's
name (``--process ve`` over a file's ``vp``) drops the file's options for it (they belong to the
other component); ``--process-opt`` merges into the file's options otherwise.
"""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import click

from ..core.parametrization import PARAMETRIZATIONS
from ..errors import OptionError, UnknownComponentError
from ..plugins.manager import get_manager
from ..training.trainer import TrainConfig
from .options import DTYPE_CHOICES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 only
    import tomli as tomllib

#: TrainConfig fields a config file's [training] table takes (the seed is top-level; progress is a flag)
TRAIN_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(TrainConfig) if f.name not in ("seed", "progress"))
_OPTIONAL_FLOATS = ("grad_clip", "ema_decay")
_INTS = ("steps", "batch_size", "warmup_steps", "log_every", "eval_every", "checkpoint_every", "keep_checkpoints")
_FLOATS = ("lr", "weight_decay", "momentum", "min_lr_ratio", "p_uncond")
_SECTIONS: dict[str, tuple[str, ...]] = {"process": ("name", "options"),
                                         "model": ("name", "parametrization", "options"),
                                         "data": ("name", "options", "labels"), "training": TRAIN_FIELDS}
_TOP = ("out", "seed", "device", "dtype")


@dataclass
class RunConfig:
    """Everything ``sdeflow train`` needs (the options given, not the ones inferred from the data)."""

    out: str = "runs/train"
    seed: int = 0
    device: str = "auto"
    dtype: str = "float32"
    process: str = "vp"
    process_options: dict[str, Any] = field(default_factory=dict)
    model: str = "mlp"
    model_options: dict[str, Any] = field(default_factory=dict)
    parametrization: str | None = None  # None: the process's default_parametrization (complete() fills it in)
    data: str = "nine_gaussians"
    data_options: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    labels: bool = False

    def train_config(self, progress: bool = False) -> TrainConfig:
        """The :class:`TrainConfig` (defaults for every field not set), validated.

        Raises:
            click.UsageError: a value out of range (sdeflow's message).
        """
        try:
            cfg = TrainConfig(**{**self.training, "seed": self.seed, "progress": progress})
            cfg.validate()
        except (OptionError, TypeError, ValueError) as exc:
            raise click.UsageError(f"bad training option: {exc}") from exc
        return cfg

    def complete(self) -> "RunConfig":
        """A copy whose ``training`` lists every field (defaults filled in) and whose parametrization is
        set (when not given: the process's ``default_parametrization``, e.g. ``velocity`` for a flow)."""
        full = {k: v for k, v in asdict(self.train_config()).items() if k in TRAIN_FIELDS}
        return RunConfig(**{**asdict(self), "training": full,
                            "parametrization": self.parametrization or process_parametrization(self.process)})

    def to_toml(self) -> str:
        """TOML text that :func:`load_config` reads back to an equal config."""
        lines = ["# sdeflow train configuration: sdeflow train --config THIS_FILE (flags override it)"]
        for key in _TOP:
            lines.append(f"{key} = {_toml_value(getattr(self, key), key)}")
        for section, name_key, extra in (("process", "process", {}), ("model", "model",
                                                                      {"parametrization": self.parametrization}),
                                         ("data", "data", {"labels": True} if self.labels else {})):
            lines += ["", f"[{section}]", f"name = {_toml_value(getattr(self, name_key), section + '.name')}"]
            lines += [f"{k} = {_toml_value(v, f'{section}.{k}')}" for k, v in extra.items()]
            opts = getattr(self, f"{name_key}_options")
            lines.append(f"[{section}.options]")
            lines += [f"{_toml_key(k)} = {_toml_value(v, f'{section}.options.{k}')}" for k, v in opts.items()]
        lines += ["", "[training]"]
        for k, v in self.training.items():
            if v is None and k in _OPTIONAL_FLOATS:
                v = "none"
            lines.append(f"{k} = {_toml_value(list(v) if isinstance(v, tuple) else v, 'training.' + k)}")
        return "\n".join(lines) + "\n"


def process_parametrization(name: str) -> str:
    """The ``default_parametrization`` of the registered process ``name`` (``"eps"`` for an unknown name
    or a factory without one; the unknown name is reported when the process is built)."""
    try:
        factory = get_manager().registry.get("process", name).factory
    except UnknownComponentError:  # reported with the valid names when the process is built
        return "eps"
    value = getattr(factory, "default_parametrization", "eps")
    return value if value in PARAMETRIZATIONS else "eps"


# --------------------------------------------------------------------------- reading
def load_config(path: str | Path) -> RunConfig:
    """Read and validate a config file (see the module docstring).

    Raises:
        click.UsageError: a missing or unreadable file, invalid TOML, unknown keys (the message
            lists the valid ones) or values of the wrong type; the message names the file.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise click.UsageError(f"config file {path} cannot be read: {exc.strerror or exc}") from exc
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise click.UsageError(f"config file {path} is not valid TOML: {exc}") from exc
    return config_from_dict(raw, str(path))


def config_from_dict(raw: dict[str, Any], source: str = "config") -> RunConfig:
    """A :class:`RunConfig` from the parsed TOML tables (validated; errors name ``source``)."""
    def fail(msg: str) -> click.UsageError:
        return click.UsageError(f"{source}: {msg}")

    unknown = sorted(set(raw) - set(_TOP) - set(_SECTIONS))
    if unknown:
        raise fail(f"unknown key(s) {', '.join(unknown)}; valid top-level keys: {', '.join(_TOP)}; tables: "
                   f"{', '.join('[' + s + ']' for s in _SECTIONS)}")
    cfg = RunConfig()
    for key in _TOP:
        if key in raw:
            setattr(cfg, key, raw[key])
    if not isinstance(cfg.out, str) or not isinstance(cfg.device, str):
        raise fail("out and device must be strings")
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int):
        raise fail(f"seed must be an integer, got {cfg.seed!r}")
    if cfg.dtype not in DTYPE_CHOICES:
        raise fail(f"dtype must be one of {', '.join(DTYPE_CHOICES)}, got {cfg.dtype!r}")
    for section, allowed in _SECTIONS.items():
        table = raw.get(section, {})
        if not isinstance(table, dict):
            raise fail(f"{section} must be a table [{section}]")
        bad = sorted(set(table) - set(allowed))
        if bad:
            raise fail(f"unknown key(s) {', '.join(bad)} in [{section}]; valid: {', '.join(allowed)}")
        if section == "training":
            cfg.training = {k: coerce_training_value(k, v, source) for k, v in table.items()}
            continue
        if "name" in table:
            if not isinstance(table["name"], str) or not table["name"]:
                raise fail(f"[{section}] name must be a non-empty string")
            setattr(cfg, section, table["name"])
        opts = table.get("options", {})
        if not isinstance(opts, dict):
            raise fail(f"[{section}] options must be a table [{section}.options]")
        setattr(cfg, f"{section}_options", dict(opts))
        if section == "model" and "parametrization" in table:
            cfg.parametrization = table["parametrization"]
        if section == "data" and "labels" in table:
            if not isinstance(table["labels"], bool):
                raise fail(f"[data] labels must be true or false, got {table['labels']!r}")
            cfg.labels = table["labels"]
    if cfg.parametrization is not None and cfg.parametrization not in PARAMETRIZATIONS:
        raise fail(f"[model] parametrization must be one of {', '.join(PARAMETRIZATIONS)}, got {cfg.parametrization!r}")
    return cfg


def coerce_training_value(key: str, value: Any, source: str = "--train-opt") -> Any:
    """Check and convert one ``[training]`` / ``--train-opt`` value to the TrainConfig field's type.

    Raises:
        click.UsageError: an unknown field (lists the valid ones) or a value of the wrong type.
    """
    if key not in TRAIN_FIELDS:
        hint = " (the seed is set by --seed or the top-level seed key)" if key == "seed" else ""
        raise click.UsageError(f"{source}: unknown training option {key!r}{hint}; valid: {', '.join(TRAIN_FIELDS)}")

    def bad(kind: str) -> click.UsageError:
        return click.UsageError(f"{source}: training option {key} must be {kind}, got {value!r}")

    if key in _OPTIONAL_FLOATS and (value is None or (isinstance(value, str) and value.lower() in ("none", "null"))):
        return None
    if key in _INTS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if key in _FLOATS or key in _OPTIONAL_FLOATS:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number" + (' or "none"' if key in _OPTIONAL_FLOATS else ""))
        return float(value)
    if key == "betas":
        if (not isinstance(value, (list, tuple)) or len(value) != 2
                or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in value)):
            raise bad("a list of two numbers, e.g. [0.9, 0.999]")
        return (float(value[0]), float(value[1]))
    if not isinstance(value, str):
        raise bad("a string")
    return value


# --------------------------------------------------------------------------- merging flags
def apply_overrides(cfg: RunConfig, *, out: str | None = None, seed: int | None = None, device: str | None = None,
                    dtype: str | None = None, process: str | None = None, process_options: dict[str, Any] | None = None,
                    model: str | None = None, model_options: dict[str, Any] | None = None,
                    parametrization: str | None = None, data: str | None = None,
                    data_options: dict[str, Any] | None = None, training: dict[str, Any] | None = None,
                    labels: bool | None = None) -> RunConfig:
    """``cfg`` with every given (non-``None``) flag value on top (see the module docstring)."""
    new = RunConfig(**{**asdict(cfg)})
    for key, val in (("out", out), ("seed", seed), ("device", device), ("dtype", dtype),
                     ("parametrization", parametrization), ("labels", labels)):
        if val is not None:
            setattr(new, key, val)
    for key, name, opts in (("process", process, process_options), ("model", model, model_options),
                            ("data", data, data_options)):
        if name is not None and name != getattr(new, key):
            setattr(new, key, name)
            setattr(new, f"{key}_options", {})
        if opts:
            setattr(new, f"{key}_options", {**getattr(new, f"{key}_options"), **opts})
    if training:
        new.training = {**new.training, **{k: coerce_training_value(k, v) for k, v in training.items()}}
    return new


# --------------------------------------------------------------------------- writing TOML
_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_key(key: str) -> str:
    return key if _BARE.match(key) else json.dumps(key)


def _toml_value(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string (same escapes)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v, where) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(str(k))} = {_toml_value(v, where)}" for k, v in value.items()) + "}"
    if value is None:
        raise click.UsageError(f"{where} is None, which TOML cannot hold: leave the option out to get its default")
    raise click.UsageError(f"{where} = {value!r} ({type(value).__name__}) cannot be written to TOML")
