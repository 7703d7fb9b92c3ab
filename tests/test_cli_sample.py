"""``sdeflow sample`` and ``sdeflow likelihood`` from checkpoints; ``load_score_model``; bad
checkpoints, samplers and outputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from common import invoke

import sdeflow
from sdeflow.cli.outputs import plot_samples
from sdeflow.training import CheckpointError, Trainer, load_checkpoint, load_score_model

TRAIN = ["train", "--model-opt", "hidden=16", "--model-opt", "depth=1", "--steps", "20", "--batch-size", "64",
         "--device", "cpu", "--no-progress", "--train-opt", "log_every=10"]


@pytest.fixture(scope="module")
def run2d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "run2d"
    invoke(*TRAIN, "--out", str(out))
    return out


@pytest.fixture(scope="module")
def run1d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "run1d"
    invoke(*TRAIN, "--data", "gaussian_1d", "--process", "subvp", "--dtype", "float64", "--out", str(out))
    return out


FAST = ["--sampler", "ode", "--sampler-opt", "method=rk4", "--sampler-opt", "steps=4", "--no-progress"]


# --------------------------------------------------------------------------- sample
def test_sample_npz_and_pt_with_plot(run2d: Path, tmp_path: Path) -> None:
    res = invoke("sample", str(run2d), *FAST, "--n", "50", "--out", str(tmp_path / "s.npz"), "--seed", "3")
    assert "drew 50 samples (2,) with ode" in res.output and "nfe=16" in res.output
    assert "vs the exact training density: log-density gap" in res.output  # trained on nine_gaussians
    with np.load(tmp_path / "s.npz") as f:
        x, meta = f["samples"], json.loads(str(f["meta"]))
    assert x.shape == (50, 2) and np.isfinite(x).all()
    assert meta["sampler"] == "ode" and meta["sampler_options"] == {"method": "rk4", "steps": 4} and meta["nfe"] == 16
    assert meta["ema"] is True and meta["seed"] == 3 and meta["step"] == 20
    assert (tmp_path / "s.png").stat().st_size > 1000
    # same seed, same samples, in either format; another seed, other samples
    invoke("sample", str(run2d), *FAST, "--n", "50", "--out", str(tmp_path / "s.pt"), "--seed", "3", "--no-plot")
    pt = torch.load(tmp_path / "s.pt", weights_only=True)
    assert torch.equal(pt["samples"], torch.from_numpy(x)) and pt["nfe"] == 16
    assert not (tmp_path / "s.png").with_name("s.pt.png").exists()
    invoke("sample", str(run2d), *FAST, "--n", "50", "--out", str(tmp_path / "t.pt"), "--seed", "4", "--no-plot")
    assert not torch.equal(torch.load(tmp_path / "t.pt", weights_only=True)["samples"], pt["samples"])


def test_sample_matches_the_library(run2d: Path, tmp_path: Path) -> None:
    """The command draws exactly what load_score_model + create_sampler draw with the same seed, in
    chunks too (the generator carries over), and --raw takes the raw weights."""
    for extra, ema in (([], True), (["--raw"], False)):
        invoke("sample", str(run2d), "--sampler", "dpm_solver", "--sampler-opt", "steps=5", "--n", "30", "--seed", "2",
               "--batch-size", "30", "--out", str(tmp_path / "a.pt"), "--no-plot", "--no-progress", *extra)
        got = torch.load(tmp_path / "a.pt", weights_only=True)["samples"]
        model = load_score_model(run2d, ema=ema)
        with torch.no_grad():
            want = sdeflow.create_sampler("dpm_solver", steps=5).sample(model, (30, 2),
                                                                        torch.Generator().manual_seed(2)).samples
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    invoke("sample", str(run2d), *FAST, "--n", "30", "--seed", "2", "--batch-size", "7", "--out", str(tmp_path / "b.pt"),
           "--no-plot")
    assert torch.load(tmp_path / "b.pt", weights_only=True)["samples"].shape == (30, 2)


def test_sample_1d_histogram_and_float64(run1d: Path, tmp_path: Path) -> None:
    res = invoke("sample", str(run1d), "--sampler", "sde", "--sampler-opt", "steps=20", "--n", "200",
                 "--out", str(tmp_path / "h.npz"), "--plot", str(tmp_path / "hist.png"), "--no-progress")
    assert "histogram -> " in res.output and (tmp_path / "hist.png").is_file()
    with np.load(tmp_path / "h.npz") as f:
        assert f["samples"].shape == (200, 1) and f["samples"].dtype == np.float64


def test_plot_kinds(tmp_path: Path) -> None:
    assert plot_samples(tmp_path / "a.png", torch.randn(20, 2)) == "scatter"
    assert plot_samples(tmp_path / "b.png", torch.randn(20, 1)) == "histogram"
    assert plot_samples(tmp_path / "c.png", torch.randn(20, 5)).startswith("scatter of the first 2 of 5")
    assert plot_samples(tmp_path / "d.png", torch.rand(6, 3, 8, 8) * 2 - 1) == "image grid"
    assert plot_samples(tmp_path / "e.png", torch.rand(5, 1, 8, 8)) == "image grid"
    assert plot_samples(tmp_path / "f.png", torch.rand(70, 1, 4, 4)) == "image grid of the first 64"
    assert all((tmp_path / f"{c}.png").stat().st_size > 500 for c in "abcdef")


# --------------------------------------------------------------------------- likelihood
def test_likelihood_equals_the_library(run2d: Path, tmp_path: Path) -> None:
    x = sdeflow.data.datasets.nine_gaussians().sample(12, torch.Generator().manual_seed(5)).float()
    np.save(tmp_path / "x.npy", x.numpy())
    res = invoke("likelihood", str(run2d), "--data", str(tmp_path / "x.npy"), "--method", "rk4", "--steps", "10",
                 "--batch-size", "5", "--out", str(tmp_path / "l.json"), "--bins", "256", "--no-progress")
    out = json.loads((tmp_path / "l.json").read_text())
    want = sdeflow.log_likelihood(load_score_model(run2d), x, method="rk4", steps=10).log_prob
    torch.testing.assert_close(torch.tensor(out["log_prob"], dtype=torch.float32), want, rtol=1e-5, atol=1e-5)
    assert out["n"] == 12 and out["dims"] == 2
    assert out["log_prob_mean"] == pytest.approx(float(want.double().mean()), abs=1e-5)
    assert out["bits_per_dim"] == pytest.approx(-out["log_prob_mean"] / (2 * math.log(2)))
    # the discrete bound: -log p / (D ln 2) + log2(bins / (hi - lo)) = continuous + 7 for 256 levels on [-1, 1]
    assert out["discrete_bits_per_dim"] == pytest.approx(out["bits_per_dim"] + 7.0, abs=1e-6)
    assert "bits/dim" in res.output and "discrete (256 levels" in res.output
    assert "true_log_prob_mean" not in out  # a file: no known density


def test_likelihood_defaults_to_the_training_data(run1d: Path) -> None:
    """Trained on gaussian_1d (a distribution): n fresh samples of it, and its exact log p alongside;
    the Hutchinson estimate with 2 probes is close to the exact divergence's (same rows)."""
    res = invoke("likelihood", str(run1d), "-n", "40", "--method", "rk4", "--steps", "20", "--no-progress")
    assert "over 40 rows of gaussian_1d" in res.output and "under the true density" in res.output
    exact = float(res.output.split("): ")[1].split(" ")[0])
    res = invoke("likelihood", str(run1d), "-n", "40", "--method", "rk4", "--steps", "20", "--estimator",
                 "hutchinson", "--n-probes", "2", "--no-progress")
    hutch = float(res.output.split("): ")[1].split(" ")[0])
    assert abs(hutch - exact) < 0.5  # 1-D: the Rademacher probe's estimate is exact, up to the ODE path


