"""Any denoiser or score function as a :class:`~sdeflow.ScoreModel`: EDM / k-diffusion ``D(x, sigma)``,
score_sde ``s(x, t)``, or a noise, data or velocity predictor in a process's time.

Two conventions cover the networks trained outside sdeflow:

* ``kind="edm"``: a denoiser ``D(x_hat, sigma)`` in the variance-exploding frame
  ``x_hat = x_0 + sigma n`` that predicts ``x_0`` (Karras et al. 2022, Eq. 2; k-diffusion's
  ``model(x, sigma)``). Under a process with ``x_t = alpha_t x_0 + sigma_t eps`` the scaled state
  ``x_t / alpha_t`` is exactly such an ``x_hat`` with ``sigma = sigma_t / alpha_t`` (Karras et al.
  2022, Eq. 4 with ``s(t) = alpha_t``), so ``x0_theta(x_t, t) = D(x_t / alpha_t, sigma_t / alpha_t)``
  under every Gaussian-marginal process. Default process: ``ve`` with EDM's noise range
  ``sigma_min = 0.002``, ``sigma_max = 80`` (Karras et al. 2022, Table 1).
* ``kind="score"`` (score_sde's ``score_fn(x, t)``), ``"eps"``, ``"x0"`` or ``"v"``: the function takes
  the process's own time ``t`` and returns that quantity (Song et al. 2021: VP ``beta_min = 0.1``,
  ``beta_max = 20``, sdeflow's ``vp`` default, or VE). Default process: ``vp``.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor, nn

from ..core.process import ForwardProcess
from ..core.score_model import ScoreModel
from ..errors import IncompatibleError, OptionError, ShapeError
from ..plugins.api import create_process
from ..utils.shapes import append_dims

#: ``kind`` -> the parametrization of the function's output
KINDS: dict[str, str] = {"edm": "x0", "score": "score", "eps": "eps", "x0": "x0", "v": "v"}
#: EDM's noise range (Karras et al. 2022, Table 1): the default ``ve`` process of ``kind="edm"``
EDM_PROCESS: dict[str, float] = {"sigma_min": 0.002, "sigma_max": 80.0}


class FunctionNetwork(nn.Module):
    """A plain callable as a module (a zero-size buffer carries the device and dtype it runs in)."""

    def __init__(self, fn: Callable[[Tensor, Tensor], Tensor], dtype: torch.dtype | None = None,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        self.fn = fn
        self.register_buffer("anchor", torch.zeros(0, dtype=dtype or torch.get_default_dtype(), device=device),
                             persistent=False)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        return self.fn(x, cond)


class FunctionScoreModel(ScoreModel):
    """A :class:`~sdeflow.ScoreModel` whose network is called in its own convention (module docstring):
    ``network(x / alpha_t, sigma_t / alpha_t)`` for ``kind="edm"``, ``network(x, t)`` otherwise (the
    process's :meth:`~sdeflow.ForwardProcess.network_condition` is bypassed: the function defines its
    own input).

    Attributes:
        kind: the convention (:data:`KINDS`).
    """

    def __init__(self, network: nn.Module, process: ForwardProcess, kind: str, *,
                 noise_floor: float | None = None) -> None:
        if kind not in KINDS:
            raise OptionError(f"unknown kind {kind!r}; valid: {', '.join(KINDS)}")
        super().__init__(network, process, parametrization=KINDS[kind], noise_floor=noise_floor)
        self.kind = kind

    def network_output(self, x: Tensor, t: Tensor) -> Tensor:
        """The function's output (in the model's parametrization) at times ``t`` of shape ``(batch,)``."""
        if self.kind == "edm":
            a, s = self.process.marginal(t)
            out = self.network(x / append_dims(a, x.ndim), s / a)
        else:
            out = self.network(x, t)
        if not isinstance(out, Tensor) or out.shape != x.shape:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ShapeError(f"the {self.kind!r} function returned {got} for input {tuple(x.shape)}; it must return a "
                             "tensor shaped like its input")
        return out


def from_function(fn: Callable[[Tensor, Tensor], Tensor], kind: str = "edm",
                  process: str | ForwardProcess | None = None, *, dtype: torch.dtype | None = None,
                  device: torch.device | str | None = None, noise_floor: float | None = None,
                  **process_options: Any) -> ScoreModel:
    """Wrap a denoiser or score function as a :class:`~sdeflow.ScoreModel` that every sampler, the
    likelihood and (for an ``nn.Module``) the Trainer work with.

    Args:
        fn: ``fn(x_hat, sigma) -> x0`` for ``kind="edm"`` (``sigma`` of shape ``(batch,)``), else
            ``fn(x, t)`` returning the score, ``eps``, ``x0`` or ``v`` at the process's time ``t``
            (shape ``(batch,)``). An ``nn.Module`` keeps its parameters (``.to()``, training).
        kind: ``"edm"`` (EDM / k-diffusion denoiser, Karras et al. 2022), ``"score"`` (score_sde's
            ``score_fn``, Song et al. 2021), ``"eps"``, ``"x0"`` or ``"v"``.
        process: a registered process name or a :class:`~sdeflow.ForwardProcess` (default: ``ve``
            with EDM's ``sigma_min = 0.002``, ``sigma_max = 80`` for ``"edm"``; ``vp`` otherwise).
        dtype: the dtype a plain function runs in (default: torch's default dtype; a module's own
            parameters decide for it).
        device: the device a plain function runs on (default CPU).
        noise_floor: as :class:`~sdeflow.ScoreModel` (where integration stops when ``sigma_{t_min} = 0``).
        **process_options: options of the named (or default) process.

    Returns:
        A :class:`FunctionScoreModel`.

    Raises:
        OptionError: an unknown ``kind``, or process options next to a process object.
        IncompatibleError: a process without Gaussian marginals (the conversions need ``alpha_t``, ``sigma_t``).
    """
    if kind not in KINDS:
        raise OptionError(f"unknown kind {kind!r}; valid: {', '.join(KINDS)} (edm: D(x, sigma) -> x0 in the VE frame, "
                          "Karras et al. 2022; score/eps/x0/v: f(x, t) in the process's time)")
    if not callable(fn):
        raise OptionError(f"fn must be callable, got {type(fn).__name__}")
    if isinstance(process, ForwardProcess):
        if process_options:
            raise OptionError(f"process options {sorted(process_options)} were given with a process object; "
                              "configure the process when creating it")
        proc = process
    else:
        name = process or ("ve" if kind == "edm" else "vp")
        defaults = EDM_PROCESS if kind == "edm" and name == "ve" else {}
        proc = create_process(name, **{**defaults, **process_options})
    if not getattr(proc, "gaussian_marginals", False):
        raise IncompatibleError(f"{type(proc).__name__} has no Gaussian marginals (alpha_t, sigma_t): a {kind!r} "
                                "function cannot be converted to a score under it")
    network = fn if isinstance(fn, nn.Module) else FunctionNetwork(fn, dtype, device)
    model = FunctionScoreModel(network, proc, kind, noise_floor=noise_floor)
    if isinstance(fn, nn.Module) and (dtype is not None or device is not None):
        model = model.to(device=device or model.device, dtype=dtype or model.dtype)
    return model


__all__ = ["FunctionNetwork", "FunctionScoreModel", "KINDS", "from_function"]
