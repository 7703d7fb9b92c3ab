"""The ``Sampler`` interface and its result type."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Sequence

import torch
from torch import Tensor

from ..errors import IncompatibleError, ShapeError
from ..utils.options import constructor_options
from ..utils.shapes import check_shape
from .score_model import ScoreModel

#: per-step callback ``callback(step, t, x)``: step index (0-based), time reached, current state
StepCallback = Callable[[int, Tensor, Tensor], None]


@dataclass
class SampleResult:
    """What a sampler returns.

    Attributes:
        samples: the final samples, shaped as requested.
        nfe: number of score (network) evaluations, exactly.
        steps: number of solver steps taken (accepted steps for adaptive solvers).
        trajectory: states at every step, ``(steps + 1, *shape)``, only when asked for.
        times: times of the trajectory's states, ``(steps + 1,)``.
    """

    samples: Tensor
    nfe: int
    steps: int | None = None
    trajectory: Tensor | None = None
    times: Tensor | None = None


def check_initial_state(x_T: Tensor, shape: tuple[int, ...], score_model: ScoreModel) -> Tensor:
    """Check a given prior draw ``x_T`` against the requested ``shape`` and the model's dtype and device.

    Returns:
        ``x_T`` itself.

    Raises:
        ShapeError: not a tensor, another shape, dtype or device; the message says what to pass.
    """
    if not isinstance(x_T, Tensor):
        raise ShapeError(f"x_T must be a tensor of shape {shape} (a draw of the prior at t_max), "
                         f"got {type(x_T).__name__}")
    if tuple(x_T.shape) != tuple(shape):
        raise ShapeError(f"x_T has shape {tuple(x_T.shape)}, but the samples were asked with shape {tuple(shape)}; "
                         "pass x_T of exactly the sample shape (batch, *dims)")
    dtype, device = score_model.dtype, score_model.device
    if x_T.dtype != dtype:
        raise ShapeError(f"x_T has dtype {x_T.dtype}, the score model {dtype}; pass x_T.to({dtype})")
    if x_T.device != device:
        raise ShapeError(f"x_T is on {x_T.device}, the score model on {device}; pass x_T.to('{device}')")
    return x_T


class Sampler:
    """Base class of samplers: draw ``x_{t_max}`` from the prior and run time backwards.

    Capabilities are class attributes, checked before sampling (not ``isinstance`` chains):

    * ``stochastic``: the sampler injects noise (SDE, ancestral, Langevin).
    * ``requires_gaussian_marginals``: it uses ``alpha_t``, ``sigma_t`` of the process.
    * ``order``: its nominal (deterministic/strong) order of convergence, if any.
    * ``host_syncs``: its step loop reads device values on the host (``.item()``, ``bool(tensor)``,
      ``float(tensor)``, ...), which makes a GPU wait every step; ``False`` (the default) promises
      a loop free of them (adaptive step-size control, e.g. torchdiffeq's, needs them).
    * ``requires_finite_start``: it evaluates the drift, ``g^2`` or the log-SNR at ``t_max``, so the
      process must have ``alpha_{t_max} > 0`` there (:meth:`sdeflow.ForwardProcess.check_start`).

    Each is a claim the conformance kit (:mod:`sdeflow.testing`) verifies: the order against the
    empirical order on Gaussians, the others by running the sampler. A sampler whose capabilities
    depend on its options (``ode``'s order on its method, ``ddim``
    stochastic for ``eta > 0``, ``pc`` on its components) overrides them with properties;
    :meth:`capabilities` reports an instance's. :meth:`options` lists the constructor options
    and their defaults; the attribute names ``options`` and ``capabilities`` are reserved.

    Writing one: a sampler on a time grid subclasses :class:`sdeflow.solvers.GridSampler` and
    implements ``plan(run, t_start, t_end)`` and ``step(run, k, state)``; any other implements
    ``_sample(score_model, shape, generator, callback, progress, return_trajectory) -> SampleResult``
    inside a :class:`sdeflow.solvers.SamplingRun` (``docs/writing-a-plugin.md``).
    """

    name: ClassVar[str] = ""
    stochastic: ClassVar[bool] = False
    requires_gaussian_marginals: ClassVar[bool] = False
    order: ClassVar[float | None] = None
    host_syncs: ClassVar[bool] = False
    requires_finite_start: ClassVar[bool] = True

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("options", "capabilities"):
            raise AttributeError(f"{type(self).__name__}: the attribute name {name!r} is reserved for "
                                 f"Sampler.{name}(); store the value under another name")
        super().__setattr__(name, value)

    def sample(
        self,
        score_model: ScoreModel,
        shape: Sequence[int],
        generator: torch.Generator | None = None,
        *,
        x_T: Tensor | None = None,
        callback: StepCallback | None = None,
        progress: bool = False,
        return_trajectory: bool = False,
    ) -> SampleResult:
        """Draw ``shape[0]`` samples of shape ``shape[1:]`` from ``score_model``.

        Args:
            score_model: any :class:`sdeflow.ScoreModel` (trained or exact).
            shape: ``(batch, *dims)``.
            generator: random source: the same seed gives the same samples.
            x_T: start from this draw of the prior at ``t_max`` instead of drawing one from
                ``generator`` (shape ``shape``, the model's dtype and device). Deterministic
                samplers then depend on ``x_T`` alone, so different solvers (or another library's
                loop) can be compared path by path from the same noise; stochastic samplers still
                draw their noise from ``generator``. The tensor is not modified.
            callback: called as ``callback(step, t, x)`` after every step.
            progress: show a progress bar.
            return_trajectory: keep the state after every step (memory grows with the steps).

        Returns:
            A :class:`SampleResult`.

        Raises:
            ShapeError: ``x_T`` is not a tensor of ``shape`` in the model's dtype and on its device.
            IncompatibleError: ``x_T`` was given to a sampler whose ``_sample`` takes no ``x_T``.
        """
        shape = check_shape(shape)
        self.check_compatible(score_model)
        if x_T is None:
            return self._sample(score_model, shape, generator, callback, progress, return_trajectory)
        params = inspect.signature(self._sample).parameters
        if "x_T" not in params and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            raise IncompatibleError(
                f"sampler {self.name or type(self).__name__!r} cannot start from a given x_T: its _sample() takes "
                f"no x_T argument (a sampler supports it by accepting x_T=None and starting from it, e.g. through "
                f"sdeflow.solvers.SamplingRun(..., x_T=x_T).prior())")
        x_T = check_initial_state(x_T, shape, score_model)
        return self._sample(score_model, shape, generator, callback, progress, return_trajectory, x_T=x_T)

    def _sample(
        self,
        score_model: ScoreModel,
        shape: tuple[int, ...],
        generator: torch.Generator | None,
        callback: StepCallback | None,
        progress: bool,
        return_trajectory: bool,
        x_T: Tensor | None = None,
    ) -> SampleResult:  # pragma: no cover - abstract
        """The sampler's loop: start from ``x_T`` when given (already checked by :meth:`sample`),
        else from ``score_model.prior_sample(shape, generator)``. A subclass that leaves ``x_T`` out
        of its signature runs as before, and :meth:`sample` refuses an ``x_T`` for it."""
        raise NotImplementedError

    def check_compatible(self, score_model: ScoreModel) -> None:
        """Raise :class:`IncompatibleError` if this sampler cannot run ``score_model``."""
        if not isinstance(score_model, ScoreModel):
            raise IncompatibleError(f"{self.name or type(self).__name__}: expected a sdeflow.ScoreModel, "
                                    f"got {type(score_model).__name__}")
        process = score_model.process
        if self.requires_gaussian_marginals and not getattr(process, "gaussian_marginals", False):
            raise IncompatibleError(
                f"sampler {self.name!r} needs a process with Gaussian marginals (alpha_t, sigma_t), "
                f"but {type(process).__name__} declares gaussian_marginals=False"
            )
        if self.requires_finite_start:
            process.check_start(f"sampler {self.name or type(self).__name__!r}")

    @classmethod
    def options(cls) -> dict[str, Any]:
        """Constructor options and their defaults (``inspect.Parameter.empty`` for a required one).

        Works on the class and on instances: ``create_sampler("ode").options()`` and
        ``type(sampler).options()`` agree.
        """
        return constructor_options(cls)

    def capabilities(self) -> dict[str, Any]:
        """This instance's capabilities: ``{"stochastic", "order", "requires_gaussian_marginals", "host_syncs"}``."""
        order = self.order
        return {"stochastic": bool(self.stochastic), "order": None if order is None else float(order),
                "requires_gaussian_marginals": bool(self.requires_gaussian_marginals),
                "host_syncs": bool(self.host_syncs)}

    def __repr__(self) -> str:
        vals = ((k, getattr(self, k)) for k in self.options() if hasattr(self, k))
        opts = ", ".join(f"{k}={v!r}" for k, v in vals if not inspect.ismethod(v))
        return f"{type(self).__name__}({opts})"
