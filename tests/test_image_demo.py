"""The image demo (sdeflow.image_demo) at a tiny budget, under every registered process."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

import sdeflow
from sdeflow.errors import OptionError
from sdeflow.image_demo import condition_range, histogram_bits_per_dim, run_image_demo

TINY = {"model_options": {"base_channels": 8}, "batch_size": 16, "n_samples": 4, "n_eval": 4, "n_probes": 2,
        "rtol": 1e-2, "atol": 1e-2, "sampler_options": {"steps": 4}, "echo": lambda s: None}


@pytest.mark.parametrize("process", sdeflow.list_plugins()["process"])
def test_image_demo_runs_for_every_process(tmp_path: Path, process: str) -> None:
    r = run_image_demo(tmp_path, process, steps=3, **TINY)
    assert r.steps == 3 and r.process == process and r.sample_nfe == 4 and r.n_eval == 4
    assert math.isfinite(r.bits_per_dim) and r.bits_per_dim > 0 and math.isfinite(r.bits_per_dim_stderr)
    assert r.uniform_bits_per_dim == pytest.approx(math.log2(17))
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["bits_per_dim"] == pytest.approx(r.bits_per_dim) and report["process"] == process
    assert "bits/dim" in (tmp_path / "report.md").read_text()
    with Image.open(tmp_path / "grid.png") as img:
        # 4 samples in a 2 x 2 grid of 8x8 digits upscaled 4x, 2 px padding
        assert img.size == (2 * 34 + 2, 2 * 34 + 2) and img.mode == "L"


def test_image_demo_minutes_budget_and_padding(tmp_path: Path) -> None:
    r = run_image_demo(tmp_path, "vp", minutes=1e-4, image_size=12, **TINY)
    assert r.steps == 25 and r.image_size == 12  # one chunk of 25 steps, then the budget is spent
    assert math.isfinite(r.bits_per_dim)


def test_image_demo_bad_options(tmp_path: Path) -> None:
    with pytest.raises(OptionError, match="image_size"):
        run_image_demo(tmp_path, "vp", steps=1, image_size=4, **TINY)
    with pytest.raises(OptionError, match="minutes"):
        run_image_demo(tmp_path, "vp", minutes=0, **TINY)
    with pytest.raises(OptionError, match="steps"):
        run_image_demo(tmp_path, "vp", steps=0, **TINY)
    with pytest.raises(sdeflow.errors.UnknownComponentError, match="valid process names"):
        run_image_demo(tmp_path, "nope", steps=1, **TINY)


def test_condition_range() -> None:
    vp = sdeflow.create_process("vp")
    assert condition_range(vp) == pytest.approx((vp.t_min, 1.0))


def test_histogram_bits_per_dim_by_hand() -> None:
    train = torch.tensor([0, 0, 0, 1]).reshape(4, 1)
    test = torch.tensor([0, 1]).reshape(2, 1)
    # add-one counts [4, 2] -> P = (2/3, 1/3)
    expected = -(math.log2(2 / 3) + math.log2(1 / 3)) / 2
    assert histogram_bits_per_dim(train, test, bins=2) == pytest.approx(expected, rel=1e-12)


def test_likelihood_starts_at_score_t_min() -> None:
    """The demo's likelihood starts where log_likelihood does by default, the model's score_t_min:
    VP's t_min; for VE's t_min = 0 (no noise) where sigma_t / alpha_t = 0.002 (tests/test_score_floor.py)."""
    net = sdeflow.create_model("mlp", dim=2)
    vp, ve = sdeflow.create_process("vp"), sdeflow.create_process("ve")
    assert sdeflow.ScoreModel(net, vp, "eps").score_t_min == vp.t_min
    t = sdeflow.ScoreModel(net, ve, "eps").score_t_min
    _, s = ve.marginal(torch.tensor([t], dtype=torch.float64))
    assert 0 < t < 0.1 and float(s) == pytest.approx(0.002, rel=1e-9)
