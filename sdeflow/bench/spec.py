"""What a benchmark run measures: :class:`BenchSpec` and the ``quick`` / ``full`` presets."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from ..errors import OptionError
from .configs import BUILTIN_CONFIGS
from .peers import PEER_CONFIGS

DTYPES = {"float64": torch.float64, "float32": torch.float32}
DEFAULT_METRICS = ["sw2", "mmd", "mean_err", "cov_err", "logp_gap"]


@dataclass
class BenchSpec:
    """A grid of target x process x sampler x NFE budget and how each cell is measured.

    Attributes:
        targets: registered target names (``sdeflow.list_components()["target"]``).
        processes: registered process names (with Gaussian marginals).
        samplers: sampler configuration labels (:data:`sdeflow.bench.configs.BUILTIN_CONFIGS`) or
            names of registered samplers taking ``steps=``.
        peers: diffusers scheduler labels (:data:`sdeflow.bench.peers.PEER_CONFIGS`); skipped with a
            note when diffusers is not installed.
        nfe: NFE budgets.
        samples: samples per cell (and per reference set).
        paths: trajectories (the first ``paths`` initial states) for pathwise and strong errors.
        metrics: registered metric names (``sdeflow.list_components()["metric"]``).
        seed: base seed (initial noise, sampler noise, reference sets).
        device, dtype: where and in what precision (``"float64"`` or ``"float32"``).
        reference_tol: ``rtol = atol`` of the dopri8 reference ODE solution; its error is bounded by
            comparing with the solution at ``100 x`` the tolerance.
        strong_reference_steps: steps of the Euler-Maruyama reference on the shared Brownian path
            (default: the power of two at least ``strong_reference_factor`` x the most steps of the
            ``sde`` runs); its error is bounded by the run at half the steps.
        entropy_samples: Monte-Carlo draws for a target entropy without a closed form.
        overhead: time the samplers that have a hand-written loop against it.
        overhead_target, overhead_samples, overhead_nfe, overhead_repeats: the overhead problem
            (process ``vp``; ``overhead_nfe`` default: the largest budget).
        threads: ``torch.set_num_threads`` for the run (``None``: leave as is).
        limits: also report the metrics of the exact ODE map of the shared noise (dopri8 on all
            samples): the value deterministic samplers converge to.
    """

    targets: list[str]
    processes: list[str]
    samplers: list[str]
    nfe: list[int]
    peers: list[str] = field(default_factory=list)
    samples: int = 4000
    paths: int = 256
    metrics: list[str] = field(default_factory=lambda: list(DEFAULT_METRICS))
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float64"
    reference_tol: float = 1e-10
    strong_reference_steps: int | None = None
    strong_reference_factor: int = 16
    entropy_samples: int = 400_000
    overhead: bool = True
    overhead_target: str = "gauss1d"
    overhead_samples: int = 10_000
    overhead_nfe: int | None = None
    overhead_repeats: int = 5
    threads: int | None = None
    limits: bool = True
    preset: str = "custom"

    def validate(self) -> "BenchSpec":
        """Check types and ranges; raises :class:`OptionError` naming the bad field and what is valid."""
        for name in ("targets", "processes", "nfe", "metrics"):
            if not getattr(self, name):
                raise OptionError(f"BenchSpec.{name} is empty; give at least one")
        if not self.samplers and not self.peers:
            raise OptionError("BenchSpec has neither samplers nor peers; give at least one")
        if any(isinstance(b, bool) or int(b) != b or b < 1 for b in self.nfe):
            raise OptionError(f"NFE budgets must be positive integers, got {self.nfe}")
        if self.samples < 10 or self.paths < 2 or self.paths > self.samples:
            raise OptionError(f"need samples >= 10 and 2 <= paths <= samples, got samples={self.samples}, "
                              f"paths={self.paths}")
        if self.dtype not in DTYPES:
            raise OptionError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError):
            raise OptionError(f"device must be a torch device such as 'cpu', 'cuda' or 'cuda:1', "
                              f"got {self.device!r}") from None
        if not (self.reference_tol > 0 and math.isfinite(self.reference_tol)):
            raise OptionError(f"reference_tol must be positive, got {self.reference_tol!r}")
        peer_labels = {c.label for c in PEER_CONFIGS}
        bad = [p for p in self.peers if p not in peer_labels]
        if bad:
            raise OptionError(f"unknown peer(s) {', '.join(bad)}; valid: {', '.join(sorted(peer_labels))}")
        self.nfe = sorted({int(b) for b in self.nfe})
        return self

    @property
    def torch_dtype(self) -> torch.dtype:
        """``dtype`` as a torch dtype."""
        return DTYPES[self.dtype]

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (for the JSON output)."""
        return asdict(self)


ALL_SAMPLERS = [c.label for c in BUILTIN_CONFIGS]
ALL_PEERS = [c.label for c in PEER_CONFIGS]

QUICK = BenchSpec(
    targets=["gauss1d", "nine_gaussians"],
    processes=["vp"],
    samplers=["ode euler", "ode rk4", "dpm_solver 2M", "ddim", "heun", "sde euler", "ancestral"],
    peers=["diffusers DDIM", "diffusers Euler", "diffusers DPMSolverMultistep", "diffusers UniPC"],
    nfe=[10, 20, 40],
    samples=2000,
    paths=64,
    strong_reference_factor=8,
    entropy_samples=100_000,
    overhead_samples=2000,
    overhead_repeats=3,
    preset="quick",
)

#: one configuration of every sampler (three ODE methods for the orders, DPM-Solver++ 2M and 3M, DDIM
#: with and without noise); the variants compared in docs/solvers.md (3M authors' rule, time-uniform 2M with and
#: without the lower-order final step, pc Euler-Maruyama = sde euler, sde heun) run with --samplers all
FULL_SAMPLERS = ["ode euler", "ode heun2", "ode rk4", "dpm_solver 2M", "dpm_solver 3M", "unipc-2", "ddim", "ddim eta=1",
                 "heun", "sde euler", "pc rd+langevin", "ancestral", "langevin"]

#: the peers of the recorded full run (``--peer-list all`` adds DEIS, DPMSolverSinglestep, LMS, PNDM, KDPM2)
FULL_PEERS = ["diffusers DDPM", "diffusers DDIM", "diffusers Euler", "diffusers Heun", "diffusers DPMSolverMultistep",
              "diffusers UniPC", "diffusers FlowMatchEuler", "diffusers FlowMatchEuler shift=3"]

FULL = BenchSpec(
    targets=["gauss1d", "nine_gaussians", "aniso16", "aniso64"],
    processes=["vp", "ddpm", "ve", "subvp", "rectified_flow"],
    samplers=list(FULL_SAMPLERS),
    peers=list(FULL_PEERS),
    nfe=[10, 20, 50, 100],
    samples=2000,
    paths=64,
    overhead_repeats=7,
    preset="full",
)

PRESETS = {"quick": QUICK, "full": FULL}


def preset(name: str, **overrides: Any) -> BenchSpec:
    """A copy of preset ``name`` (``"quick"`` or ``"full"``) with ``overrides`` applied."""
    if name not in PRESETS:
        raise OptionError(f"unknown preset {name!r}; valid: {', '.join(PRESETS)}")
    base = PRESETS[name]
    spec = replace(base, **{k: v for k, v in overrides.items() if v is not None})
    for k in ("targets", "processes", "samplers", "peers", "nfe", "metrics"):
        setattr(spec, k, list(getattr(spec, k)))
    return spec
