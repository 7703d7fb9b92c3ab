"""The real-network benchmark harness (:mod:`sdeflow.bench.network`) on a model with a known answer:
the exact score of a Gaussian mixture, where the samplers' measured orders must be their nominal ones."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from common import invoke

import sdeflow
from sdeflow.bench.network import NetworkBenchSpec, all_deterministic_samplers, run_network_bench, write_network_outputs
from sdeflow.errors import OptionError

pytestmark = [pytest.mark.usefixtures("single_thread"), pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def test_orders_on_an_exact_model(tmp_path: Path) -> None:
    gm = sdeflow.GaussianMixture([0.3, 0.7], [[-1.0, 0.0], [1.0, 0.5]], 0.3, dtype=torch.float64)
    sm = gm.score_model(sdeflow.create_process("vp"))
    spec = NetworkBenchSpec(samplers=["ddim", "dpm_solver 2M", "ode rk4"], peers=[], nfe=[20, 40, 80], paths=16,
                            reference_tol=1e-10)
    res = run_network_bench(sm, (2,), spec, label="exact", progress=False)
    assert res.reference["error_bound"] < 1e-7
    assert all(r["status"] == "ok" for r in res.rows)
    orders = {o["sampler"]: o["order"] for o in res.orders}
    assert 0.8 < orders["ddim"] < 1.3, orders
    assert 1.6 < orders["dpm_solver 2M"] < 2.6, orders
    assert orders["ode rk4"] > 2.5, orders
    errs = [r["path_error"] for r in res.rows if r["sampler"] == "ddim"]
    assert errs == sorted(errs, reverse=True) and errs[-1] > 10 * res.reference["error_bound"]
    written = write_network_outputs(res, tmp_path)
    assert [p.name for p in written] == ["bench.csv", "bench.json", "table.txt", "summary.md", "error_vs_nfe.png"]


def test_stochastic_samplers_are_skipped_and_bad_specs_refused() -> None:
    gm = sdeflow.GaussianMixture([1.0], [[0.0, 0.0]], 0.5, dtype=torch.float64)
    sm = gm.score_model(sdeflow.create_process("vp"))
    res = run_network_bench(sm, (2,), NetworkBenchSpec(samplers=["ddim eta=1", "ddim"], peers=[], nfe=[4], paths=2,
                                                       reference_tol=1e-6), progress=False)
    assert [r["sampler"] for r in res.rows] == ["ddim"] and "ddim eta=1: stochastic" in res.notes[0]
    with pytest.raises(OptionError, match="peer 'diffusers DDPM' is stochastic"):
        NetworkBenchSpec(peers=["diffusers DDPM"]).validate()
    with pytest.raises(OptionError, match="dtype must be one of"):
        NetworkBenchSpec(dtype="float16").validate()
    assert "heun" in all_deterministic_samplers() and "ddim eta=1" not in all_deterministic_samplers()


def test_bench_model_on_an_sdeflow_checkpoint(tmp_path: Path) -> None:
    run = tmp_path / "run"
    invoke("train", "--model-opt", "hidden=16", "--model-opt", "depth=1", "--steps", "5", "--batch-size", "32",
           "--device", "cpu", "--no-progress", "--out", str(run))
    res = invoke("bench", "--model", str(run), "--nfe", "4,8", "--paths", "4", "--samplers", "ddim,dpm_solver 2M",
                 "--no-peers", "--reference-tol", "1e-6", "--out", str(tmp_path / "b"), "--no-progress", "--no-plots")
    assert "== run@5" in res.output and "dpm_solver 2M" in res.output
