"""The command line's conditioning: ``train --labels`` on every kind of labelled data, ``sample
--class/--guidance`` and ``--known/--mask`` (arrays and PNGs), the class-conditional image demo, and
a small class-conditional UNet on the digits that the demo's classifier recognises."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from common import invoke

import sdeflow
from sdeflow.training import load_checkpoint, load_score_model
from sdeflow.training.model_spec import ModelSpec

TRAIN = ["train", "--model-opt", "hidden=16", "--model-opt", "depth=1", "--steps", "20", "--batch-size", "64",
         "--device", "cpu", "--no-progress", "--train-opt", "log_every=10"]
FAST = ["--sampler", "ode", "--sampler-opt", "method=rk4", "--sampler-opt", "steps=4", "--no-progress"]


@pytest.fixture(scope="module")
def labelled_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "labelled"
    res = invoke(*TRAIN, "--labels", "--out", str(out))
    assert "with 9 class labels" in res.output and "--class 0 --guidance 2" in res.output
    return out


def test_train_labels_records_classes_and_resumes(labelled_run: Path) -> None:
    spec = ModelSpec.from_checkpoint(load_checkpoint(labelled_run))
    assert spec.model_options["num_classes"] == 9 and spec.class_names == [str(k) for k in range(9)]
    assert "labels = true" in (labelled_run / "config.toml").read_text()
    res = invoke(*TRAIN, "--out", str(labelled_run), "--steps", "30", "--no-labels", ok=False)
    assert res.exit_code != 0 and "another model" in res.output  # an unconditional run cannot resume it
    res = invoke("train", "--config", str(labelled_run / "config.toml"), "--steps", "30", "--no-progress")
    assert "resumed" in res.output and load_checkpoint(labelled_run).step == 30


def test_sample_class_and_guidance(labelled_run: Path, tmp_path: Path) -> None:
    res = invoke("sample", str(labelled_run), *FAST, "--n", "40", "--class", "4", "--out", str(tmp_path / "a.npz"))
    assert "of class 4" in res.output and "vs the exact density given class 4" in res.output
    with np.load(tmp_path / "a.npz") as f:
        meta = json.loads(str(f["meta"]))
    assert meta["classes"] == [4] and meta["guidance"] == 0.0
    invoke("sample", str(labelled_run), *FAST, "--n", "40", "--class", "4", "--class", "7", "--guidance", "2",
           "--seed", "1", "--batch-size", "15", "--out", str(tmp_path / "b.pt"), "--no-plot")
    got = torch.load(tmp_path / "b.pt", weights_only=True)["samples"]
    model = load_score_model(labelled_run)
    labels = torch.tensor([4] * 20 + [7] * 20)
    gen, parts = torch.Generator().manual_seed(1), []
    smp = sdeflow.create_sampler("ode", method="rk4", steps=4)
    with torch.no_grad():
        for lo in range(0, 40, 15):  # the command's chunks share one generator
            hi = min(40, lo + 15)
            parts.append(smp.sample(model.given(labels[lo:hi], guidance=2.0), (hi - lo, 2), gen).samples)
    torch.testing.assert_close(got, torch.cat(parts), rtol=1e-6, atol=1e-6)
    for args, message in ((["--class", "9"], "unknown class '9'"), (["--guidance", "2"], "guidance needs a class"),
                          (["--known", str(tmp_path / "a.npz")], "needs both --known and --mask")):
        res = invoke("sample", str(labelled_run), *FAST, "--n", "5", *args, ok=False)
        assert res.exit_code != 0 and message in res.output, res.output


def test_sample_known_and_mask(labelled_run: Path, tmp_path: Path) -> None:
    np.savez(tmp_path / "known.npz", known=np.array([0.0, 2.0], dtype=np.float32))
    np.savez(tmp_path / "mask.npz", mask=np.array([True, False]))
    for sampler in (["--sampler", "ddim", "--sampler-opt", "steps=6", "--no-progress"], ["--sampler", "repaint", "--sampler-opt", "steps=10", "--sampler-opt", "jump_length=3",
                           "--sampler-opt", "resample=2", "--no-progress"]):
        res = invoke("sample", str(labelled_run), *sampler, "--n", "30", "--known", str(tmp_path / "known.npz"),
                     "--mask", str(tmp_path / "mask.npz"), "--out", str(tmp_path / "i.npz"))
        assert "given 1 known values" in res.output and "vs the exact density given the known values" in res.output
        with np.load(tmp_path / "i.npz") as f:
            assert np.all(f["samples"][:, 0] == 0.0)
    res = invoke("sample", str(labelled_run), "--sampler", "repaint", "--n", "5", "--no-progress", ok=False)
    assert res.exit_code != 0 and "imputes observed coordinates" in res.output
    np.savez(tmp_path / "bad.npz", mask=np.array([True, False, True]))
    res = invoke("sample", str(labelled_run), *FAST, "--n", "5", "--known", str(tmp_path / "known.npz"), "--mask",
                 str(tmp_path / "bad.npz"), ok=False)
    assert res.exit_code != 0 and "give one sample (2 values)" in res.output


def test_train_labels_from_files_and_folders(tmp_path: Path) -> None:
    from sdeflow.data.images import save_images

    x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(40) % 4)
    invoke(*TRAIN, "--data", str(tmp_path / "d.npz"), "--labels", "--steps", "3", "--out", str(tmp_path / "r1"))
    assert ModelSpec.from_checkpoint(load_checkpoint(tmp_path / "r1")).model_options["num_classes"] == 4
    np.savez(tmp_path / "nolabels.npz", x=x)
    res = invoke(*TRAIN, "--data", str(tmp_path / "nolabels.npz"), "--labels", "--out", str(tmp_path / "r2"), ok=False)
    assert res.exit_code != 0 and "no labels array" in res.output
    res = invoke(*TRAIN, "--data", "two_moons", "--labels", "--out", str(tmp_path / "r3"), ok=False)
    assert res.exit_code != 0 and "has no class labels" in res.output
    images = torch.rand(6, 1, 8, 8) * 2 - 1
    for k, name in enumerate(("cat", "dog")):
        save_images(images[3 * k:3 * k + 3], tmp_path / "png" / name)
    invoke("train", "--data", str(tmp_path / "png"), "--labels", "--model", "unet", "--model-opt", "base_channels=8",
           "--steps", "2", "--batch-size", "4", "--no-progress", "--out", str(tmp_path / "r4"))
    spec = ModelSpec.from_checkpoint(load_checkpoint(tmp_path / "r4"))
    assert spec.class_names == ["cat", "dog"] and spec.model_options["num_classes"] == 2
    # an image model: the class by name, and a PNG known image with a PNG mask (white = known)
    from PIL import Image

    Image.fromarray(np.full((8, 8), 255, dtype=np.uint8)).save(tmp_path / "known.png")
    mask = np.zeros((8, 8), dtype=np.uint8)
    mask[:, :4] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    res = invoke("sample", str(tmp_path / "r4"), "--sampler", "ddim", "--sampler-opt", "steps=3", "--n", "4",
                 "--class", "dog", "--guidance", "1", "--known", str(tmp_path / "known.png"), "--mask",
                 str(tmp_path / "mask.png"), "--out", str(tmp_path / "s.pt"), "--no-progress")
    assert "of class dog (guidance 1) given 32 known values" in res.output
    got = torch.load(tmp_path / "s.pt", weights_only=True)["samples"]
    assert torch.equal(got[:, :, :, :4], torch.ones(4, 1, 8, 4))


def test_image_demo_with_labels_writes_the_class_grid(tmp_path: Path) -> None:
    res = invoke("demo", "images", "--process", "vp", "--quick", "--steps", "5", "--labels", "--guidance", "0",
                 "--guidance", "3", "--out", str(tmp_path), "--no-progress")
    report = json.loads((tmp_path / "vp" / "report.json").read_text())
    sweep = report["guidance"]
    assert sweep["scales"] == [0.0, 3.0] and len(sweep["accuracy"]) == 2 and sweep["per_class"] == 4
    assert (tmp_path / "vp" / "class_grid.png").stat().st_size > 500
    assert "Class-conditional samples and classifier-free guidance" in (tmp_path / "vp" / "report.md").read_text()
    assert "requested class recognised" in res.output
    res = invoke("demo", "images", "--guidance", "2", "--quick", "--out", str(tmp_path / "x"), ok=False)
    assert res.exit_code != 0 and "needs --labels" in res.output


@pytest.mark.slow
def test_small_conditional_unet_draws_recognisable_classes(tmp_path: Path) -> None:
    """The CI-sized version of the image demo's claim: a small class-conditional UNet (base_channels=16)
    trained 150 steps on the digits; the demo's digit classifier recognises the requested class in most
    guided samples (the demo's 4-minute UNet: see docs/conditioning.md), and guidance helps."""
    from sdeflow.cli.class_demo import guidance_sweep
    from sdeflow.cli.image_demo import condition_range, digit_classifier
    from sdeflow.data.images import DIGITS_LEVELS, DequantizedImages, load_digits_split
    from sdeflow.training import Trainer

    levels, labels = load_digits_split("train", 8, return_labels=True)
    process = sdeflow.create_process("vp")
    torch.manual_seed(0)
    net = sdeflow.create_model("unet", in_channels=1, image_size=8, num_classes=10, base_channels=16,
                               cond_range=condition_range(process))
    trainer = Trainer(sdeflow.ScoreModel(net, process), DequantizedImages(levels, DIGITS_LEVELS, labels=labels),
                      steps=150, batch_size=128, lr=3e-3, warmup_steps=30, ema_decay=0.95, precision="off")
    trainer.fit()
    sweep = guidance_sweep(trainer.ema_model().eval(), sdeflow.create_sampler("dpm_solver", steps=10),
                           digit_classifier(), tmp_path, 8, scales=(0.0, 2.0), per_class=10, grid_per_cell=1)
    assert sweep.accuracy[1] > 0.5 and sweep.accuracy[1] > sweep.accuracy[0], sweep.accuracy
