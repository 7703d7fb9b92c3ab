"""``sdeflow train``: checkpoints that rebuild their model, the TOML config round trip, flags over
the file, resume, data files, and clear errors for bad flags and files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from common import invoke

import sdeflow
from sdeflow.cli.config import load_config
from sdeflow.cli.options import parse_assignments, parse_literal
from sdeflow.training import load_checkpoint, load_score_model

TINY = ["--model-opt", "hidden=8", "--model-opt", "depth=1", "--data-opt", "n=64", "--steps", "6", "--batch-size",
        "16", "--device", "cpu", "--no-progress", "--train-opt", "log_every=2"]


def weights(folder: Path) -> dict[str, torch.Tensor]:
    ckpt = load_checkpoint(folder)
    return {**{f"model.{k}": v for k, v in ckpt.section("model").items()},
            **{f"ema.{k}": v for k, v in ckpt.section("ema").items()}}


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


# --------------------------------------------------------------------------- literals
@pytest.mark.parametrize("text,value", [("10", 10), ("1e-3", 1e-3), ("true", True), ("[0.9, 0.99]", [0.9, 0.99]),
                                        ('"a b"', "a b"), ("null", None), ("dopri5", "dopri5"), ("none", "none"),
                                        ("{a = 1}", {"a": 1}), ("-inf", float("-inf"))])
def test_option_values_are_toml_or_json_literals(text: str, value: object) -> None:
    assert parse_literal(text) == value


def test_assignments_need_key_and_value() -> None:
    assert parse_assignments(["a=1", "b = x "], "--x-opt") == {"a": 1, "b": "x"}
    for bad in (["novalue"], ["=3"], ["a=1", "a=2"]):
        with pytest.raises(Exception, match="KEY=VALUE|given twice"):
            parse_assignments(bad, "--x-opt")


# --------------------------------------------------------------------------- a run
def test_train_writes_a_checkpoint_that_rebuilds_its_model(tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = invoke("train", *TINY, "--process", "subvp", "--process-opt", "beta_max=10", "--out", str(out), "--seed", "4")
    assert "step 6: loss" in res.output
    assert {"config.toml", "losses.csv", "loss.png", "step_00000006.json"} <= {p.name for p in out.iterdir()}
    manifest = load_checkpoint(out).manifest
    assert manifest["model_spec"] == {
        "process": {"name": "subvp", "options": {"beta_max": 10}},
        "model": {"name": "mlp", "options": {"hidden": 8, "depth": 1, "dim": 2}},  # dim inferred from the data
        "parametrization": "eps", "sample_shape": [2], "dtype": "float32"}
    assert manifest["metadata"]["data"] == {"name": "nine_gaussians", "options": {"n": 64}}
    assert manifest["config"]["seed"] == 4 and manifest["config"]["steps"] == 6
    ema, raw = load_score_model(out), load_score_model(out, ema=False)
    ck = load_checkpoint(out)
    for k, v in ck.section("ema").items():
        assert torch.equal(ema.state_dict()[k], v)
    for k, v in ck.section("model").items():
        assert torch.equal(raw.state_dict()[k], v)
    assert not torch.equal(ema.network.out.weight, raw.network.out.weight)
    assert ema.process.beta_max == 10 and not ema.training
    x = torch.randn(5, 2)
    assert ema.score(x, torch.full((5,), 0.5)).shape == (5, 2)
    assert load_score_model(out, dtype=torch.float64).dtype == torch.float64
    lines = (out / "losses.csv").read_text().splitlines()
    assert lines[0] == "step,loss" and [int(r.split(",")[0]) for r in lines[1:]] == [2, 4, 6]


def test_train_a_rectified_flow(tmp_path: Path) -> None:
    """``sdeflow train --process rectified_flow`` trains a velocity network by flow matching (the process's
    defaults); the config says so, ``--parametrization`` overrides it, and the checkpoint samples."""
    printed = invoke("train", "--process", "rectified_flow", "--print-config").output
    assert 'name = "rectified_flow"' in printed and 'parametrization = "velocity"' in printed
    assert 'parametrization = "eps"' in invoke("train", "--process", "vp", "--print-config").output
    assert 'parametrization = "x0"' in invoke("train", "--process", "rectified_flow", "--parametrization", "x0",
                                               "--print-config").output
    out = tmp_path / "flow"
    res = invoke("train", *TINY, "--process", "rectified_flow", "--out", str(out))
    assert "rectified_flow + mlp (velocity)" in res.output and "step 6: loss" in res.output
    assert load_checkpoint(out).manifest["model_spec"]["parametrization"] == "velocity"
    model = load_score_model(out)
    assert model.parametrization == "velocity" and model.process.t_max == 0.999
    x = sdeflow.create_sampler("ode", method="euler", steps=4).sample(model, (8, 2)).samples
    assert x.shape == (8, 2) and bool(torch.isfinite(x).all())


def test_config_round_trip_gives_an_identical_run(tmp_path: Path) -> None:
    """--save-config, then --config: the same effective config (printed identically) and
    bit-for-bit the same weights as the run from flags."""
    flags = [*TINY, "--process", "ve", "--process-opt", "sigma_max=5", "--parametrization", "x0", "--data",
             "two_moons", "--data-opt", "noise=0.05", "--train-opt", "betas=[0.8, 0.99]", "--train-opt",
             "grad_clip=none", "--train-opt", "lr_schedule=cosine", "--seed", "7", "--dtype", "float64"]
    cfg_path = tmp_path / "run.toml"
    invoke("train", *flags, "--out", str(tmp_path / "a"), "--save-config", str(cfg_path))
    assert not (tmp_path / "a").exists()  # --save-config writes the file and stops
    printed = invoke("train", *flags, "--out", str(tmp_path / "a"), "--print-config").output
    assert printed == cfg_path.read_text()
    assert invoke("train", "--config", str(cfg_path), "--print-config").output == printed  # load -> same text
    cfg = load_config(cfg_path)
    assert cfg.process_options == {"sigma_max": 5} and cfg.training["grad_clip"] is None
    assert cfg.training["betas"] == (0.8, 0.99) and cfg.data_options == {"noise": 0.05, "n": 64}
    invoke("train", *flags, "--out", str(tmp_path / "a"))
    invoke("train", "--config", str(cfg_path), "--out", str(tmp_path / "b"))
    assert_same_weights(tmp_path / "a", tmp_path / "b")
    assert load_checkpoint(tmp_path / "b").manifest["model_spec"]["parametrization"] == "x0"
    assert load_config(tmp_path / "b" / "config.toml").out == str(tmp_path / "b")


def test_flags_override_the_config_file(tmp_path: Path) -> None:
    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text('seed = 1\n[process]\nname = "vp"\n[process.options]\nbeta_max = 12.0\n'
                        '[model.options]\nhidden = 8\ndepth = 1\n[data.options]\nn = 32\n'
                        '[training]\nsteps = 4\nbatch_size = 8\nlr = 0.002\n')
    text = invoke("train", "--config", str(cfg_path), "--steps", "9", "--seed", "2", "--process-opt", "beta_min=0.2",
                  "--print-config").output
    cfg = load_config_text(tmp_path, text)
    assert cfg.training["steps"] == 9 and cfg.training["lr"] == 0.002 and cfg.seed == 2
    assert cfg.process_options == {"beta_max": 12.0, "beta_min": 0.2}  # merged
    cfg = load_config_text(tmp_path, invoke("train", "--config", str(cfg_path), "--process", "ve",
                                            "--print-config").output)
    assert cfg.process == "ve" and cfg.process_options == {}  # another process: the file's vp options dropped
    assert cfg.model_options == {"hidden": 8, "depth": 1}


def load_config_text(tmp_path: Path, text: str):
    p = tmp_path / "printed.toml"
    p.write_text(text)
    return load_config(p)


def test_resume_continues_bit_for_bit(tmp_path: Path) -> None:
    invoke("train", *TINY, "--out", str(tmp_path / "straight"), "--steps", "10")
    invoke("train", *TINY, "--out", str(tmp_path / "split"), "--steps", "5")
    res = invoke("train", *TINY, "--out", str(tmp_path / "split"), "--steps", "10")
    assert "resumed" in res.output and "step_00000005.json at step 5" in res.output
    assert_same_weights(tmp_path / "straight", tmp_path / "split")
    assert "nothing to do" in invoke("train", *TINY, "--out", str(tmp_path / "split"), "--steps", "10").output
    res = invoke("train", *TINY, "--out", str(tmp_path / "split"), "--no-resume", ok=False)
    assert res.exit_code == 2 and "already holds checkpoints" in res.output
    res = invoke("train", *TINY, "--out", str(tmp_path / "split"), "--process", "ve", "--steps", "12", ok=False)
    assert res.exit_code == 2 and "trained with another model" in res.output and "'ve'" in res.output


@pytest.mark.parametrize("suffix", [".npz", ".pt", ".npy"])
def test_train_on_a_data_file(tmp_path: Path, suffix: str) -> None:
    x = np.random.default_rng(0).normal(5.0, 2.0, size=200).astype(np.float32)  # 1-D values: (N,) -> (N, 1)
    path = tmp_path / f"data{suffix}"
    if suffix == ".npz":
        np.savez(path, other=np.zeros(3), samples=x)
    elif suffix == ".npy":
        np.save(path, x)
    else:
        torch.save({"x": torch.from_numpy(x)}, path)
    out = tmp_path / "run"
    tiny = [a for a in TINY if a != "n=64" and a != "--data-opt"]
    invoke("train", *tiny, "--data", str(path), "--out", str(out))
    spec = load_checkpoint(out).manifest["model_spec"]
    assert spec["sample_shape"] == [1] and spec["model"]["options"]["dim"] == 1


# --------------------------------------------------------------------------- bad input
BAD = [
    (["--process", "vq"], "unknown process 'vq'; valid process names: "
     + ", ".join(repr(n) for n in sdeflow.list_plugins()["process"])),
    (["--process-opt", "beta_maxx=3"], "valid options: beta_min=0.1, beta_max=20.0"),
    (["--process-opt", "beta_max"], "expected KEY=VALUE"),
    (["--model", "nope"], "unknown model 'nope'"),
    (["--model-opt", "widht=3"], "got unknown option(s) widht"),
    (["--data", "moons"], "unknown data set 'moons'; valid names: anisotropic_mixture"),
    (["--data-opt", "nois=1"], "valid options: n=None, sample_seed=0, seed=23"),
    (["--data", "missing.npz"], "data file missing.npz does not exist"),
    (["--data", "two_moons", "--data-opt", "noise=-1"], "noise must be >= 0"),
    (["--train-opt", "optimiser=adam"], "unknown training option 'optimiser'; valid: steps, batch_size"),
    (["--train-opt", "steps=ten"], "training option steps must be an integer"),
    (["--train-opt", "optimizer=rmsprop"], "optimizer must be one of adam, adamw, sgd"),
    (["--train-opt", "seed=3"], "the seed is set by --seed"),
    (["--steps", "0"], "0 is not in the range x>=1"),
    (["--dtype", "float16"], "'float16' is not one of 'float32', 'float64'"),
    (["--device", "cuda:7"], "--device"),
    (["--device", "gpu"], "'gpu' is not a device"),
    (["--parametrization", "noise"], "'noise' is not one of 'eps', 'score', 'x0', 'v'"),
    (["--bogus"], "No such option '--bogus'"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_flags_are_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    res = invoke("train", "--out", str(tmp_path / "o"), "--steps", "2", "--no-progress", *args, ok=False)
    assert res.exit_code == 2, res.output
    assert message in res.output, res.output
    assert "Traceback" not in res.output and not (tmp_path / "o").exists()


BAD_FILES = [
    ("", "config file {path} cannot be read"),
    ("steps = 3\n[training\n", "is not valid TOML"),
    ("outdir = 'x'\n", "unknown key(s) outdir; valid top-level keys: out, seed, device, dtype"),
    ("[training]\nstep = 3\n", "unknown key(s) step in [training]; valid: steps, batch_size"),
    ("[training]\nlr = 'fast'\n", "training option lr must be a number"),
    ("[process]\nname = 3\n", "[process] name must be a non-empty string"),
    ("[model]\nparametrization = 'noise'\n", "parametrization must be one of eps, score, x0, v"),
    ("[process]\nname = 'vp'\n[process.options]\nbeta_mx = 3\n", "got unknown option(s) beta_mx"),
    ("dtype = 'half'\n", "dtype must be one of float32, float64"),
]


@pytest.mark.parametrize("content,message", BAD_FILES, ids=[m.split(" ")[0] for _, m in BAD_FILES])
def test_bad_config_files_are_named_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    if content:
        path.write_text(content)
    res = invoke("train", "--config", str(path), "--out", str(tmp_path / "o"), "--no-progress", ok=False)
    assert res.exit_code == 2, res.output
    assert message.format(path=path) in res.output, res.output
    if content and "beta_mx" not in content:
        assert str(path) in res.output


def test_corrupt_data_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip file")
    res = invoke("train", "--data", str(junk), ok=False)
    assert res.exit_code == 2 and f"data file {junk} cannot be read as .npz" in res.output
    several = tmp_path / "several.npz"
    np.savez(several, a=np.zeros((3, 2)), b=np.ones((3, 2)))
    res = invoke("train", "--data", str(several), ok=False)
    assert "holds several arrays ('a', 'b'); pick one with --data-opt key=NAME" in res.output
    res = invoke("train", "--data", str(several), "--data-opt", "key=c", ok=False)
    assert "has no array 'c'; it has: 'a', 'b'" in res.output
    bad = tmp_path / "nan.npy"
    np.save(bad, np.array([[0.0, np.nan]]))
    assert "contains NaN or Inf" in invoke("train", "--data", str(bad), ok=False).output
    txt = tmp_path / "data.csv"
    txt.write_text("1,2\n")
    assert "unsupported suffix '.csv'; valid: .pt, .pth, .npz, .npy" in invoke("train", "--data", str(txt), ok=False).output


def test_component_names_come_from_the_registry() -> None:
    """The error's list of valid names is the registry's, plugins included."""
    res = invoke("train", "--process", "zzz", ok=False)
    for name in sdeflow.list_plugins()["process"]:
        assert repr(name) in res.output

