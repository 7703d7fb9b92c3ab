"""Run a :class:`~sdeflow.bench.spec.BenchSpec`: every cell of target x process x sampler x budget.

For each target: two independent reference sets A and B of ``samples`` draws, the exact mean,
covariance and entropy, and each metric's noise floor ``metric(B, A)``. For each process: one
draw of ``samples`` initial states from the exact ``p_{t_max}`` shared by every sampler and peer
(deterministic samplers therefore pair up with the references row by row), the dopri8 reference
ODE solution of the first ``paths`` of them and, for samplers that can share a Brownian path,
the SRK reference on that path. Each cell records the NFE it used, its wall time, every metric,
and the pathwise (deterministic) or strong (shared Brownian path) RMS error.

Under ``torchrun`` the (target, process) blocks are split over the ranks (:mod:`sdeflow.bench.ranks`)
and merged in grid order: the same numbers as one process, wall times aside.
"""

from __future__ import annotations

import importlib.metadata
import math
import sys
import time
import traceback
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import torch
from torch import Tensor

from ..errors import OptionError, SdeflowError
from ..plugins.api import create_component, create_process, create_sampler, list_components
from ..plugins.manager import get_manager
from ..training.distributed import DistributedContext, resolve_context
from .configs import SamplerConfig, resolve_config
from .metrics import metric_formula
from .orders import fit_orders
from .overhead import machine, suite_overhead
from .peers import PeerConfig, peer_config, peers_available, run_peer
from .ranks import assign_blocks, block_weight, exchange
from .reference import Reference, fix_prior, ode_reference, rms_path_error, strong_reference, strong_steps
from .spec import BenchSpec
from .targets import PreparedTarget, check_target, prepare_target

Echo = Callable[[str], None]


@dataclass
class BenchResult:
    """Everything a run produced.

    Attributes:
        spec: the spec that was run.
        rows: one dict per cell (keys: ``target, process, sampler, family, sampler_name, options,
            budget, nfe, steps, seconds, stochastic, status``, one key per metric, ``path_error``,
            ``path_kind`` (``"ode"``, ``"strong"`` or ``""``), ``path_seconds``).
        floors: ``{target: {metric: noise floor}}``.
        limits: ``{"target/process": {metric: value}}``: the metrics of the exact probability-flow
            map of the shared initial noise (dopri8 on all samples), the value every deterministic
            sampler converges to (``spec.limits``).
        path_floors: ``{"target/process": {"ode": bound, "strong": bound, ...}}``.
        targets: per target: dimension, entropy, its standard error, description, metric parameters.
        orders: fitted empirical orders (:func:`sdeflow.bench.orders.fit_orders`).
        overhead: rows of the overhead table (:func:`sdeflow.bench.overhead.suite_overhead`).
        notes: what was skipped and why.
        meta: machine, versions, total time.
    """

    spec: BenchSpec
    rows: list[dict[str, Any]] = field(default_factory=list)
    floors: dict[str, dict[str, float]] = field(default_factory=dict)
    path_floors: dict[str, dict[str, float]] = field(default_factory=dict)
    limits: dict[str, dict[str, float]] = field(default_factory=dict)
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)
    orders: list[dict[str, Any]] = field(default_factory=list)
    overhead: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def metric_names(self) -> list[str]:
        """The metrics of the run, in order."""
        return list(self.spec.metrics)