@pytest.mark.parametrize("args,message", [
    (["--steps", "10", "--rtol", "1e-3"], "--steps is for fixed-grid methods"),
    (["--method", "nope"], "unknown ode method 'nope'; valid: dopri8, dopri5"),
    (["--estimator", "guess"], "'guess' is not one of 'auto', 'exact', 'hutchinson'"),
    (["--data", "gaussian_1d"], "data samples have shape (1,), the model was trained on (2,)"),
    (["--data", "nine_gaussians", "--data-opt", "n=5", "-n", "9"], "asked for 9 rows but the data set has 5"),
])
def test_likelihood_bad_input(run2d: Path, args: list[str], message: str) -> None:
    res = invoke("likelihood", str(run2d), "-n", "4", "--no-progress", *args, ok=False)
    assert res.exit_code in (1, 2) and message in res.output, res.output
    assert "Traceback" not in res.output


# --------------------------------------------------------------------------- bad checkpoints and options
def test_missing_and_corrupt_checkpoints_are_one_line_errors(run2d: Path, tmp_path: Path) -> None:
    res = invoke("sample", str(tmp_path / "nowhere"), ok=False)
    assert res.exit_code == 1 and f"Error: checkpoint manifest {tmp_path / 'nowhere'} does not exist" in res.output
    broken = tmp_path / "broken"
    broken.mkdir()
    for p in run2d.glob("step_*"):
        (broken / p.name).write_bytes(p.read_bytes())
    tensors = next(broken.glob("*.safetensors"))
    tensors.write_bytes(tensors.read_bytes()[:100])
    for cmd in ("sample", "likelihood"):
        res = invoke(cmd, str(broken), ok=False)
        assert res.exit_code == 1 and "truncated or corrupted" in res.output and "Traceback" not in res.output
    (broken / "notes.json").write_text("{}")
    res = invoke("sample", str(broken / "notes.json"), ok=False)
    assert res.exit_code == 1 and "is not an sdeflow checkpoint manifest" in res.output


