"""The Trainer loop (warm-up, clipping, EMA, data order, callbacks, NaN handling, precision) and
the toy data sets of sdeflow.data.datasets."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import sdeflow
from sdeflow.data.datasets import checkerboard, gaussian_1d, nine_gaussians, swiss_roll, two_moons
from sdeflow.errors import NonFiniteError, OptionError, ShapeError
from sdeflow.training import EMA, BatchSource, Trainer, load_checkpoint

F64 = torch.float64


def make_model(dim: int = 2, dtype: torch.dtype = torch.float32, process: str = "vp") -> sdeflow.ScoreModel:
    torch.manual_seed(0)
    net = sdeflow.create_model("mlp", dim=dim, hidden=16, depth=1).to(dtype)
    return sdeflow.ScoreModel(net, sdeflow.create_process(process))


def data2d(n: int = 64) -> torch.Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(0))


class Recorder:
    """A loss_fn wrapper that records, per step, the batch and the learning rate in force."""

    def __init__(self) -> None:
        self.trainer: Trainer | None = None
        self.batches: list[torch.Tensor] = []
        self.lrs: list[float] = []

    def __call__(self, model, x0, generator):
        self.batches.append(x0.clone())
        self.lrs.append(self.trainer.optimizer.param_groups[0]["lr"])
        return model.loss(x0, generator)


def recorded(data, **options) -> tuple[Trainer, Recorder]:
    rec = Recorder()
    tr = Trainer(make_model(), data, loss_fn=rec, **options)
    rec.trainer = tr
    return tr, rec


# --------------------------------------------------------------------------- schedule, clipping, EMA
def test_warmup_is_linear_then_constant() -> None:
    tr, rec = recorded(data2d(), steps=12, batch_size=8, lr=0.02, warmup_steps=5)
    tr.fit()
    expected = [0.02 * min(1.0, s / 5) for s in range(1, 13)]
    assert rec.lrs == pytest.approx(expected, rel=1e-12)
    tr, rec = recorded(data2d(), steps=3, batch_size=8, lr=0.02)
    tr.fit()
    assert rec.lrs == [0.02] * 3


def test_cosine_schedule_after_warmup() -> None:
    """Step s (1-based) after w warm-up steps: lr (m + (1 - m) (1 + cos(pi (s - w) / (S - w + 1))) / 2)."""
    tr, rec = recorded(data2d(), steps=12, batch_size=8, lr=0.02, warmup_steps=4, lr_schedule="cosine",
                       min_lr_ratio=0.1)
    tr.fit()
    expected = [0.02 * s / 4 if s < 4 else
                0.02 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (s - 4) / 9))) for s in range(1, 13)]
    assert rec.lrs == pytest.approx(expected, rel=1e-12)
    assert rec.lrs[-1] > 0.002 and all(b <= a for a, b in zip(rec.lrs[3:], rec.lrs[4:]))


def _linear_loss(scale: float):
    """``scale * sum(params)``: every gradient entry equals ``scale``."""
    return lambda model, x0, g: scale * sum(p.sum() for p in model.parameters())


@pytest.mark.parametrize("scale,clip", [(1000.0, 1.0), (1000.0, None), (1e-4, 1.0)])
def test_gradient_clipping_bounds_the_global_norm(scale: float, clip: float | None) -> None:
    """With plain SGD (lr 0.1, no momentum) one step moves the weights by exactly lr * clipped gradient."""
    model = make_model()
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    tr = Trainer(model, data2d(), loss_fn=_linear_loss(scale), steps=1, batch_size=8, optimizer="sgd", momentum=0.0,
                 lr=0.1, grad_clip=clip, ema_decay=None)
    tr.fit()
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    raw_norm = scale * math.sqrt(before.numel())
    expected = 0.1 * (min(raw_norm, clip) if clip is not None else raw_norm)
    assert float((after - before).norm()) == pytest.approx(expected, rel=1e-4)


def ema_closed_form(thetas: list[torch.Tensor], decay: float, warmup: bool) -> torch.Tensor:
    """``theta_bar_k = prod_j d_j theta_0 + sum_j (1 - d_j) prod_{i>j} d_i theta_j`` with
    ``d_j = min(decay, j / (9 + j))`` (warm-up) or ``decay``, ``j = 1..k``."""
    k = len(thetas) - 1
    d = [min(decay, j / (9.0 + j)) if warmup else decay for j in range(1, k + 1)]
    out = math.prod(d) * thetas[0]
    for j in range(1, k + 1):
        out = out + (1 - d[j - 1]) * math.prod(d[j:]) * thetas[j]
    return out


@pytest.mark.parametrize("warmup", [True, False])
def test_ema_class_matches_closed_form(warmup: bool) -> None:
    lin = torch.nn.Linear(3, 2).to(F64)
    ema = EMA(lin, decay=0.8, warmup=warmup)
    gen = torch.Generator().manual_seed(0)
    thetas = [torch.cat([lin.weight.detach().flatten(), lin.bias.detach()]).clone()]
    for _ in range(7):
        with torch.no_grad():
            lin.weight.copy_(torch.randn(2, 3, generator=gen, dtype=F64))
            lin.bias.copy_(torch.randn(2, generator=gen, dtype=F64))
        ema.update(lin)
        thetas.append(torch.cat([lin.weight.detach().flatten(), lin.bias.detach()]).clone())
    got = torch.cat([ema.shadow["weight"].flatten(), ema.shadow["bias"]])
    torch.testing.assert_close(got, ema_closed_form(thetas, 0.8, warmup), rtol=1e-13, atol=1e-13)
    assert ema.num_updates == 7
    averaged = ema.averaged_model(lin)
    assert torch.equal(averaged.weight, ema.shadow["weight"]) and not torch.equal(lin.weight, averaged.weight)


def test_trainer_ema_matches_closed_form_over_the_trained_weights() -> None:
    model = make_model(dtype=F64)
    thetas = [torch.nn.utils.parameters_to_vector(model.parameters()).detach().clone()]

    def record(trainer: Trainer, step: int) -> None:
        thetas.append(torch.nn.utils.parameters_to_vector(trainer.model.parameters()).detach().clone())

    tr = Trainer(model, data2d(), steps=9, batch_size=8, lr=0.05, ema_decay=0.7, eval_every=1, callbacks=[record])
    tr.fit()
    assert len(thetas) == 10
    ema_params = tr.ema_model()
    got = torch.nn.utils.parameters_to_vector(ema_params.parameters()).detach()
    torch.testing.assert_close(got, ema_closed_form(thetas, 0.7, True), rtol=1e-12, atol=1e-12)
    assert tr.ema_model() is not tr.model
    no_ema = Trainer(make_model(), data2d(), ema_decay=None)
    assert no_ema.ema is None and no_ema.ema_model() is no_ema.model


def test_ema_rejects_bad_decay() -> None:
    with pytest.raises(ValueError, match="decay"):
        EMA(torch.nn.Linear(1, 1), decay=1.0)


# --------------------------------------------------------------------------- data
def test_tensor_data_order_is_seeded_and_covers_each_epoch() -> None:
    data = torch.arange(50 * 2, dtype=torch.float32).reshape(50, 2)
    a, ra = recorded(data, steps=8, batch_size=16, seed=3)
    b, rb = recorded(data, steps=8, batch_size=16, seed=3)
    c, rc = recorded(data, steps=8, batch_size=16, seed=4)
    for tr in (a, b, c):
        tr.fit()
    assert all(torch.equal(x, y) for x, y in zip(ra.batches, rb.batches))
    assert not all(torch.equal(x, y) for x, y in zip(ra.batches, rc.batches))
    # 50 rows, batch 16: 16, 16, 16, 2 per epoch, every row exactly once per epoch
    assert [len(x) for x in ra.batches] == [16, 16, 16, 2, 16, 16, 16, 2]
    for epoch in (ra.batches[:4], ra.batches[4:]):
        rows = torch.cat(epoch)[:, 0].long() // 2
        assert sorted(rows.tolist()) == list(range(50))
    assert not torch.equal(torch.cat(ra.batches[:4]), torch.cat(ra.batches[4:]))  # reshuffled


def test_distribution_data_draws_fresh_seeded_samples() -> None:
    target = nine_gaussians(dtype=torch.float32)
    a, ra = recorded(target, steps=3, batch_size=32, seed=1)
    b, rb = recorded(target, steps=3, batch_size=32, seed=1)
    a.fit()
    b.fit()
    assert all(x.shape == (32, 2) for x in ra.batches)
    assert all(torch.equal(x, y) for x, y in zip(ra.batches, rb.batches))
    assert not torch.equal(ra.batches[0], ra.batches[1])
    expected = target.sample(32, torch.Generator().manual_seed(1))
    assert torch.equal(ra.batches[0], expected)


@pytest.mark.parametrize("kind", ["list", "tuples", "dataloader", "generator_function"])
def test_iterables_of_tensors_are_training_data(kind: str) -> None:
    x = data2d(40)
    if kind == "list":
        data = list(x.split(10))
    elif kind == "tuples":
        data = [(b, torch.zeros(len(b))) for b in x.split(10)]
    elif kind == "dataloader":
        data = DataLoader(TensorDataset(x), batch_size=10, shuffle=False)
    else:
        class Stream:  # re-iterable: each pass calls the generator function again
            def __iter__(self):
                yield from x.split(10)
        data = Stream()
    tr, rec = recorded(data, steps=6)
    tr.fit()
    expected = list(x.split(10))
    assert [torch.equal(b, expected[i % 4]) for i, b in enumerate(rec.batches)] == [True] * 6
    assert tr.data.epoch == 1


def test_one_shot_generator_is_explained_when_exhausted() -> None:
    batches = (b for b in data2d(20).split(10))
    tr = Trainer(make_model(), batches, steps=3)
    with pytest.raises(ValueError, match="yielded no batch"):
        tr.fit()


def test_bad_training_data() -> None:
    with pytest.raises(TypeError, match="training data must be"):
        Trainer(make_model(), 3.0)
    with pytest.raises(ShapeError, match=r"\(N, \*dims\)"):
        Trainer(make_model(), torch.zeros(10))
    tr = Trainer(make_model(), [torch.zeros(4)], steps=1)
    with pytest.raises(ShapeError, match="each training batch"):
        tr.fit()
    with pytest.raises(ValueError, match="batch_size"):
        BatchSource(data2d(), batch_size=0)


def test_batches_take_the_models_dtype() -> None:
    tr, rec = recorded(data2d().to(F64), steps=1, batch_size=4)  # float32 model, float64 data
    tr.fit()
    assert rec.batches[0].dtype == torch.float32
    tr2 = Trainer(make_model(dtype=F64), data2d(), steps=1, batch_size=4)  # float64 model, float32 data
    tr2.fit()
    assert tr2.data.next().dtype == F64


# --------------------------------------------------------------------------- loop mechanics
def test_callbacks_run_every_eval_every_steps() -> None:
    seen: list[int] = []
    tr = Trainer(make_model(), data2d(), steps=10, batch_size=8, eval_every=3, callbacks=[lambda t, s: seen.append(s)])
    tr.fit()
    assert seen == [3, 6, 9]
    seen.clear()
    Trainer(make_model(), data2d(), steps=4, batch_size=8, callbacks=[lambda t, s: seen.append(s)]).fit()
    assert seen == []  # eval_every = 0: never


def test_callback_may_switch_to_eval_mode() -> None:
    modes: list[bool] = []

    def evaluate(trainer: Trainer, step: int) -> None:
        trainer.model.eval()

    def loss_fn(model, x0, g):
        modes.append(model.training)
        return model.loss(x0, g)

    Trainer(make_model(), data2d(), loss_fn=loss_fn, steps=4, batch_size=8, eval_every=1, callbacks=[evaluate]).fit()
    assert modes == [True] * 4


def test_losses_are_logged_and_decrease() -> None:
    target = gaussian_1d(dtype=torch.float32)
    tr = Trainer(make_model(dim=1), target, steps=300, batch_size=128, lr=3e-3, log_every=100)
    result = tr.fit()
    assert result.step == 300 and [s for s, _ in result.losses] == [100, 200, 300]
    assert result.losses[-1][1] < 0.8 * result.losses[0][1]
    assert result.seconds > 0


def test_progress_bar_runs(capsys: pytest.CaptureFixture) -> None:
    tr = Trainer(make_model(), data2d(), steps=5, batch_size=8, log_every=2, progress=True)
    tr.fit()
    err = capsys.readouterr().err
    assert "train" in err and "loss=" in err


def test_fit_continues_to_the_total() -> None:
    tr = Trainer(make_model(), data2d(), steps=6, batch_size=8)
    assert tr.fit(2).step == 2
    assert tr.fit().step == 6
    assert tr.fit().step == 6  # nothing left to do


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nonfinite_loss_names_the_step_and_keeps_the_last_good_checkpoint(tmp_path: Path, bad: float) -> None:
    calls = {"n": 0}

    def loss_fn(model, x0, g):
        calls["n"] += 1
        loss = model.loss(x0, g)
        return loss * bad if calls["n"] == 7 else loss

    tr = Trainer(make_model(), data2d(), out_dir=tmp_path, loss_fn=loss_fn, steps=20, batch_size=8,
                 checkpoint_every=5, log_every=50)
    with pytest.raises(NonFiniteError, match="at step 7 ") as info:
        tr.fit()
    good = tmp_path / "step_00000005.json"
    assert str(good) in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000005.json", "step_00000005.safetensors"]
    resumed = Trainer(make_model(), data2d(), out_dir=tmp_path, steps=20, batch_size=8)
    assert resumed.resume() == 5
    assert all(bool(torch.isfinite(p).all()) for p in resumed.model.parameters())
    assert load_checkpoint(tmp_path).step == 5


def test_nonfinite_loss_without_checkpoints_and_at_the_last_step(tmp_path: Path) -> None:
    def nan_at_last(model, x0, g):
        loss = model.loss(x0, g)
        return loss * float("nan") if tr.step == 3 else loss  # the 4th (last) step

    tr = Trainer(make_model(), data2d(), out_dir=tmp_path, loss_fn=nan_at_last, steps=4, batch_size=8)
    with pytest.raises(NonFiniteError, match="at step 4 .*no checkpoint had been written"):
        tr.fit()
    assert list(tmp_path.iterdir()) == []  # the final save did not happen
    tr2 = Trainer(make_model(), data2d(), loss_fn=lambda m, x, g: m.loss(x, g) * float("nan"), steps=3, batch_size=8)
    with pytest.raises(NonFiniteError, match="at step 1 "):
        tr2.fit()


def test_final_checkpoint_is_written(tmp_path: Path) -> None:
    Trainer(make_model(), data2d(), out_dir=tmp_path, steps=3, batch_size=8).fit()
    assert load_checkpoint(tmp_path).step == 3


def test_bf16_on_cpu_runs() -> None:
    tr = Trainer(make_model(), data2d(), steps=5, batch_size=16, precision="bf16", log_every=1)
    assert tr.autocast_dtype == torch.bfloat16
    before = [p.detach().clone() for p in tr.model.parameters()]
    result = tr.fit()
    assert len(result.losses) == 5 and all(math.isfinite(v) for _, v in result.losses)
    assert all(p.dtype == torch.float32 for p in tr.model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, tr.model.parameters()))
    assert Trainer(make_model(), data2d(), precision="auto").autocast_dtype is None  # CPU: full precision
    assert Trainer(make_model(), data2d(), precision="off").autocast_dtype is None


@pytest.mark.parametrize("options,match", [
    ({"nonsense": 1}, "unknown training option"),
    ({"optimizer": "rmsprop"}, "optimizer must be one of"),
    ({"precision": "fp8"}, "precision must be one of"),
    ({"precision": "fp16"}, "needs a CUDA device"),
    ({"steps": 0}, "steps must be a positive integer"),
    ({"batch_size": 0}, "batch_size must be a positive integer"),
    ({"log_every": 0}, "log_every must be a positive integer"),
    ({"warmup_steps": -1}, "warmup_steps must be >= 0"),
    ({"checkpoint_every": -2}, "checkpoint_every must be >= 0"),
    ({"lr": 0.0}, "lr must be positive"),
    ({"grad_clip": -1.0}, "grad_clip must be positive"),
    ({"ema_decay": 1.0}, "ema_decay must lie in"),
    ({"lr_schedule": "step"}, "lr_schedule must be one of"),
    ({"min_lr_ratio": 1.5}, "min_lr_ratio must lie in"),
])
def test_bad_options_raise(options: dict, match: str) -> None:
    with pytest.raises(OptionError, match=match):
        Trainer(make_model(), data2d(), **options)


def test_model_without_trainable_parameters() -> None:
    exact = gaussian_1d().score_model(sdeflow.create_process("vp"))
    for p in exact.parameters():
        p.requires_grad_(False)
    with pytest.raises(OptionError, match="no trainable parameters"):
        Trainer(exact, torch.zeros(8, 1))


# --------------------------------------------------------------------------- toy data sets
DATASETS = {"two_moons": two_moons, "swiss_roll": swiss_roll, "checkerboard": checkerboard}


@pytest.mark.parametrize("name", list(DATASETS))
def test_toy_sets_shape_dtype_and_seeding(name: str) -> None:
    f = DATASETS[name]
    a = f(500, torch.Generator().manual_seed(0))
    b = f(500, torch.Generator().manual_seed(0))
    c = f(500, torch.Generator().manual_seed(1))
    assert a.shape == (500, 2) and a.dtype == torch.get_default_dtype()
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert f(3, torch.Generator().manual_seed(0), dtype=F64).dtype == F64
    assert bool(torch.isfinite(a).all())
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="positive integer"):
            f(bad)


@pytest.mark.parametrize("name", list(DATASETS))
def test_toy_sets_are_centred_with_unit_average_variance(name: str) -> None:
    """Mean 0 and trace(Cov)/2 = 1 (analytic), within 4.5 standard errors estimated from n."""
    n = 40_000
    x = DATASETS[name](n, torch.Generator().manual_seed(7), dtype=F64)
    mean = x.mean(0)
    se_mean = x.std(0) / math.sqrt(n)
    assert bool((mean.abs() <= 4.5 * se_mean).all()), (mean, se_mean)
    sq = (x - mean).pow(2).sum(1) / 2  # per-sample contribution to trace(Cov)/2
    se_var = float(sq.std()) / math.sqrt(n)
    assert abs(float(sq.mean()) - 1.0) <= 4.5 * se_var + 1e-3, (float(sq.mean()), se_var)


def test_checkerboard_structure() -> None:
    n = 40_000
    x = checkerboard(n, torch.Generator().manual_seed(3), dtype=F64) * math.sqrt(4.0 / 3.0)  # back to [-2, 2]^2
    assert float(x.abs().max()) <= 2.0
    cells = torch.floor(x + 2.0).long().clamp(0, 3)
    assert bool(((cells[:, 0] + cells[:, 1]) % 2 == 0).all())  # only the dark squares
    counts = torch.bincount(cells[:, 1] * 4 + cells[:, 0], minlength=16).double()
    filled = counts[counts > 0]
    assert filled.numel() == 8
    se = math.sqrt(n * (1 / 8) * (7 / 8))
    assert bool(((filled - n / 8).abs() <= 4.5 * se).all())
    # per-axis unit variance and the documented correlation 3/16 of the scaled set
    y = x / math.sqrt(4.0 / 3.0)
    cov = torch.cov(y.T)
    assert abs(float(cov[0, 0]) - 1) < 0.03 and abs(float(cov[1, 1]) - 1) < 0.03
    assert abs(float(cov[0, 1]) - 3 / 16) < 0.03


def test_two_moons_and_swiss_roll_geometry() -> None:
    n = 20_000
    moons = two_moons(n, torch.Generator().manual_seed(0), noise=0.0, dtype=F64)
    scale = math.sqrt(0.5 * (0.75 + 9 / 16 - 1 / math.pi))
    raw = moons * scale + torch.tensor([0.5, 0.25], dtype=F64)
    upper = (raw[:, 0] ** 2 + raw[:, 1] ** 2 - 1).abs() < 1e-9
    lower = ((raw[:, 0] - 1) ** 2 + (raw[:, 1] - 0.5) ** 2 - 1).abs() < 1e-9
    assert bool((upper | lower).all())
    frac = float(upper.double().mean())
    assert abs(frac - 0.5) <= 4.5 * math.sqrt(0.25 / n)
    roll = swiss_roll(n, torch.Generator().manual_seed(0), noise=0.0, dtype=F64)
    assert bool(torch.isfinite(roll).all())
    with pytest.raises(ValueError, match="noise"):
        two_moons(5, noise=-0.1)
    with pytest.raises(ValueError, match="noise"):
        swiss_roll(5, noise=float("nan"))


@pytest.mark.parametrize("name", list(DATASETS))
def test_toy_sets_train(name: str) -> None:
    """Any of them is training data: a few steps run and the loss is finite."""
    x = DATASETS[name](256, torch.Generator().manual_seed(0))
    result = Trainer(make_model(), x, steps=3, batch_size=64, log_every=1).fit()
    assert all(math.isfinite(v) for _, v in result.losses)


# --------------------------------------------------------------------------- a real crash while saving
# The builder runs in a child process (which is SIGKILLed) and here (which resumes); one source for both.
_BUILD = """
import torch, sdeflow
from sdeflow.data.datasets import nine_gaussians
from sdeflow.training import Trainer