def _gen(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def _check_names(kind: str, names: list[str]) -> None:
    valid = list_components()[kind]
    bad = [n for n in names if n not in valid]
    if bad:
        raise OptionError(f"unknown {kind}(s) {', '.join(bad)}; registered: {', '.join(valid) or '(none)'}")


class _Process:
    """One (target, process) block: the score model with the shared initial noise, lazy references."""

    def __init__(self, spec: BenchSpec, target: PreparedTarget, name: str, seed: int) -> None:
        self.spec, self.target, self.name = spec, target, name
        self.process = create_process(name)
        device = torch.device(spec.device)
        sm = target.dist.score_model(self.process)
        self.model = sm.to(device)
        self.shape = (spec.samples, target.dim)
        self.x_T = self.model.prior_sample(self.shape, _gen(seed + 100, device)).reshape(self.shape)
        fix_prior(self.model, self.x_T)
        self.seed = seed
        self._ode: Reference | None = None
        self._strong: dict[bool, Reference] = {}

    @property
    def path_shape(self) -> tuple[int, int]:
        return (self.spec.paths, self.target.dim)

    def ode(self) -> Reference:
        if self._ode is None:
            self._ode = ode_reference(self.model, self.path_shape, self.spec.reference_tol)
        return self._ode

    def ode_end(self, denoised: bool) -> Tensor:
        """The reference ODE end state, followed by Tweedie's denoising when ``denoised``."""
        ref = self.ode().x
        if not denoised:
            return ref
        t = torch.full((ref.shape[0],), float(self.process.t_min), dtype=ref.dtype, device=ref.device)
        with torch.no_grad():
            return self.model.x0(ref, t, check=False)

    def strong(self, denoise: bool, max_steps: int) -> Reference:
        if denoise not in self._strong:
            steps = self.spec.strong_reference_steps or strong_steps(max_steps, self.spec.strong_reference_factor)
            self._strong[denoise] = strong_reference(self.model, self.path_shape, steps, self.seed + 2, denoise)
        return self._strong[denoise]


def run_bench(spec: BenchSpec, progress: bool = True, echo: Echo | None = None,
              checkpoint: Callable[[BenchResult], object] | None = None,
              distributed: DistributedContext | bool | None = None) -> BenchResult:
    """Run every cell of ``spec`` and return the :class:`BenchResult` (nothing is written; see
    :func:`sdeflow.bench.outputs.write_outputs`).

    Distributed (``torchrun --nproc_per_node N``): the (target, process) blocks are split over the
    ranks (:mod:`sdeflow.bench.ranks`), each rank runs its blocks, and the blocks are gathered on every
    rank in grid order, so the rows (wall times aside) are those of one process. Rank 0 alone then
    times the overhead table, after the others have returned (a quiet machine, as in one process),
    and alone shows the progress bar and calls ``checkpoint`` (with its own blocks so far).

    Args:
        spec: the grid (:func:`sdeflow.bench.spec.preset` for the presets).
        progress: show a progress bar on stderr.
        echo: where notes go (default: nowhere).
        checkpoint: called with the result so far (orders fitted) after every (target, process)
            block, e.g. to write partial outputs of a long run.
        distributed: a :class:`~sdeflow.training.distributed.DistributedContext` to split the grid
            over; ``None`` (default): the running process group's if it has more than one rank;
            ``False``: one process. A ``cuda`` device without an index becomes each rank's own GPU.

    Raises:
        OptionError: unknown target, process, sampler, metric or peer names (listing the valid ones).
        SdeflowError: distributed, a rank failed outside a cell (every rank raises, naming it).
    """
    spec.validate()
    say = echo or (lambda s: None)
    ctx = resolve_context(distributed)
    rank, world = (ctx.rank, ctx.world_size) if ctx is not None else (0, 1)
    _check_names("target", spec.targets)
    _check_names("metric", spec.metrics)
    _check_names("process", spec.processes)
    configs = [resolve_config(label) for label in spec.samplers]
    peers: list[PeerConfig] = [peer_config(p) for p in spec.peers]
    notes: list[str] = []
    if peers and not peers_available():
        notes.append("diffusers is not installed (pip install sdeflow[peers]): peers skipped")
        say(notes[-1])
        peers = []
    if spec.threads:
        torch.set_num_threads(int(spec.threads))
    t_run = time.perf_counter()
    run_spec = _rank_spec(spec, ctx)
    dists = {t: create_component("target", t) for t in spec.targets}
    for t, obj in dists.items():
        check_target(t, obj)
    blocks = [(ti, pname) for ti in range(len(spec.targets)) for pname in spec.processes]
    cells = (len(configs) + len(peers)) * len(spec.nfe)
    owner = assign_blocks([block_weight(int(dists[spec.targets[ti]].dim), cells) for ti, _ in blocks], world)
    mine = [k for k, o in enumerate(owner) if o == rank]
    metrics = {m: create_component("metric", m) for m in spec.metrics}
    part: dict[str, Any] = dict(blocks={}, targets={})  # plain data: what this rank sends to the others
    prepared: dict[str, PreparedTarget] = {}
    bar = None
    if progress and rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(mine) * cells, desc="sdeflow bench" + (f" (rank 0 of {world})" if world > 1 else ""),
                   file=sys.stderr, leave=False, dynamic_ncols=True)
    error = None
    t_blocks = time.perf_counter()
    try:
        for k in mine:
            _run_block(run_spec, blocks[k], dists, metrics, configs, peers, part, prepared, bar)
            if checkpoint is not None and rank == 0:
                partial = _assemble(spec, [part], blocks, notes)
                partial.meta = dict(seconds=time.perf_counter() - t_run, partial=True)
                checkpoint(partial)
    except Exception as exc:  # distributed: the others must not wait for this rank forever
        if ctx is None:
            raise
        error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    finally:
        if bar is not None:
            bar.close()
    part["seconds"] = time.perf_counter() - t_blocks
    parts = exchange(ctx, part, error)
    result = _assemble(spec, parts, blocks, notes)
    if spec.overhead and rank == 0:
        result.overhead = _overhead(run_spec, configs, result, say)
    info = machine()
    info.update(seconds=time.perf_counter() - t_run, world_size=world, rank_seconds=[p["seconds"] for p in parts],
                block_ranks={f"{spec.targets[ti]}/{p}": owner[k] for k, (ti, p) in enumerate(blocks)})
    try:  # the installed version, without importing diffusers (seconds of start-up)
        info["diffusers"] = importlib.metadata.version("diffusers")
    except importlib.metadata.PackageNotFoundError:
        info["diffusers"] = None
    result.meta = info
    return result