@pytest.mark.parametrize("args,message", [
    (["--sampler", "eulr"], "unknown sampler 'eulr'; valid sampler names: 'ancestral', 'ddim', 'dpm_solver'"),
    (["--sampler-opt", "metod=rk4"], "valid options: method='dopri5', rtol=None"),
    (["--sampler-opt", "method=rk5"], "Invalid value for --sampler-opt: unknown ode method 'rk5'; valid: dopri8"),
    (["--out", "s.txt"], "valid: .pt, .npz"),
    (["--plot", "s.jpg"], "the plot is a PNG file"),
    (["--n", "0"], "0 is not in the range x>=1"),
    (["--device", "mps:0"], "--device"),
])
def test_sample_bad_input(run2d: Path, tmp_path: Path, args: list[str], message: str) -> None:
    res = invoke("sample", str(run2d), "--out", str(tmp_path / "s.npz"), "--no-progress", *args, ok=False)
    assert res.exit_code in (1, 2) and message in res.output, res.output
    assert "Traceback" not in res.output


def test_load_score_model_errors(tmp_path: Path) -> None:
    """A checkpoint whose model was not built by name, or whose plugin is gone, says so."""
    torch.manual_seed(0)
    from sdeflow_plugins.mlp import TimeMLP  # built directly: no registry name recorded

    model = sdeflow.ScoreModel(TimeMLP(dim=2, hidden=8, depth=1), sdeflow.create_process("vp"))
    Trainer(model, torch.randn(32, 2), out_dir=tmp_path / "a", steps=2, batch_size=8).fit()
    with pytest.raises(CheckpointError, match="has no model_spec"):
        load_score_model(tmp_path / "a")
    model = sdeflow.ScoreModel(sdeflow.create_model("mlp", dim=2, hidden=8, depth=1), sdeflow.create_process("vp"))
    Trainer(model, torch.randn(32, 2), out_dir=tmp_path / "b", steps=2, batch_size=8).fit()
    ckpt = load_checkpoint(tmp_path / "b")
    ckpt.manifest["model_spec"]["process"]["name"] = "gone-plugin"
    with pytest.raises(CheckpointError, match="cannot be rebuilt: unknown process 'gone-plugin'"):
        load_score_model(ckpt)
    ckpt.manifest["model_spec"]["process"]["name"] = "vp"
    ckpt.manifest["model_spec"]["model"]["options"]["hidden"] = 9
    with pytest.raises(CheckpointError, match="weights do not fit the rebuilt 'mlp' model"):
        load_score_model(ckpt)
    res = invoke("sample", str(tmp_path / "a"), ok=False)
    assert res.exit_code == 1 and "has no model_spec" in res.output
