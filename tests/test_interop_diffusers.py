"""``sdeflow.interop.from_diffusers``: diffusers checkpoints as sdeflow score models (offline, tiny models).

A randomly initialised ``UNet2DModel`` of about 10k parameters is saved with ``save_pretrained`` into
a temporary folder and loaded back. What is shown:

* the process reproduces every scheduler's ``alphas_cumprod`` (per beta schedule, to 1e-6);
* the time map sends ``t = 1/N`` to timestep 0 and ``t = 1`` to ``N - 1``;
* sdeflow's ``ddim`` and ``dpm_solver`` on diffusers' own timesteps equal diffusers'
  ``DDIMScheduler`` / ``DPMSolverMultistepScheduler`` loops from the same ``x_T`` to float32 round-off,
  for every prediction type (so schedule, time map and parametrizations are exact);
* epsilon, sample and v_prediction checkpoints give the same ODE solution as the eps model;
* every sampler and ``log_likelihood`` run on the loaded model with the NFE counted;
* bad input is a clear ``SdeflowError`` naming what is supported.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

import sdeflow
from sdeflow.errors import CheckpointError, IncompatibleError, MissingDependencyError, OptionError
from sdeflow.interop import from_diffusers, network_timestep, save_diffusers, time_of_timestep, timestep_schedule

diffusers = pytest.importorskip("diffusers")
pytestmark = [pytest.mark.usefixtures("single_thread"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]  # numpy 2 notes inside diffusers

N = 1000
SHAPE = (3, 1, 8, 8)
#: float32 round-off accumulated over a loop: diffusers keeps alphas_cumprod in float32, sdeflow
#: evaluates its schedule at float32 times; measured 3e-7..4e-6 relative to the largest value
ROUND_OFF = 1e-5


def tiny_unet(seed: int = 0, out_channels: int = 1, **extra: Any) -> Any:
    """A UNet2DModel of about 10k parameters on 8x8 single-channel images."""
    torch.manual_seed(seed)
    return diffusers.UNet2DModel(sample_size=8, in_channels=1, out_channels=out_channels, block_out_channels=(4, 8),
                                 layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=2, **extra)


def save_pipeline(path: Path, unet: Any, scheduler: Any) -> Path:
    diffusers.DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(str(path), safe_serialization=True)
    return path


def x_T(seed: int = 1) -> torch.Tensor:
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_pipeline(tmp_path_factory.mktemp("pipe"), tiny_unet(), diffusers.DDIMScheduler())


def diffusers_loop(unet: Any, scheduler: Any, x: torch.Tensor) -> torch.Tensor:
    """diffusers' own sampling loop (as its pipelines run it)."""
    with torch.no_grad():
        for k in scheduler.timesteps:
            x = scheduler.step(unet(scheduler.scale_model_input(x, k), k).sample, k, x).prev_sample
    return x


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


# ------------------------------------------------------------------------------- the schedule
SCHEDULES = [
    ("DDIMScheduler", dict(beta_schedule="linear")),
    ("DDIMScheduler", dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)),
    ("DDIMScheduler", dict(beta_schedule="squaredcos_cap_v2")),
    ("DDPMScheduler", dict(beta_schedule="sigmoid", beta_start=1e-4, beta_end=0.02)),
    ("DDIMScheduler", dict(trained_betas=torch.linspace(2e-4, 0.03, 500).tolist(), num_train_timesteps=500)),
    ("DDIMScheduler", dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                           rescale_betas_zero_snr=True)),
    ("DDPMScheduler", dict(beta_schedule="linear", rescale_betas_zero_snr=True, num_train_timesteps=200)),
]


@pytest.mark.parametrize("cls,kw", SCHEDULES, ids=[f"{c}-{next(iter(k.values())) if 'trained_betas' not in k else 'trained'}"
                                                   f"{'-zero_snr' if k.get('rescale_betas_zero_snr') else ''}"
                                                   for c, k in SCHEDULES])
def test_alpha_bar_equals_alphas_cumprod(cls: str, kw: dict[str, Any]) -> None:
    scheduler = getattr(diffusers, cls)(**kw)
    sm = from_diffusers(tiny_unet(), scheduler=scheduler)
    n = scheduler.config.num_train_timesteps
    assert sm.process.num_steps == n and sm.process.t_min == pytest.approx(1.0 / n)
    t = time_of_timestep(torch.arange(n), n)
    a, s = sm.process.marginal(t)
    want = scheduler.alphas_cumprod.double()
    assert float((a * a - want).abs().max()) < 1e-6
    assert float((a * a + s * s - 1).abs().max()) < 1e-12  # variance preserving
    if kw.get("rescale_betas_zero_snr"):
        assert float(a[-1] ** 2) <= 2.0 ** -24  # diffusers' terminal 0, kept finite


