"""Options every ``sdeflow`` command shares, as reusable click decorators and parsers.

* :func:`common_options`: ``--device``, ``--seed``, ``--dtype`` (resolve them with
  :func:`resolve_device`, :func:`resolve_dtype`, :func:`resolve_seed`).
* :func:`component_option`: ``--process vp --process-opt beta_max=10`` style pairs for any
  component kind; :func:`parse_assignments` turns the ``KEY=VALUE`` list into a dict, values
  parsed as TOML literals (``10``, ``1e-3``, ``true``, ``[0.9, 0.99]``, ``"text"``), then as
  JSON (``null`` is ``None``), else kept as a bare string (``method=dopri5``).
* :func:`build_component` creates a registered component and turns sdeflow's own errors (which
  list the valid names and options) into click usage errors.
* :func:`cli_errors` turns sdeflow errors raised while a command runs into a one-line message
  and exit status 1 instead of a traceback.

Any command (``bench`` included) can stack these decorators.
"""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any, Callable, Iterator, Sequence

import click
import torch

from ..errors import SdeflowError, UnknownComponentError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

DTYPE_CHOICES: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}
DEFAULT_SEED = 0

F = Callable[..., Any]


# --------------------------------------------------------------------------- values
def parse_literal(text: str) -> Any:
    """A command-line value as a TOML literal, else a JSON literal, else the text itself.

    ``"10" -> 10``, ``"1e-3" -> 0.001``, ``"true" -> True``, ``"[0.9, 0.99]" -> [0.9, 0.99]``,
    ``"'a b'" -> "a b"``, ``"null" -> None``, ``"dopri5" -> "dopri5"``, ``"none" -> "none"``.
    """
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        pass
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_assignments(values: Sequence[str], flag: str) -> dict[str, Any]:
    """``["a=1", "b=x"] -> {"a": 1, "b": "x"}`` (see :func:`parse_literal`).

    Raises:
        click.BadParameter: an item without ``=`` or with an empty key, or a key given twice.
    """
    out: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r} (e.g. {flag} beta_max=10)", param_hint=flag)
        if key in out:
            raise click.BadParameter(f"{key!r} given twice", param_hint=flag)
        out[key] = parse_literal(raw.strip())
    return out


# --------------------------------------------------------------------------- device / dtype / seed
def resolve_device(value: str | None) -> torch.device:
    """``None``/``"auto"``: CUDA when available, else CPU; otherwise a checked ``torch.device``.

    Raises:
        click.BadParameter: an unparsable device or a CUDA/MPS device this machine lacks.
    """
    if value is None or value == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(value)
    except (RuntimeError, TypeError) as exc:
        raise click.BadParameter(f"{value!r} is not a device ({exc}); valid: auto, cpu, cuda, cuda:N, mps",
                                 param_hint="--device") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise click.BadParameter(f"{value!r}: CUDA is not available on this machine; use cpu (or auto)",
                                     param_hint="--device")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise click.BadParameter(f"{value!r}: this machine has {torch.cuda.device_count()} CUDA device(s)",
                                     param_hint="--device")
    elif dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise click.BadParameter(f"{value!r}: MPS is not available on this machine; use cpu (or auto)",
                                 param_hint="--device")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise click.BadParameter(f"{value!r}: unsupported device type; valid: auto, cpu, cuda, cuda:N, mps",
                                 param_hint="--device")
    return dev


def resolve_dtype(value: str | None, default: str = "float32") -> torch.dtype:
    """``"float32"``/``"float64"`` (``None``: ``default``) as a ``torch.dtype``."""
    name = value or default
    if name not in DTYPE_CHOICES:
        raise click.BadParameter(f"{name!r}; valid: {', '.join(DTYPE_CHOICES)}", param_hint="--dtype")
    return DTYPE_CHOICES[name]


def resolve_seed(value: int | None) -> int:
    """The seed (``None``: :data:`DEFAULT_SEED`)."""
    return DEFAULT_SEED if value is None else int(value)


def common_options(f: F) -> F:
    """Add ``--device``, ``--seed`` and ``--dtype`` (parameters ``device``, ``seed``, ``dtype``;
    each ``None`` when not given, so a config file may supply it)."""
    f = click.option("--dtype", type=click.Choice(list(DTYPE_CHOICES)), default=None,
                     help="Floating dtype of models and data [default: float32].")(f)
    f = click.option("--seed", type=int, default=None, help=f"Random seed [default: {DEFAULT_SEED}].")(f)
    f = click.option("--device", default=None, metavar="DEVICE",
                     help="auto, cpu, cuda, cuda:N or mps [default: auto = cuda if available, else cpu].")(f)
    return f


def progress_option(f: F) -> F:
    """Add ``--progress/--no-progress`` (parameter ``progress``, default on)."""
    return click.option("--progress/--no-progress", default=True, show_default=True,
                        help="Show progress bars on long work (stderr).")(f)


# --------------------------------------------------------------------------- components
def component_option(kind: str, flag: str | None = None, default: str | None = None,
                     help: str = "") -> Callable[[F], F]:
    """Add ``--<kind> NAME`` and ``--<kind>-opt KEY=VALUE`` (repeatable) to a command.

    The parameters are ``<kind>`` (``str | None``) and ``<kind>_opt`` (a tuple of strings; parse
    it with :func:`parse_assignments`).
    """
    flag = flag or f"--{kind}"
    dest = flag.lstrip("-").replace("-", "_")

    def deco(f: F) -> F:
        f = click.option(f"{flag}-opt", f"{dest}_opt", multiple=True, metavar="KEY=VALUE",
                         help=f"Option of the {kind} (repeatable); values are TOML/JSON literals.")(f)
        f = click.option(flag, dest, default=default, metavar="NAME",
                         help=(help or f"Registered {kind} name (see `sdeflow plugins`).")
                         + (f" [default: {default}]" if default else ""))(f)
        return f

    return deco


def build_component(kind: str, name: str, options: dict[str, Any], flag: str | None = None) -> Any:
    """Create the registered ``kind`` named ``name`` with ``options``.

    Raises:
        click.BadParameter: an unknown name or bad options; the message is sdeflow's, which lists
            the valid names or options.
    """
    from ..plugins.api import create_component, create_model, create_process, create_sampler

    factory = {"process": create_process, "model": create_model, "sampler": create_sampler}.get(kind)
    try:
        return factory(name, **options) if factory else create_component(kind, name, **options)
    except UnknownComponentError as exc:
        raise click.BadParameter(str(exc), param_hint=flag or f"--{kind}") from exc
    except SdeflowError as exc:  # bad options: sdeflow's message lists the valid ones
        raise click.BadParameter(str(exc), param_hint=f"{flag or '--' + kind}-opt") from exc
    except TypeError as exc:  # a factory rejecting a value's type
        raise click.BadParameter(f"{kind} {name!r}: {exc}", param_hint=f"{flag or '--' + kind}-opt") from exc


# --------------------------------------------------------------------------- errors
@contextlib.contextmanager
def cli_errors() -> Iterator[None]:
    """Turn sdeflow errors (bad checkpoints, options, shapes, non-finite values) and file errors
    into ``click.ClickException``: ``Error: <message>`` and exit status 1, no traceback."""
    try:
        yield
    except click.ClickException:
        raise
    except (SdeflowError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
