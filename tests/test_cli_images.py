"""Images on the command line: the ``digits`` data sets, PNG folders and image tensor files as
``--data``, UNet training under VP and VDM, image-grid samples decoded by VDM's ``p(x | z_0)``,
``sdeflow demo images``, and clear errors for bad image data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from common import invoke
from PIL import Image

import sdeflow
from sdeflow.cli.data import resolve_data
from sdeflow.data.images import DequantizedImages, levels_to_signed, load_digits_split, save_images
from sdeflow.training import load_checkpoint

#: a UNet small enough for a few CPU steps (48k parameters at 8x8)
UNET = ["--model", "unet", "--model-opt", "base_channels=8", "--steps", "2", "--batch-size", "8", "--device", "cpu",
        "--no-progress", "--train-opt", "log_every=1"]
LEVELS17 = levels_to_signed(torch.arange(17), 16)


@pytest.fixture(scope="module")
def vdm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("img") / "vdm"
    invoke("train", "--process", "vdm", "--process-opt", "hidden=16", *UNET, "--data", "digits", "--data-opt", "n=64",
           "--out", str(out))
    return out


# --------------------------------------------------------------------------- digits
def test_digits_sets_follow_the_process() -> None:
    """``digits`` is dequantized for a continuous process, the level grid for vdm (17 levels)."""
    d = resolve_data("digits", {}, torch.float32)
    assert isinstance(d.data, DequantizedImages) and d.bins == 17 and d.sample_shape == (1, 8, 8) and d.size == 1438
    assert d.for_process(sdeflow.create_process("vp")) is d
    grid = d.for_process(sdeflow.create_process("vdm", bins=17, hidden=16)).data
    assert torch.equal(grid, levels_to_signed(load_digits_split("train"), 16))
    assert resolve_data("digits16", {"split": "test"}, torch.float32).sample_shape == (1, 16, 16)
    assert resolve_data("digits", {"size": 12, "split": "all", "n": 5}, torch.float64).data.levels.shape == (5, 1, 12, 12)
    # each held-out image dequantized once, in its bin
    rows = resolve_data("digits", {"split": "test"}, torch.float64).rows(None, torch.Generator().manual_seed(0))
    k = load_digits_split("test").to(torch.float64)
    assert rows.shape == (359, 1, 8, 8) and bool(((rows + 1) * 17 / 2 - k).clamp(0, 1).eq((rows + 1) * 17 / 2 - k).all())


def test_train_vdm_unet_on_digits_and_sample_a_decoded_grid(vdm_run: Path, tmp_path: Path) -> None:
    spec = load_checkpoint(vdm_run).manifest["model_spec"]
    assert spec["process"]["name"] == "vdm" and spec["process"]["options"]["bins"] == 17  # inferred from the data
    assert spec["model"]["options"]["in_channels"] == 1 and spec["model"]["options"]["image_size"] == 8
    assert spec["sample_shape"] == [1, 8, 8]
    out = tmp_path / "s.npz"
    res = invoke("sample", str(vdm_run), "--sampler", "ancestral", "--sampler-opt", "steps=3", "--sampler-opt",
                 "denoise=false", "--n", "4", "--out", str(out), "--no-progress")
    assert "decoded by p(x | z_0) (mode)" in res.output and "image grid" in res.output
    with np.load(out) as f:
        x, meta = torch.from_numpy(f["samples"]), json.loads(str(f["meta"]))
    assert x.shape == (4, 1, 8, 8) and meta["decoded"] == "mode"
    assert torch.isin(x, LEVELS17).all()  # on the 17 levels
    with Image.open(out.with_suffix(".png")) as img:  # 2 x 2 grid, 8x8 images enlarged 4x, 2 px padding
        assert img.size == (2 * 34 + 2, 2 * 34 + 2) and img.mode == "L"
    raw = tmp_path / "raw.pt"
    invoke("sample", str(vdm_run), "--sampler", "ancestral", "--sampler-opt", "steps=3", "--sampler-opt",
           "denoise=false", "--n", "4", "--out", str(raw), "--decode", "none", "--no-plot", "--no-progress")
    z = torch.load(raw, weights_only=True)
    assert z["decoded"] is None and not torch.isin(z["samples"], LEVELS17).all()
    assert torch.equal(sdeflow.load_score_model(vdm_run).process.decode(z["samples"]), x)  # same seed, same z_0


def test_train_vp_on_digits16_and_its_likelihood_reports_discrete_bits(tmp_path: Path) -> None:
    out = tmp_path / "vp"
    invoke("train", "--process", "vp", *UNET, "--data", "digits16", "--data-opt", "n=16", "--out", str(out))
    assert load_checkpoint(out).manifest["model_spec"]["sample_shape"] == [1, 16, 16]
    res = invoke("likelihood", str(out), "-n", "2", "--estimator", "hutchinson", "--rtol", "1e-2", "--atol", "1e-2",
                 "--no-progress")
    assert "discrete (17 levels in [-1.0, 1.0]" in res.output


# --------------------------------------------------------------------------- files and folders
def test_png_folder_and_image_tensor_files_as_data(tmp_path: Path) -> None:
    imgs = levels_to_signed(load_digits_split("train")[:6], 16)
    folder = tmp_path / "pngs"
    save_images(imgs, folder)
    d = resolve_data(str(folder), {}, torch.float32)
    assert d.sample_shape == (1, 8, 8) and d.data.shape[0] == 6
    assert resolve_data(str(folder), {"n": 2, "size": 16, "channels": 3}, torch.float32).data.shape == (2, 3, 16, 16)
    invoke("train", "--process", "vp", *UNET, "--data", str(folder), "--out", str(tmp_path / "run"))
    assert load_checkpoint(tmp_path / "run").manifest["model_spec"]["model"]["options"]["image_size"] == 8
    # uint8 channels-last -> (N, C, H, W) in [-1, 1]; floats mapped from value_range; floats without it as they are
    u8 = (np.arange(5 * 4 * 4 * 3) % 256).astype(np.uint8).reshape(5, 4, 4, 3)
    np.savez(tmp_path / "u8.npz", images=u8, labels=np.arange(5))
    x = resolve_data(str(tmp_path / "u8.npz"), {}, torch.float32).data
    assert x.shape == (5, 3, 4, 4) and torch.equal(x, torch.from_numpy(u8).permute(0, 3, 1, 2).float() * (2 / 255) - 1)
    f01 = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    torch.save(f01, tmp_path / "f.pth")
    mapped = resolve_data(str(tmp_path / "f.pth"), {"value_range": [0, 1]}, torch.float64).data
    torch.testing.assert_close(mapped, f01.double() * 2 - 1)
    assert torch.equal(resolve_data(str(tmp_path / "f.pth"), {}, torch.float32).data, f01)


BAD = [
    (["--data", "digits", "--data-opt", "split=val"], "unknown digits split 'val'; valid: train, test, all"),
    (["--data", "digits", "--data-opt", "size=4"], "size must be an integer >= 8"),
    (["--data", "digits", "--data-opt", "n=0"], "n must be an integer in [1, 1438]"),
    (["--data", "digits", "--data-opt", "scale=2"], "valid options: size=8, split='train', n=None"),
    (["--data", "digits", "--process", "vdm", "--process-opt", "bins=256"],
     "the process models 256 levels but data set 'digits' has 17; pass --process-opt bins=17"),
    (["--data", "nowhere/"], "does not exist"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_image_flags_are_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    res = invoke("train", *UNET, "--out", str(tmp_path / "o"), *args, ok=False)
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output, res.output


def test_bad_image_files_and_folders(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no files matching '*.png'" in invoke("train", "--data", str(empty), ok=False).output
    mixed = tmp_path / "mixed"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    mixed.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(mixed / "a.png")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(mixed / "b.png")
    assert "differ in size (a.png is 8x8, b.png is 4x4)" in invoke("train", "--data", str(mixed), ok=False).output
    res = invoke("train", "--data", str(mixed), "--data-opt", "key=x", ok=False)
    assert "an image folder takes options channels, size, pattern, n; got key" in res.output
    np.save(tmp_path / "i32.npy", np.zeros((2, 1, 4, 4), np.int32))
    assert "must be uint8 (0..255) or floating" in invoke("train", "--data", str(tmp_path / "i32.npy"), ok=False).output
    np.save(tmp_path / "f.npy", np.full((2, 1, 4, 4), 3.0, np.float32))
    res = invoke("train", "--data", str(tmp_path / "f.npy"), "--data-opt", "value_range=[0, 1]", ok=False)
    assert "outside value_range=(0, 1)" in res.output
    np.save(tmp_path / "cube.npy", np.zeros((2, 3, 3, 3), np.float32))
    assert "pass layout='nchw' or layout='nhwc'" in invoke("train", "--data", str(tmp_path / "cube.npy"), ok=False).output
    np.save(tmp_path / "flat.npy", np.zeros((4, 2), np.float32))
    res = invoke("train", "--data", str(tmp_path / "flat.npy"), "--data-opt", "layout=nhwc", ok=False)
    assert "layout apply to image arrays" in res.output
    for res in [invoke("train", "--data", str(p), ok=False) for p in (empty, mixed, tmp_path / "cube.npy")]:
        assert res.exit_code == 2 and "Traceback" not in res.output


# --------------------------------------------------------------------------- the image demo
def test_demo_images_writes_grids_reports_and_a_summary(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    res = invoke("demo", "images", "--quick", "--steps", "2", "--process", "vdm", "--process", "vp", "-n", "4",
                 "--n-eval", "4", "--out", str(out), "--no-progress", "--sampler-opt", "steps=4")
    for name in ("vdm", "vp"):
        report = json.loads((out / name / "report.json").read_text())
        assert report["steps"] == 2 and report["process"] == name and (out / name / "grid.png").is_file()
        assert load_checkpoint(out / name / "model").step == 2
    assert json.loads((out / "vdm" / "report.json").read_text())["sampler"] == "ancestral"
    summary = (out / "summary.md").read_text()
    assert "| vdm | 2 |" in summary and "| vp | 2 |" in summary and summary.strip() in res.output


def test_demo_images_bad_flags(tmp_path: Path) -> None:
    res = invoke("demo", "images", "--process", "nope", ok=False)
    assert res.exit_code == 2 and "unknown process(es) nope; valid: " in res.output
    res = invoke("demo", "images", "--sampler", "ancestral", "--sampler-opt", "stepz=3", ok=False)
    assert res.exit_code == 2 and "unknown option(s) stepz" in res.output
    res = invoke("demo", "--quick", "images", ok=False)
    assert res.exit_code == 2 and "--quick belong(s) to `sdeflow demo` itself" in res.output
    res = invoke("demo", "images", "--minutes", "0", ok=False)
    assert res.exit_code == 2 and "0" in res.output


def test_demo_flag_images_runs_the_image_demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``sdeflow demo --images`` is ``sdeflow demo images`` with its defaults (vp, vdm and rectified_flow, out folder
    image_demo_out unless --out), forwarding --steps, --quick, -n and the common options; the runs
    here are shrunk (sampler steps) through the recorded call."""
    import sdeflow.cli.image_demo as image_demo

    real, calls = image_demo.run_image_demo, []

    def run(out_dir, process, **kwargs):  # type: ignore[no-untyped-def]
        calls.append((Path(out_dir), process, kwargs))
        return real(out_dir, process, **{**kwargs, "sampler_options": {"steps": 3}, "n_eval": 4})

    monkeypatch.setattr(image_demo, "run_image_demo", run)
    monkeypatch.chdir(tmp_path)
    res = invoke("demo", "--images", "--quick", "--steps", "2", "-n", "16", "--seed", "3", "--no-progress")
    assert [(o, p) for o, p, _ in calls] == [(Path("image_demo_out/vp"), "vp"), (Path("image_demo_out/vdm"), "vdm"),
                                            (Path("image_demo_out/rectified_flow"), "rectified_flow")]
    kw = calls[0][2]
    assert kw["steps"] == 2 and kw["n_samples"] == 16 and kw["seed"] == 3 and kw["model_options"] == {"base_channels": 8}
    assert (tmp_path / "image_demo_out" / "summary.md").is_file() and "| vdm | 2 |" in res.output
    assert "| rectified_flow | 2 |" in res.output