def test_time_map_end_points(pipeline: Path) -> None:
    sm = from_diffusers(pipeline)
    assert float(network_timestep(torch.tensor(1.0 / N, dtype=torch.float64), N)) == 0.0
    assert float(network_timestep(torch.tensor(1.0, dtype=torch.float64), N)) == N - 1
    assert float(time_of_timestep(0, N)) == pytest.approx(1.0 / N) and float(time_of_timestep(N - 1, N)) == 1.0
    seen: list[torch.Tensor] = []
    sm.network.model.register_forward_pre_hook(lambda mod, args: seen.append(args[1].detach().clone()))
    x = x_T().double()
    sm = sm.double()
    with torch.no_grad():
        sm.eps(x, torch.full((SHAPE[0],), sm.process.t_min, dtype=torch.float64))
        sm.eps(x, torch.full((SHAPE[0],), 1.0, dtype=torch.float64))
        sm.eps(x, time_of_timestep(torch.tensor([0, 499, 999]), N))
    assert float(seen[0].abs().max()) < 1e-12 and float((seen[1] - (N - 1)).abs().max()) < 1e-9
    assert torch.allclose(seen[2], torch.tensor([0.0, 499.0, 999.0], dtype=torch.float64), atol=1e-9)


# ------------------------------------------------------------------------------- equal to diffusers' loops
PREDICTIONS = ["epsilon", "sample", "v_prediction"]


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_ddim_equals_diffusers_ddim(tmp_path: Path, prediction: str) -> None:
    unet = tiny_unet(seed=3)
    sched = diffusers.DDIMScheduler(timestep_spacing="trailing", clip_sample=False, prediction_type=prediction)
    sm = from_diffusers(save_pipeline(tmp_path / "p", unet, sched))
    # diffusers' DDIM steps from k to k - N // steps (not to its next timestep), so its loop walks its
    # own timesteps only when steps divides N
    for steps in (10, 25):
        sched.set_timesteps(steps)
        want = diffusers_loop(unet, sched, x_T())
        res = sdeflow.create_sampler("ddim", **timestep_schedule(sm, sched.timesteps)).sample(sm, SHAPE, x_T=x_T())
        assert res.nfe == steps
        assert rel_err(res.samples, want) < ROUND_OFF, f"{prediction}, {steps} steps: {rel_err(res.samples, want):.2e}"


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_dpm_solver_2m_equals_diffusers(tmp_path: Path, prediction: str) -> None:
    unet = tiny_unet(seed=4)
    sched = diffusers.DPMSolverMultistepScheduler(solver_order=2, algorithm_type="dpmsolver++", prediction_type=prediction)
    sm = from_diffusers(save_pipeline(tmp_path / "p", unet, sched))
    for steps in (10, 20):
        sched.set_timesteps(steps)
        want = diffusers_loop(unet, sched, x_T())
        # diffusers lowers the order only on its last step (to sigma = 0: sdeflow's denoise)
        opts = dict(timestep_schedule(sm, sched.timesteps), lower_order_final=False)
        res = sdeflow.create_sampler("dpm_solver", **opts).sample(sm, SHAPE, x_T=x_T())
        assert res.nfe == steps
        assert rel_err(res.samples, want) < ROUND_OFF, f"{prediction}, {steps} steps: {rel_err(res.samples, want):.2e}"


def test_timestep_schedule_refuses_leading_spacing(pipeline: Path) -> None:
    sm = from_diffusers(pipeline)
    sched = diffusers.DDIMScheduler()  # timestep_spacing="leading": starts at 900 for 10 steps
    sched.set_timesteps(10)
    with pytest.raises(OptionError, match="first timestep must be N - 1"):
        timestep_schedule(sm, sched.timesteps)


# ------------------------------------------------------------------------------- parametrizations
class Converted(torch.nn.Module):
    """An eps UNet whose output is converted by hand to ``sample`` or ``v_prediction``."""

    def __init__(self, unet: Any, process: Any, prediction: str) -> None:
        super().__init__()
        self.unet, self.prediction, self.config = unet, prediction, unet.config
        self.process = [process]  # not a submodule

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor) -> SimpleNamespace:
        eps = self.unet(sample, timestep).sample
        a, s = self.process[0].marginal(time_of_timestep(timestep, N).to(sample.dtype))
        a, s = a.reshape(-1, 1, 1, 1), s.reshape(-1, 1, 1, 1)
        x0 = (sample - s * eps) / a
        return SimpleNamespace(sample=x0 if self.prediction == "sample" else a * eps - s * x0)


