"""The benchmark suite end to end (issue 6): quick run through the library and the CLI writing every
output, budgets mapped exactly, empirical orders near theory, third-party targets and metrics
through the hooks, and the diffusers peers (skipped when diffusers is absent)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch

import sdeflow
import sdeflow.bench as bench
from sdeflow import GaussianMixture
from sdeflow.bench.peers import peer_betas, peer_times, peers_available
from sdeflow.errors import OptionError

pytestmark = pytest.mark.usefixtures("single_thread")


def small_spec(**kw) -> bench.BenchSpec:
    base = dict(targets=["gauss1d", "nine_gaussians"], processes=["vp"],
                samplers=["ode euler", "dpm_solver 2M", "sde euler", "ancestral"],
                peers=["diffusers DDIM", "diffusers Heun"], nfe=[10, 20], samples=300, paths=32, reference_tol=1e-8,
                entropy_samples=20_000, overhead_samples=300, overhead_repeats=1, strong_reference_factor=4)
    base.update(kw)
    return bench.BenchSpec(**base)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    spec = small_spec()
    result = bench.run_bench(spec, progress=False)
    out = tmp_path_factory.mktemp("bench")
    written = bench.write_outputs(result, out)
    return spec, result, out, written


def test_run_writes_table_csv_json_and_plots(small_run) -> None:
    import matplotlib.image

    spec, result, out, written = small_run
    for name in bench.outputs.FILES:
        assert (out / name).is_file() and (out / name) in written
    rows = list(csv.DictReader(open(out / "bench.csv")))
    n_peers = len(spec.peers) if peers_available() else 0
    assert len(rows) == len(spec.targets) * len(spec.processes) * (len(spec.samplers) + n_peers) * len(spec.nfe)
    assert {r["status"] for r in rows} == {"ok"}
    for m in spec.metrics:
        assert all(math.isfinite(float(r[m])) for r in rows), m
    data = json.loads((out / "bench.json").read_text())
    assert data["spec"]["nfe"] == spec.nfe and len(data["rows"]) == len(rows)
    assert set(data["floors"]) == set(spec.targets) and all(v >= 0 for f in data["floors"].values() for v in f.values())
    assert data["targets"]["nine_gaussians"]["metric_params"]["mmd"]["bandwidth"] > 0
    # the exact ODE map of the shared noise: where the deterministic samplers converge
    assert set(result.limits) == {f"{t}/vp" for t in spec.targets}
    assert all(math.isfinite(v) for lim in result.limits.values() for v in lim.values())
    table = (out / "table.txt").read_text()
    assert "ODE limit" in table and "noise floor" in table and "dpm_solver 2M" in table and "overhead" in table
    assert "| sampler | NFE 10 | NFE 20 | order |" in (out / "summary.md").read_text()
    for t in spec.targets:
        png = out / f"error_vs_nfe_{t}.png"
        assert png in written
        img = matplotlib.image.imread(png)
        assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 200
    # overhead rows: every sampler with a hand loop, same samples up to rounding
    assert {r["sampler"] for r in result.overhead} == {"ode euler", "dpm_solver 2M", "sde euler"}
    assert all(r["rel_diff"] < 1e-9 and r["nfe"] == r["hand_nfe"] and r["ratio"] > 0 for r in result.overhead)


def test_budgets_map_exactly_and_errors_are_measured(small_run) -> None:
    _, result, _, _ = small_run
    for r in result.rows:
        assert r["nfe"] <= r["budget"], r
        if r["sampler"] in ("ode euler", "dpm_solver 2M", "sde euler", "ancestral", "diffusers DDIM"):
            assert r["nfe"] == r["budget"], r
        if r["sampler"] == "diffusers Heun":  # 2 evaluations a step, none on the last stage (to sigma = 0)
            assert r["nfe"] == r["budget"] - 1, r
    kinds = {r["sampler"]: r["path_kind"] for r in result.rows}
    assert kinds["ode euler"] == kinds["dpm_solver 2M"] == "ode" and kinds["sde euler"] == "strong"
    assert kinds["ancestral"] == ""  # noise drawn per step: no shared path, no strong error
    # more NFE, smaller pathwise error, for every deterministic sampler
    for o in result.orders:
        assert o["errors"][-1] < o["errors"][0], o


def test_cli_quick_options_end_to_end(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from sdeflow.cli import main

    out = tmp_path / "cli"
    # two targets: the outputs are rewritten after each block, before the second target has run
    res = CliRunner().invoke(main, ["bench", "--quick", "--targets", "gauss1d,nine_gaussians", "--samplers", "ode euler,ode rk4",
                                    "--nfe", "8,16", "--samples", "200", "--no-peers", "--no-overhead",
                                    "--no-progress", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "ode rk4" in res.output and "noise floor" in res.output
    assert {p.name for p in out.iterdir()} >= set(bench.outputs.FILES) | {"error_vs_nfe_gauss1d.png",
                                                                       "error_vs_nfe_nine_gaussians.png"}
    assert "## nine_gaussians" in (out / "summary.md").read_text()
    bad = CliRunner().invoke(main, ["bench", "--targets", "nope", "--no-peers", "--out", str(out)])
    assert bad.exit_code == 2 and "unknown target" in bad.output and "gauss1d" in bad.output


def test_quick_preset_is_the_documented_grid() -> None:
    q = bench.preset("quick")
    assert q.targets == ["gauss1d", "nine_gaussians"] and q.nfe == [10, 20, 40] and q.samples == 2000
    f = bench.preset("full")
    assert f.targets == ["gauss1d", "nine_gaussians", "aniso16", "aniso64"]
    assert f.processes == ["vp", "ddpm", "ve", "subvp", "rectified_flow"]
    assert {"diffusers FlowMatchEuler", "diffusers FlowMatchEuler shift=3"} <= set(f.peers)
    sampler_names = {bench.resolve_config(c).sampler for c in f.samplers}
    # every built-in sampler is in the full grid, but repaint, which samples a model given observed values
    # (docs/conditioning.md: measured by benchmarks/imputation.py against the exact conditional)
    assert sampler_names == set(sdeflow.list_plugins()["sampler"]) - {"repaint"}
    with pytest.raises(OptionError, match="unknown preset"):
        bench.preset("medium")
    with pytest.raises(OptionError, match="unknown sampler configuration 'nope'"):
        bench.run_bench(small_spec(samplers=["nope"]), progress=False)
    with pytest.raises(OptionError, match="NFE budgets must be positive"):
        bench.run_bench(small_spec(nfe=[0, 10]), progress=False)
    with pytest.raises(OptionError, match="device must be a torch device.*got 'gpu0'"):
        bench.run_bench(small_spec(device="gpu0"), progress=False)
    with pytest.raises(OptionError, match="distributed must be a DistributedContext"):
        bench.run_bench(small_spec(), progress=False, distributed="yes")  # type: ignore[arg-type]
    with pytest.raises(OptionError, match="no torch.distributed process group"):
        bench.run_bench(small_spec(), progress=False, distributed=True)


# ---------------------------------------------------------------------------- orders
ODE_THEORY = {"ode euler": 1.0, "ode heun2": 2.0, "ode rk4": 4.0, "heun": 2.0, "ddim": 1.0, "dpm_solver 2M": 2.0}


def test_reported_orders_land_near_theory() -> None:
    """On N(5, 2^2) under VP (smooth on all of [t_min, 1]: test_order.py's module docstring) with budgets
    33..257: euler, ode heun2 and rk4 run 33..257, 16..128 and 8..64 steps; the suite's fitted orders
    land within 0.3 of theory (measured: 1.00, 2.06, 4.09, EDM heun 2.05, ddim 0.99, 2M 1.99). The SDE
    budgets 17..65 give euler 16..64 steps on the shared dyadic Brownian path: strong order 1 on this
    additive noise (measured 0.98)."""
    spec = bench.BenchSpec(targets=["gauss1d"], processes=["vp"], samplers=list(ODE_THEORY), nfe=[33, 65, 129, 257],
                           samples=100, paths=32, metrics=["mean_err"], overhead=False, entropy_samples=1000,
                           reference_tol=1e-11)
    res = bench.run_bench(spec, progress=False)
    got = {o["sampler"]: o for o in res.orders}
    for label, p in ODE_THEORY.items():
        assert got[label]["points"] == 4 and abs(got[label]["order"] - p) <= 0.3, (label, got[label])
    sde = bench.BenchSpec(targets=["gauss1d"], processes=["vp"], samplers=["sde euler"], nfe=[17, 33, 65],
                          samples=100, paths=32, metrics=["mean_err"], overhead=False, entropy_samples=1000)
    o = bench.run_bench(sde, progress=False).orders[0]
    assert o["kind"] == "strong" and o["points"] == 3 and abs(o["order"] - 1.0) <= 0.3, o


# ---------------------------------------------------------------------------- hooks
class ThirdPartyBench:
    """A plugin object adding a target and a metric through the suite's hooks."""

    @sdeflow.hookimpl
    def sdeflow_register_targets(self, registry):
        registry.add("tp-bimodal", lambda: GaussianMixture([0.5, 0.5], [[-1.0], [1.0]], [0.3, 0.3],
                                                           dtype=torch.float64), description="two bumps")

    @sdeflow.hookimpl
    def sdeflow_register_metrics(self, registry):
        class AbsMeanGap:
            """|mean(x)| - |mean(reference)|: the bimodal target's mean is 0."""

            formula = "|mean(x) - mean(ref)|"

            def __call__(self, samples, reference, target):
                return float((samples.mean(0) - reference.mean(0)).abs().sum())

        registry.add("tp-absmean", AbsMeanGap)


def test_plugin_target_and_metric_are_used_by_the_suite() -> None:
    info = sdeflow.register_plugin(ThirdPartyBench(), name="tp-bench")
    try:
        assert info.components["target"] == ["tp-bimodal"] and info.components["metric"] == ["tp-absmean"]
        comps = sdeflow.list_components()
        assert "tp-bimodal" in comps["target"] and "tp-absmean" in comps["metric"]
        assert set(comps["target"]) >= {"gauss1d", "nine_gaussians", "aniso16", "aniso64"}
        assert set(comps["metric"]) >= {"sw2", "mmd", "mean_err", "cov_err", "logp_gap"}
        assert set(sdeflow.list_plugins()) == {"process", "model", "sampler"}
        spec = bench.BenchSpec(targets=["tp-bimodal"], processes=["vp"], samplers=["ode euler"], nfe=[8, 16],
                               samples=200, paths=16, metrics=["tp-absmean", "sw2"], overhead=False,
                               entropy_samples=5000)
        res = bench.run_bench(spec, progress=False)
        assert [r["target"] for r in res.rows] == ["tp-bimodal"] * 2
        assert all(math.isfinite(r["tp-absmean"]) and r["status"] == "ok" for r in res.rows)
        assert res.targets["tp-bimodal"]["metric_formulas"]["tp-absmean"] == "|mean(x) - mean(ref)|"
        assert res.floors["tp-bimodal"]["tp-absmean"] >= 0
    finally:
        sdeflow.unregister_plugin("tp-bench")
    assert "tp-bimodal" not in sdeflow.list_components()["target"]


def test_bad_target_is_refused_with_what_is_needed() -> None:
    from sdeflow.bench.targets import prepare_target

    with pytest.raises(OptionError, match="lacks dim, sample, log_prob, score_model"):
        prepare_target("broken", object(), 10, 0, 10, "cpu", torch.float64)


# ---------------------------------------------------------------------------- peers
needs_diffusers = pytest.mark.skipif(not peers_available(), reason="diffusers not installed (pip install sdeflow[peers])")


@needs_diffusers
def test_peer_schedule_is_the_process_schedule() -> None:
    """For ``ddpm`` the betas recovered from the process are Ho et al.'s linear 1e-4..0.02; for every
    process diffusers' abar at timestep k is the process's at t_k, so its x0 prediction from the eps
    model equals sdeflow's Tweedie x0 at the unscaled state."""
    import numpy as np

    from sdeflow.bench.peers import PeerModel, make_scheduler, peer_config

    ddpm = sdeflow.create_process("ddpm")
    betas = peer_betas(ddpm, peer_times(ddpm))
    assert np.allclose(betas, np.linspace(1e-4, 0.02, 1000), rtol=1e-6, atol=1e-12)
    gmm = GaussianMixture([0.4, 0.6], [[-1.0], [2.0]], [0.2, 0.5], dtype=torch.float64)
    for name in ("vp", "subvp", "ve", "ddpm"):
        p = sdeflow.create_process(name)
        sm = gmm.score_model(p)
        times = peer_times(p)
        sched = make_scheduler(peer_config("diffusers DDIM"), peer_betas(p, times))
        model = PeerModel(sm)
        x = torch.linspace(-3, 3, 7, dtype=torch.float64)[:, None]
        for k in (10, 500, 999):
            t = float(times[k])
            abar = float(sched.alphas_cumprod[k])
            c = model.scale(t, x)
            x_vp = x / c
            x0_peer = (x_vp - math.sqrt(1 - abar) * model(x_vp, t)) / math.sqrt(abar)
            x0_mine = sm.x0(x, torch.full((7,), t, dtype=torch.float64))
            assert torch.allclose(x0_peer, x0_mine, rtol=1e-4, atol=1e-4), (name, k)


@needs_diffusers
@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_flow_match_euler_is_ddim_on_the_flow(shift: float) -> None:
    """On ``x_t = (1 - t) x_0 + t eps`` an Euler step of the flow in ``t`` is exactly a DDIM step, so diffusers'
    FlowMatchEulerDiscreteScheduler (SD3's sampler; shift 1 and 3) from the same ``p_{t_max}`` draws equals
    sdeflow's ``ddim`` on the scheduler's own levels ``sigma / alpha = s / (1 - s)``, up to the float32 the
    scheduler steps in (measured 1.0e-6)."""
    import diffusers

    from sdeflow.bench.flow_peer import unshifted_levels
    from sdeflow.bench.peers import peer_config, run_peer
    from sdeflow.bench.reference import fix_prior
    from sdeflow.data.datasets import nine_gaussians

    p = sdeflow.create_process("rectified_flow")
    sm = nine_gaussians(dtype=torch.float64).score_model(p)
    x_T = sm.prior_sample((200, 2), torch.Generator().manual_seed(0))
    label = "diffusers FlowMatchEuler" + ("" if shift == 1.0 else " shift=3")
    res = run_peer(peer_config(label), 10, sm, x_T)
    assert res.nfe == 10 and res.steps == 10
    sched = diffusers.FlowMatchEulerDiscreteScheduler(shift=shift)
    sched.set_timesteps(sigmas=unshifted_levels(p.t_max, 1e-3, 10, shift))
    s = sched.sigmas.double()
    assert float(s[0]) == pytest.approx(p.t_max, rel=1e-6) and float(s[-1]) == 0.0
    levels = (s / (1 - s)).tolist()
    levels[0] = p.t_max / (1 - p.t_max)  # the process's own level at t_max (float32 rounding aside)
    fix_prior(sm, x_T)
    mine = sdeflow.create_sampler("ddim", schedule=levels).sample(sm, (200, 2))
    assert mine.nfe == 10
    torch.testing.assert_close(res.samples, mine.samples, rtol=1e-5, atol=1e-5)


@needs_diffusers
@pytest.mark.parametrize("process", ["vp", "ve", "rectified_flow"])
def test_peers_converge_to_the_reference_ode(process: str) -> None:
    """The deterministic diffusers schedulers approach the probability-flow ODE solution from the same
    noise (followed by the denoising they all end with) as NFE grows, on a VP and a VE process and a flow;
    the flow-matching Euler scheduler runs on all three through the rectified-flow frame."""
    spec = bench.BenchSpec(targets=["gauss1d"], processes=[process], samplers=[],
                           peers=["diffusers DDIM", "diffusers Euler", "diffusers Heun", "diffusers DPMSolverMultistep",
                                  "diffusers UniPC", "diffusers DDPM", "diffusers FlowMatchEuler",
                                  "diffusers FlowMatchEuler shift=3"],
                           nfe=[10, 100], samples=300, paths=32, metrics=["mean_err"], overhead=False,
                           entropy_samples=1000)
    res = bench.run_bench(spec, progress=False)
    assert {r["status"] for r in res.rows} == {"ok"}
    for o in res.orders:
        assert o["errors"][1] < 0.5 * o["errors"][0] and o["errors"][1] < 0.05, o
    ddpm = [r for r in res.rows if r["sampler"] == "diffusers DDPM"]
    assert all(r["path_error"] is None and r["mean_err"] < 0.5 for r in ddpm)