def build(out_dir):
    torch.manual_seed(0)
    net = sdeflow.create_model("mlp", dim=2, hidden=16, depth=1)
    model = sdeflow.ScoreModel(net, sdeflow.create_process("vp"))
    return Trainer(model, nine_gaussians(dtype=torch.float32), out_dir=out_dir, steps=12, batch_size=16, lr=5e-3,
                   warmup_steps=3, grad_clip=0.5, ema_decay=0.9, checkpoint_every=4, keep_checkpoints=0, log_every=2)
"""

_KILLED_CHILD = _BUILD + """
import os, signal, sys
from sdeflow.utils import atomic

trainer = build(sys.argv[1])
trainer.fit(4)                      # writes step_00000004 normally
calls, real_replace = [0], os.replace

def replace_then_maybe_die(src, dst):
    calls[0] += 1
    if calls[0] == 2:               # the manifest's temporary is complete and fsync'ed; its rename never happens
        os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(src, dst)

atomic.os.replace = replace_then_maybe_die  # sdeflow.utils.atomic renames every checkpoint file
trainer.fit(8)                      # killed inside the step-8 save
raise SystemExit("not killed")
"""


@pytest.mark.skipif(not hasattr(__import__("signal"), "SIGKILL"), reason="needs POSIX signals")
def test_sigkill_during_save_keeps_the_previous_checkpoint_and_resume_is_exact(tmp_path: Path) -> None:
    """A training process SIGKILLed inside its step-8 save, so no Python cleanup runs: the new tensor
    file is already renamed into place, the manifest's temporary is complete but not renamed (the
    torn state; the clean failures at either rename are in tests/test_checkpoint.py). The step-4
    checkpoint is intact (hash verified, the weights of a 4-step run) and is what a folder load finds; the debris (the ``.tmp`` manifest, the orphan
    tensor file) is ignored; a new process resumes from step 4, and its run to step 12, which
    overwrites the debris, equals an uninterrupted 12-step run bit for bit."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _KILLED_CHILD, str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr[-2000:]
    names = sorted(p.name for p in tmp_path.iterdir())
    assert [n for n in names if not n.startswith(".")] == ["step_00000004.json", "step_00000004.safetensors",
                                                           "step_00000008.safetensors"]
    assert [n for n in names if n.startswith(".")][0].startswith(".step_00000008.json."), names  # its temporary
    ns: dict = {}
    exec(_BUILD, ns)  # noqa: S102 - the test's own source, shared with the child process
    four = ns["build"](None)
    four.fit(4)
    ckpt = load_checkpoint(tmp_path)  # verifies the tensor file's SHA-256 against the manifest
    assert ckpt.step == 4
    for k, v in four.model.state_dict().items():
        assert torch.equal(ckpt.section("model")[k], v), k
    resumed = ns["build"](tmp_path)
    assert resumed.resume() == 4
    resumed.fit()
    straight = ns["build"](None)
    straight.fit()
    for (k, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    for k in straight.ema.shadow:
        assert torch.equal(straight.ema.shadow[k], resumed.ema.shadow[k]), k
    assert [s for s, _ in resumed.losses] == [s for s, _ in straight.losses]
    assert load_checkpoint(tmp_path).step == 12 and load_checkpoint(tmp_path / "step_00000008.json").step == 8