def test_prediction_types_give_the_same_ode_solution() -> None:
    unet = tiny_unet(seed=5).double()
    base = from_diffusers(unet, scheduler=diffusers.DDIMScheduler())
    x = x_T().double()
    # the same fixed-step method evaluates all three at the same times: any difference is the conversion's
    ode = sdeflow.create_sampler("ode", method="rk4", steps=10)
    ref = ode.sample(base, SHAPE, x_T=x)
    for prediction, parametrization in (("sample", "x0"), ("v_prediction", "v")):
        model = Converted(unet, base.process, prediction)
        sm = from_diffusers(model, scheduler=diffusers.DDIMScheduler(prediction_type=prediction))
        assert sm.parametrization == parametrization
        t = torch.full((SHAPE[0],), 0.37, dtype=torch.float64)
        with torch.no_grad():
            assert torch.allclose(sm.score(x, t), base.score(x, t), rtol=1e-9, atol=1e-9)
        res = ode.sample(sm, SHAPE, x_T=x)
        assert res.nfe == ref.nfe == 40
        assert rel_err(res.samples, ref.samples) < 1e-9, prediction


# ------------------------------------------------------------------------------- every sampler, the likelihood
def _small(name: str) -> dict[str, Any]:
    if name == "ode":
        return dict(method="euler", steps=4)
    if name == "langevin":
        return dict(num_scales=3, n_steps_each=1)
    return dict(steps=4) if "steps" in sdeflow.component_options("sampler", name) else {}


