"""The command line on diffusers folders: ``sample --diffusers``, ``likelihood --diffusers`` and the
real-network benchmark ``bench --diffusers`` / ``bench --model`` (tiny random UNet, few steps)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from common import invoke

diffusers = pytest.importorskip("diffusers")
pytestmark = [pytest.mark.usefixtures("single_thread"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]  # numpy 2 notes inside diffusers


@pytest.fixture(scope="module")
def pipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(4, 8),
                                 layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=2)
    path = tmp_path_factory.mktemp("cli") / "pipe"
    diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler(num_train_timesteps=100)).save_pretrained(
        str(path), safe_serialization=True)
    return path


def test_sample_diffusers_writes_samples_and_an_image_grid(pipe: Path, tmp_path: Path) -> None:
    res = invoke("sample", "--diffusers", str(pipe), "--sampler", "ddim", "--sampler-opt", "steps=3", "--n", "4",
                 "--out", str(tmp_path / "s.npz"), "--device", "cpu", "--no-progress")
    assert f"drew 4 samples (1, 8, 8) with ddim {{'steps': 3}} from diffusers folder {pipe}: nfe=3" in res.output
    assert "image grid" in res.output and (tmp_path / "s.png").stat().st_size > 100
    with np.load(tmp_path / "s.npz") as f:
        x, meta = f["samples"], json.loads(str(f["meta"]))
    assert x.shape == (4, 1, 8, 8) and np.isfinite(x).all()
    assert meta["pretrained"] == f"diffusers folder {pipe}" and meta["step"] is None and meta["nfe"] == 3


def test_sample_needs_exactly_one_model(pipe: Path, tmp_path: Path) -> None:
    res = invoke("sample", "--sampler", "ddim", "--out", str(tmp_path / "s.npz"), ok=False)
    assert res.exit_code == 2 and "give a CHECKPOINT or --diffusers DIR" in res.output
    res = invoke("sample", str(pipe), "--diffusers", str(pipe), "--out", str(tmp_path / "s.npz"), ok=False)
    assert res.exit_code == 2 and "one of them" in res.output
    res = invoke("sample", "--diffusers", str(pipe), "--raw", "--out", str(tmp_path / "s.npz"), ok=False)
    assert res.exit_code == 2 and "--raw" in res.output
    res = invoke("sample", "--diffusers", str(tmp_path / "none"), "--out", str(tmp_path / "s.npz"), ok=False)
    assert res.exit_code == 1 and "no such folder" in res.output


def test_likelihood_diffusers_on_digits_in_bits_per_dim(pipe: Path) -> None:
    res = invoke("likelihood", "--diffusers", str(pipe), "--data", "digits", "--data-opt", "split=test", "-n", "3",
                 "--method", "rk4", "--steps", "2", "--estimator", "hutchinson", "--device", "cpu", "--no-progress")
    assert "log p(x) over 3 rows of digits (diffusers folder" in res.output
    assert "bits/dim (continuous, D = 64)" in res.output
    assert "discrete (17 levels in [-1.0, 1.0], uniform dequantization bound, Theis et al. 2016)" in res.output
    res = invoke("likelihood", "--diffusers", str(pipe), ok=False)
    assert res.exit_code == 2 and "does not record its training data: pass --data" in res.output


def test_likelihood_dequantizes_uint8_images(pipe: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "img.npz", images=rng.integers(0, 256, size=(3, 1, 8, 8), dtype=np.uint8))
    args = ["likelihood", "--diffusers", str(pipe), "--data", str(tmp_path / "img.npz"), "--method", "rk4",
            "--steps", "2", "--estimator", "hutchinson", "--device", "cpu", "--no-progress"]
    res = invoke(*args, "--dequantize", "256")
    assert "discrete (256 levels in [-1.0, 1.0], uniform dequantization bound" in res.output
    res = invoke(*args, "--bins", "256")
    assert "these were not: pass --dequantize" in res.output
    res = invoke(*args, "--dequantize", "17", ok=False)
    assert res.exit_code == 2 and "not on the grid of 17 levels" in res.output
    res = invoke("likelihood", "--diffusers", str(pipe), "--data", "digits", "--dequantize", "17", ok=False)
    assert res.exit_code == 2 and "dequantized already" in res.output


def test_bench_on_a_diffusers_network(pipe: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    res = invoke("bench", "--diffusers", str(pipe), "--nfe", "2,4", "--paths", "2", "--samplers", "ddim,ode euler",
                 "--peer-list", "diffusers DDIM,diffusers DPMSolverMultistep", "--reference-tol", "1e-3",
                 "--out", str(out), "--no-progress")
    assert "reference" in res.output and "diffusers DDIM" in res.output and "ode euler" in res.output
    for name in ("bench.csv", "bench.json", "table.txt", "summary.md", "error_vs_nfe.png"):
        assert (out / name).is_file(), name
    data = json.loads((out / "bench.json").read_text())
    rows = data["rows"]
    assert {r["sampler"] for r in rows} == {"ddim", "ode euler", "diffusers DDIM", "diffusers DPMSolverMultistep"}
    assert all(r["status"] == "ok" and r["path_kind"] == "ode" for r in rows)
    assert [r["nfe"] for r in rows if r["sampler"] == "ddim"] == [2, 4]
    assert data["reference"]["error_bound"] > 0 and data["reference"]["nfe"] > 0
    assert "| ddim |" in (out / "summary.md").read_text()
    # --model recognises a diffusers folder; target options do not apply to a network
    res = invoke("bench", "--model", str(pipe), "--nfe", "2", "--paths", "2", "--samplers", "ddim", "--no-peers",
                 "--reference-tol", "1e-3", "--out", str(tmp_path / "b2"), "--no-progress", "--no-plots")
    assert "ddim" in res.output
    res = invoke("bench", "--model", str(pipe), "--targets", "gauss1d", ok=False)
    assert res.exit_code == 2 and "--targets does not apply to a network benchmark" in res.output