def _rank_spec(spec: BenchSpec, ctx: DistributedContext | None) -> BenchSpec:
    """``spec`` with ``cuda`` (no index) replaced by this rank's GPU when distributed."""
    if ctx is None:
        return spec
    dev = torch.device(spec.device)
    if dev.type == "cuda" and dev.index is None and ctx.device.type == "cuda":
        return replace(spec, device=str(ctx.device))
    return spec


def _run_block(spec: BenchSpec, block: tuple[int, str], dists: dict[str, Any], metrics: dict[str, Any],
               configs: list[SamplerConfig], peers: list[PeerConfig], part: dict[str, Any],
               prepared: dict[str, PreparedTarget], bar: Any) -> None:
    """Run one (target, process) block into ``part`` (its target prepared once per rank, in ``prepared``)."""
    ti, pname = block
    tname = spec.targets[ti]
    device = torch.device(spec.device)
    if tname not in prepared:
        comp = get_manager().registry.get("target", tname)
        target = prepare_target(tname, dists[tname], spec.samples, spec.seed + 1000 * ti, spec.entropy_samples,
                                device, spec.torch_dtype, comp.description)
        params = {m: (fn.setup(target) if hasattr(fn, "setup") else {}) for m, fn in metrics.items()}
        target.extras = params
        floors = {m: abs(float(fn(target.reference_b, target.reference, target))) for m, fn in metrics.items()}
        info = dict(dim=target.dim, entropy=target.entropy, entropy_se=target.entropy_se,
                    log_prob_sd=target.log_prob_sd, description=target.description, metric_params=params,
                    metric_formulas={m: metric_formula(fn) for m, fn in metrics.items()})
        part["targets"][tname] = dict(floors=floors, info=info)
        prepared[tname] = target
    blk = _Process(spec, prepared[tname], pname, spec.seed + 1000 * ti)
    out: dict[str, Any] = dict(rows=[], path_floors={}, limit=None)
    if spec.limits:
        out["limit"] = ode_limit(blk, metrics)
    for cfg in configs:
        for b in spec.nfe:
            row = _run_sdeflow(blk, cfg, b, metrics, out["path_floors"])
            if row is not None:
                out["rows"].append(row)
            _tick(bar, f"{tname}/{pname} {cfg.label} {b}")
    for pc in peers:
        for b in spec.nfe:
            out["rows"].append(_run_peer(blk, pc, b, metrics, out["path_floors"]))
            _tick(bar, f"{tname}/{pname} {pc.label} {b}")
    part["blocks"][(ti, pname)] = out