@pytest.mark.parametrize("name", sdeflow.list_plugins()["sampler"])
def test_every_sampler_runs_on_the_loaded_model(pipeline: Path, name: str) -> None:
    sm = from_diffusers(pipeline)
    calls = [0]
    sm.network.model.register_forward_hook(lambda *a: calls.__setitem__(0, calls[0] + 1))
    model = sm
    if name == "repaint":  # inpainting: the left half of every image is known
        mask = torch.zeros(SHAPE[1:], dtype=torch.bool)
        mask[..., : SHAPE[-1] // 2] = True
        model = sm.given(mask=mask, values=torch.zeros(SHAPE[1:]))
    res = sdeflow.create_sampler(name, **_small(name)).sample(model, SHAPE, torch.Generator().manual_seed(0), x_T=x_T())
    assert res.samples.shape == SHAPE and res.samples.dtype == torch.float32
    assert bool(torch.isfinite(res.samples).all())
    assert res.nfe == calls[0] > 0


def test_log_likelihood_runs_on_the_loaded_model(pipeline: Path) -> None:
    sm = from_diffusers(pipeline)
    x = torch.rand(SHAPE, generator=torch.Generator().manual_seed(2)) * 2 - 1
    res = sdeflow.log_likelihood(sm, x, method="rk4", steps=4, estimator="hutchinson",
                                 generator=torch.Generator().manual_seed(0))
    assert res.log_prob.shape == (SHAPE[0],) and bool(torch.isfinite(res.log_prob).all())
    assert res.nfe > 0


# ------------------------------------------------------------------------------- layouts, saving, training
def test_layouts_load_the_same_model(tmp_path: Path, pipeline: Path) -> None:
    ref = from_diffusers(pipeline)
    x, t = x_T(), torch.full((SHAPE[0],), 0.5)
    with torch.no_grad():
        want = ref.eps(x, t)
        assert torch.equal(from_diffusers(pipeline, subfolder="unet").eps(x, t), want)
        assert torch.equal(from_diffusers(pipeline / "unet").eps(x, t), want)  # scheduler/ beside it
        folder = tmp_path / "model"
        ref.network.model.save_pretrained(str(folder), safe_serialization=True)
        assert torch.equal(from_diffusers(folder, scheduler=pipeline / "scheduler").eps(x, t), want)
        assert torch.equal(from_diffusers(folder, scheduler=pipeline / "scheduler" / "scheduler_config.json").eps(x, t),
                           want)
        cfg = json.loads((pipeline / "scheduler" / "scheduler_config.json").read_text())
        assert torch.equal(from_diffusers(folder, scheduler=cfg).eps(x, t), want)
        (folder / "scheduler_config.json").write_text(json.dumps(cfg))  # a model folder with its config
        assert torch.equal(from_diffusers(folder).eps(x, t), want)
        f64 = from_diffusers(pipeline, dtype=torch.float64)
        assert f64.dtype == torch.float64
    assert ref.network.sample_shape == (1, 8, 8)


def test_learned_variance_keeps_the_prediction(tmp_path: Path) -> None:
    unet = tiny_unet(out_channels=2)
    sm = from_diffusers(unet, scheduler=diffusers.DDPMScheduler(variance_type="learned_range"))
    x = x_T()
    with torch.no_grad():
        out = sm.eps(x, torch.full((SHAPE[0],), 0.3))
        full = unet(x, network_timestep(torch.full((SHAPE[0],), 0.3), N)).sample
    assert torch.allclose(out, full[:, :1], atol=1e-6)


def test_train_save_and_load_back(tmp_path: Path) -> None:
    from sdeflow.training import Trainer

    sm = from_diffusers(tiny_unet(seed=7), scheduler=diffusers.DDPMScheduler(num_train_timesteps=100))
    data = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    before = [p.detach().clone() for p in sm.network.parameters()]
    trainer = Trainer(sm, data, steps=5, batch_size=16, lr=1e-3, ema_decay=0.5)
    result = trainer.fit()
    assert result.step == 5 and all(math.isfinite(v) for _, v in result.losses)
    assert any(not torch.equal(a, b) for a, b in zip(before, sm.network.parameters()))
    out = save_diffusers(trainer.ema_model(), tmp_path / "trained")
    assert sorted(p.name for p in out.iterdir()) == ["model_index.json", "scheduler", "unet"]
    assert list((out / "unet").glob("*.safetensors")) and not list((out / "unet").glob("*.bin"))
    # diffusers reads it back
    pipe = diffusers.DDPMPipeline.from_pretrained(str(out), use_safetensors=True)
    ema = trainer.ema_model().network.model
    for (k, a), b in zip(ema.state_dict().items(), pipe.unet.state_dict().values()):
        assert torch.equal(a, b), k
    assert pipe.scheduler.config.num_train_timesteps == 100
    images = pipe(batch_size=1, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np").images
    assert images.shape == (1, 8, 8, 1)
    # and so does sdeflow
    back = from_diffusers(out)
    x, t = x_T(), torch.full((SHAPE[0],), 0.5)
    with torch.no_grad():
        assert torch.equal(back.eps(x, t), trainer.ema_model().eps(x, t))
    with pytest.raises(CheckpointError, match="not empty"):
        save_diffusers(back, out)
    save_diffusers(back, out, overwrite=True)
    with pytest.raises(IncompatibleError, match="DiffusersNetwork"):
        save_diffusers(sdeflow.ScoreModel(sdeflow.create_model("mlp", dim=2), sdeflow.create_process("vp")), tmp_path / "x")


# ------------------------------------------------------------------------------- bad input
def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such folder"):
        from_diffusers(tmp_path / "nope")


def test_folder_without_scheduler_config(tmp_path: Path) -> None:
    tiny_unet().save_pretrained(str(tmp_path / "m"), safe_serialization=True)
    with pytest.raises(CheckpointError, match="no scheduler configuration.*pass scheduler="):
        from_diffusers(tmp_path / "m")
    with pytest.raises(CheckpointError, match="neither a diffusers model folder"):
        from_diffusers(tmp_path)
    with pytest.raises(CheckpointError, match="carries no noise schedule"):
        from_diffusers(tiny_unet())


@pytest.mark.parametrize("key,value,match", [
    ("beta_schedule", "laplace", "beta_schedule 'laplace' is not supported; supported: linear, scaled_linear, "
                                 "squaredcos_cap_v2, sigmoid"),
    ("prediction_type", "flow_prediction", "prediction_type 'flow_prediction' is not supported; supported: epsilon"),
    ("_class_name", "ScoreSdeVeScheduler", "does not discretise the DDPM chain.*supported: DDPMScheduler"),
    ("_class_name", "FlowMatchEulerDiscreteScheduler", "from_function"),
    ("num_train_timesteps", 1.5, "num_train_timesteps must be an integer"),
])
def test_bad_scheduler_configs(pipeline: Path, key: str, value: Any, match: str) -> None:
    cfg = json.loads((pipeline / "scheduler" / "scheduler_config.json").read_text())
    cfg[key] = value
    with pytest.raises(IncompatibleError, match=match):
        from_diffusers(pipeline, scheduler=cfg)


def test_pickled_weights_and_class_conditional_models_are_refused(tmp_path: Path) -> None:
    tiny_unet().save_pretrained(str(tmp_path / "bin"), safe_serialization=False)
    with pytest.raises(CheckpointError, match="safetensors"):
        from_diffusers(tmp_path / "bin", scheduler=diffusers.DDPMScheduler())
    with pytest.raises(IncompatibleError, match="class-conditional"):
        from_diffusers(tiny_unet(num_class_embeds=3), scheduler=diffusers.DDPMScheduler())
    with pytest.raises(OptionError, match="unknown option.*valid: device, dtype, variant"):
        from_diffusers(tiny_unet(), scheduler=diffusers.DDPMScheduler(), trust_remote_code=True)


def test_without_diffusers_the_error_says_how_to_install(monkeypatch: pytest.MonkeyPatch, pipeline: Path) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "diffusers" else real(name, *a))
    with pytest.raises(MissingDependencyError, match=r'pip install "sdeflow\[diffusers\]"'):
        from_diffusers(pipeline)
