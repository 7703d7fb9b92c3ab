"""The image demo (sdeflow.cli.image_demo) at a tiny budget, under every registered process."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import sdeflow
from sdeflow.cli.image_demo import (
    condition_range,
    default_sampler,
    digit_classifier,
    digit_confidence,
    histogram_bits_per_dim,
    latent_in_range,
    nearest_digit_ratio,
    run_image_demo,
)
from sdeflow.data.images import levels_to_signed, load_digits_split
from sdeflow.errors import OptionError
from sdeflow.training import load_checkpoint, load_score_model

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
    # the checkpoint rebuilds the model (sdeflow sample <out>/model) and names the data set
    ckpt = load_checkpoint(tmp_path / "model")
    assert ckpt.step == 3 and ckpt.manifest["metadata"]["data"] == {"name": "digits", "options": {}}
    assert load_score_model(tmp_path / "model").process.__class__ is sdeflow.create_process(process).__class__
    assert 0 < r.sample_confidence <= 1 and 0 < r.reference_confidence <= 1 and 1 <= r.sample_classes <= 10
    assert r.nearest_ratio > 0


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


def test_default_sampler_per_process() -> None:
    """DPM-Solver++ for continuous processes; VDM's ancestral chain with x0 clipping, ending at z_0."""
    assert default_sampler(sdeflow.create_process("vp")) == ("dpm_solver", {"steps": 20})
    name, opts = default_sampler(sdeflow.create_process("vdm", bins=17, hidden=8))
    assert name == "ancestral" and opts == {"steps": 1000, "clip_x0": 1.0, "denoise": False}


def test_vdm_grid_shows_decoded_levels(tmp_path: Path) -> None:
    """The vdm run's grid is the decoder's levels of z_0: every pixel one of the 17 gray levels
    ``round(255 k / 16)``; the padding is white (255)."""
    r = run_image_demo(tmp_path, "vdm", steps=2, process_options={"hidden": 8}, **TINY)
    with Image.open(tmp_path / "grid.png") as img:
        pixels = set(np.asarray(img).reshape(-1).tolist())
    allowed = {round(255 * k / 16) for k in range(17)} | {255}
    assert pixels <= allowed
    # the chain ends at z_0: the report gives the exact model's in-range fraction beside the measured one
    assert r.samples_in_range_expected is not None and 0.5 < r.samples_in_range_expected <= 1
    assert "z_0 ~ q(z_0 \\| x)" in (tmp_path / "report.md").read_text()


def test_digit_judges() -> None:
    """The classifier is a good judge of the real digits (held-out accuracy > 0.9, confidence higher
    than on uniform noise); the nearest-digit ratio is 1 for the reference itself, 0 for copies of
    training digits and about 3.5 for uniform noise."""
    train = load_digits_split("train")
    test, labels = load_digits_split("test", return_labels=True)
    clf = digit_classifier()
    x = test.reshape(test.shape[0], -1).double().numpy() / 16
    assert clf.score(x, labels.numpy()) > 0.9
    noise = torch.randint(0, 17, (128, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    real_conf, real_classes = digit_confidence(clf, test[:128])
    assert real_conf > digit_confidence(clf, noise)[0] + 0.2 and real_classes == 10
    assert nearest_digit_ratio(test[:64], train, test[:64]) == 1.0
    assert nearest_digit_ratio(train[:64], train, test[:64]) == 0.0
    assert 3.0 < nearest_digit_ratio(noise, train, test[:128]) < 4.0


def test_vdm_chain_ends_at_z0_whose_range_has_a_closed_form() -> None:
    """The chain ends at z_0 = alpha_0 x + sigma_0 eps, noisy by construction: at gamma_0 = -5 (an
    MLP's learned value, sigma_0 / alpha_0 = 0.08) 15% of the digits' pixels leave [-1.05, 1.05]
    even for an exact model. With the exact denoiser of the digits' pixel-level distribution (17 levels, their
    frequencies in the training split; a mixture of very narrow Gaussians) the ancestral chain's
    fraction in range equals sum_k w_k P(|alpha_0 x_k + sigma_0 eps| <= 1.05) within 4 binomial
    standard errors at n = 8,000 (se = sqrt(p (1 - p) / n) = 0.004; the chain's time discretisation
    at 400 steps moves the fraction by 0.0016 +- 0.0018, measured at n = 40,000: under half an se),
    and the decoder p(x | z_0) puts every pixel on the level grid."""
    f64 = torch.float64
    p = sdeflow.create_process("vdm", schedule="linear", gamma_min=-5.0, gamma_max=12.0, bins=17).to(f64)
    counts = torch.bincount(load_digits_split("train").reshape(-1).long(), minlength=17).to(f64)
    w = counts / counts.sum()
    values = levels_to_signed(torch.arange(17), 16, f64)
    sm = sdeflow.GaussianMixture(w.tolist(), values[:, None].tolist(), 1e-12, dtype=f64).score_model(p)
    n = 8_000
    z0 = sdeflow.create_sampler("ancestral", steps=400, clip_x0=1.0, denoise=False).sample(
        sm, (n, 1), torch.Generator().manual_seed(5)).samples
    measured = float((z0.abs() <= 1.05).to(f64).mean())
    expected = float((w * latent_in_range(p, values)).sum())
    assert 0.8 < expected < 0.95  # the background level alone: P(N(-alpha_0, sigma_0^2) < -1.05) = 0.26
    assert abs(measured - expected) < 4 * math.sqrt(expected * (1 - expected) / n), (measured, expected)
    decoded = p.decode(z0)
    assert torch.isin(decoded, values).all() and bool((decoded.abs() <= 1).all())
    # sigma = 0: an indicator
    ve = sdeflow.create_process("ve")
    assert latent_in_range(ve, torch.tensor([1.0, 1.1])).tolist() == [1.0, 0.0]