def _tick(bar: Any, label: str) -> None:
    if bar is not None:
        bar.set_postfix_str(label, refresh=False)
        bar.update(1)


def _assemble(spec: BenchSpec, parts: list[dict[str, Any]], blocks: list[tuple[int, str]],
              notes: list[str]) -> BenchResult:
    """One result from the ranks' parts, in grid order (target, then process), orders fitted."""
    result = BenchResult(spec=spec, notes=list(notes))
    done = {k: v for p in parts for k, v in p["blocks"].items()}
    tinfo = {k: v for p in parts for k, v in p["targets"].items()}
    for tname in spec.targets:
        if tname in tinfo:
            result.floors[tname] = tinfo[tname]["floors"]
            result.targets[tname] = tinfo[tname]["info"]
    for ti, pname in blocks:
        out = done.get((ti, pname))
        if out is None:
            continue
        key = f"{spec.targets[ti]}/{pname}"
        result.path_floors[key] = out["path_floors"]
        if out["limit"] is not None:
            result.limits[key] = out["limit"]
        result.rows += out["rows"]
    result.orders = fit_orders(result.rows, result.path_floors)
    return result


def ode_limit(blk: _Process, metrics: dict[str, Any]) -> dict[str, float]:
    """The metrics of the probability-flow ODE solved by dopri8 at ``reference_tol`` from all the shared
    initial states: what every deterministic sampler of the block converges to as NFE grows (it differs
    from the noise floor by the sampling noise of that one draw)."""
    try:
        x = create_sampler("ode", method="dopri8", rtol=blk.spec.reference_tol, atol=blk.spec.reference_tol).sample(
            blk.model, blk.shape).samples
    except (SdeflowError, RuntimeError, ValueError, AssertionError):
        return {m: math.nan for m in metrics}
    return _metrics(x, blk.target, metrics)[0]


def _metrics(samples: Tensor, target: PreparedTarget, metrics: dict[str, Any]) -> tuple[dict[str, float], str]:
    x = samples.reshape(samples.shape[0], -1)
    if not bool(torch.isfinite(x).all()):
        return {m: math.inf for m in metrics}, "non-finite samples"
    return {m: float(fn(x.to(target.reference.dtype), target.reference, target)) for m, fn in metrics.items()}, "ok"


def _base_row(blk: _Process, label: str, family: str, sampler_name: str, options: str, budget: int) -> dict[str, Any]:
    return dict(target=blk.target.name, process=blk.name, sampler=label, family=family, sampler_name=sampler_name,
                options=options, budget=budget, nfe=None, steps=None, seconds=None, stochastic=None, status="",
                nominal_order=None, path_error=None, path_kind="", path_seconds=None)


def _error_row(row: dict[str, Any], metrics: dict[str, Any], exc: BaseException) -> dict[str, Any]:
    msg = "".join(traceback.format_exception_only(type(exc), exc)).strip().splitlines()[0]
    row.update({m: math.inf for m in metrics}, status=f"error: {msg}")
    return row


def _run_sdeflow(blk: _Process, cfg: SamplerConfig, budget: int, metrics: dict[str, Any],
                 floors: dict[str, float]) -> dict[str, Any] | None:
    opts = cfg.options(budget, blk.process)
    if opts is None:
        return None
    row = _base_row(blk, cfg.label, "sdeflow", cfg.sampler, " ".join(f"{k}={v}" for k, v in opts.items()), budget)
    try:
        sampler = create_sampler(cfg.sampler, **opts)
        row["stochastic"] = bool(sampler.stochastic)
        row["nominal_order"] = sampler.capabilities()["order"]
        t0 = time.perf_counter()
        res = sampler.sample(blk.model, blk.shape, _gen(blk.seed + 1, torch.device(blk.spec.device)))
        row.update(seconds=time.perf_counter() - t0, nfe=int(res.nfe), steps=res.steps)
    except (SdeflowError, RuntimeError, ValueError, AssertionError) as exc:
        return _error_row(row, metrics, exc)
    vals, status = _metrics(res.samples, blk.target, metrics)
    row.update(vals, status=status)
    if status != "ok":
        return row
    try:
        t0 = time.perf_counter()
        if not sampler.stochastic:
            ref = blk.ode()
            floors["ode"] = ref.error_bound
            row.update(path_error=rms_path_error(res.samples, blk.ode_end(bool(getattr(sampler, "denoise", False)))),
                       path_kind="ode")
        elif cfg.path_consistent:
            denoise = bool(getattr(sampler, "denoise", False))
            max_steps = max((o or {}).get("steps", 1) for o in (cfg.options(b, blk.process) for b in blk.spec.nfe))
            ref = blk.strong(denoise, max_steps)
            floors["strong" + ("" if denoise else " (no denoise)")] = ref.error_bound
            strong = create_sampler(cfg.sampler, **opts, brownian="interval").sample(
                blk.model, blk.path_shape, torch.Generator().manual_seed(blk.seed + 2))
            row.update(path_error=rms_path_error(strong.samples, ref.x), path_kind="strong")
        row["path_seconds"] = time.perf_counter() - t0
    except (SdeflowError, RuntimeError, ValueError, AssertionError) as exc:
        row["status"] = f"path error failed: {exc}"
    return row


def _run_peer(blk: _Process, pc: PeerConfig, budget: int, metrics: dict[str, Any],
              floors: dict[str, float]) -> dict[str, Any]:
    row = _base_row(blk, pc.label, "diffusers", pc.scheduler, f"steps={pc.steps_for(budget)}", budget)
    row["stochastic"] = pc.stochastic
    row["nominal_order"] = pc.order
    try:
        t0 = time.perf_counter()
        res = run_peer(pc, budget, blk.model, blk.x_T, _gen(blk.seed + 1, torch.device(blk.spec.device)))
        row.update(seconds=time.perf_counter() - t0, nfe=res.nfe, steps=res.steps)
    except (SdeflowError, RuntimeError, ValueError, AssertionError, ImportError) as exc:
        return _error_row(row, metrics, exc)
    vals, status = _metrics(res.samples, blk.target, metrics)
    row.update(vals, status=status)
    if status == "ok" and not pc.stochastic:
        t0 = time.perf_counter()
        floors["ode"] = blk.ode().error_bound
        row.update(path_error=rms_path_error(res.samples, blk.ode_end(True)), path_kind="ode",
                   path_seconds=time.perf_counter() - t0)
    return row


def _overhead(spec: BenchSpec, configs: list[SamplerConfig], result: BenchResult, say: Echo) -> list[dict[str, Any]]:
    from .hand_loops import HAND_LOOPS

    wanted = [c for c in configs if c.label in HAND_LOOPS]
    if not wanted:
        return []
    if spec.overhead_target not in list_components()["target"]:
        result.notes.append(f"overhead skipped: target {spec.overhead_target!r} is not registered")
        return []
    dist = create_component("target", spec.overhead_target)
    if hasattr(dist, "to"):
        dist = dist.to(device=torch.device(spec.device), dtype=spec.torch_dtype)
    process = create_process("vp")
    sm = dist.score_model(process)
    budget = spec.overhead_nfe or max(spec.nfe)
    items = []
    for c in wanted:
        opts = c.options(budget, process)
        if opts is not None:
            items.append((c.label, c.sampler, opts))
    say(f"overhead: {len(items)} samplers against hand-written loops ({spec.overhead_target}, vp, NFE {budget}, "
        f"{spec.overhead_samples} samples, {spec.overhead_repeats} rounds)")
    rows = suite_overhead(sm, (spec.overhead_samples, int(dist.dim)), items, spec.overhead_repeats, spec.seed)
    for r in rows:
        r.update(target=spec.overhead_target, process="vp", budget=budget, samples=spec.overhead_samples)
    return rows
