"""The image demo: a small UNet trained on the 8x8 digits, a sample grid, bits/dim on held-out digits.

``run_image_demo`` trains ``create_model("unet", ...)`` under any registered process on
scikit-learn's digits (17 gray levels; see :mod:`sdeflow.images.digits`) for a fixed number of
steps or minutes, samples a grid with any sampler, and evaluates the model's log-likelihood of
held-out digits through the probability-flow ODE (Song et al. 2021, App. D.2).

Bits/dim, honestly: the digits are integers ``k in {0..16}^64``. Training and evaluation both use
uniform dequantization onto ``[-1, 1]`` with 17 bins, ``z = -1 + 2 (k + u) / 17``,
``u ~ U[0, 1)^64`` (Theis et al. 2016), so the model is a continuous density on ``[-1, 1]^64``
and ``bpd = -log p(z) / (64 ln 2) + log2(17 / 2)`` (:func:`sdeflow.bits_per_dim` with
``bins=17``) is an upper bound, in expectation over ``u``, on the discrete model's
``-log2 P(k) / 64``. For scale: a uniform distribution over the 17 levels costs
``log2 17 = 4.09`` bits/dim, and the report also gives the held-out cross-entropy of the
independent-pixel histogram model fitted on the training digits (add-one smoothing), an exact
discrete bits/dim that a model of pixel dependencies should beat. ``log p`` is that of the ODE at
the model's ``score_t_min`` (see :func:`sdeflow.log_likelihood`: the process's ``t_min``, or where
its noise there is 0, as for VE, the time at which ``sigma_t / alpha_t = 0.002``); it is estimated with Hutchinson
probes (an unbiased estimate of ``log p`` whose noise is part of the reported standard error).

A process that models the discrete data itself (one with an integer ``bins`` attribute: its
default loss is a variational bound on ``-log P(k)`` in bits/dim over ``bins`` levels of
``data_range``, as ``vdm``'s, Kingma et al. 2021) is built with ``bins=17``, trained on the level
grid ``k / 8 - 1`` (no dequantization) and evaluated by that bound on the held-out digits
(``bound="process"`` in the report): the same discrete quantity, bounded the way the method
bounds it.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from .api import component_options, create_model, create_process, create_sampler
from .errors import OptionError
from .images import (DIGITS_LEVELS, DIGITS_SIZE, DequantizedImages, levels_to_signed, load_digits_levels,
                     save_image_grid, signed_to_levels, split_holdout)
from .likelihood import bits_per_dim, dequantize, log_likelihood
from .process import ForwardProcess
from .score_model import ScoreModel
from .training import Trainer


@dataclass
class ImageDemoResult:
    """What :func:`run_image_demo` returns (and writes to ``report.json``)."""

    process: str
    sampler: str
    image_size: int
    steps: int
    train_seconds: float
    final_loss: float
    parameters: int
    bits_per_dim: float
    bits_per_dim_stderr: float
    n_eval: int
    likelihood_nfe: int
    likelihood_seconds: float
    likelihood_t_start: float | None
    bound: str
    baseline_bits_per_dim: float
    uniform_bits_per_dim: float
    sample_nfe: int
    samples_in_range: float
    grid: str
    losses: list[tuple[int, float]] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)


def condition_range(process: ForwardProcess, points: int = 257) -> tuple[float, float]:
    """``(min, max)`` of ``process.network_condition(t)`` over ``[t_min, t_max]``: the UNet's
    ``cond_range`` for this process (``(t_min, 1)`` for time-conditioned processes; the log-SNR or
    noise-level range for processes that condition on those)."""
    t = torch.linspace(float(process.t_min), float(process.t_max), points, dtype=torch.float64)
    with torch.no_grad():
        c = process.network_condition(t.to(torch.get_default_dtype())).to(torch.float64)
    lo, hi = float(c.min()), float(c.max())
    return (lo, hi) if hi > lo else (lo - 0.5, lo + 0.5)


def discrete_bins(process: ForwardProcess) -> int | None:
    """The number of levels a process models discrete data on (its integer ``bins`` attribute, e.g.
    ``vdm``'s), or ``None`` for a process of continuous data."""
    bins = getattr(process, "bins", None)
    return int(bins) if isinstance(bins, int) and not isinstance(bins, bool) else None


def process_bound_bits_per_dim(score_model: ScoreModel, levels: torch.Tensor, draws: int = 4,
                               chunk: int = 8, seed: int = 0) -> tuple[float, float]:
    """Mean and standard error of a discrete-data process's own bound (``score_model.loss``, bits/dim)
    over ``levels`` (on the process's level grid), ``draws`` noise draws per digit.

    The loss is the batch mean; it is evaluated on chunks of ``chunk`` digits, so the chunk means
    are i.i.d. and their spread gives the standard error (over digits and draws)."""
    x = levels_to_signed(levels, DIGITS_LEVELS - 1).to(score_model.device, score_model.dtype)
    values = []
    with torch.no_grad():
        for d in range(draws):
            gen = torch.Generator(device=score_model.device if score_model.device.type == "cuda" else "cpu")
            gen.manual_seed(seed + 1000 * d)
            values += [float(score_model.loss(x[i:i + chunk], gen)) for i in range(0, x.shape[0], chunk)]
    v = torch.tensor(values, dtype=torch.float64)
    se = float(v.std(correction=1)) / math.sqrt(v.numel()) if v.numel() > 1 else float("nan")
    return float(v.mean()), se


def histogram_bits_per_dim(train: torch.Tensor, test: torch.Tensor, bins: int) -> float:
    """Held-out cross-entropy (bits/dim) of the independent-pixel categorical model fitted on ``train``
    with add-one (Laplace) smoothing: ``-mean log2 P_pixel(k)`` over the test pixels."""
    tr = train.reshape(train.shape[0], -1).long()
    counts = F.one_hot(tr, bins).sum(0).to(torch.float64) + 1.0  # (D, bins)
    logp = torch.log2(counts / counts.sum(1, keepdim=True))
    te = test.reshape(test.shape[0], -1).long()
    return float(-logp.gather(1, te.transpose(0, 1)).mean())


def run_image_demo(out_dir: str | Path = "image_demo_out", process: str = "vp", *, steps: int | None = None,
                   minutes: float = 3.0, image_size: int = DIGITS_SIZE, sampler: str = "dpm_solver",
                   sampler_options: dict[str, Any] | None = None, process_options: dict[str, Any] | None = None,
                   model_options: dict[str, Any] | None = None, batch_size: int = 128, lr: float = 2e-3,
                   n_samples: int = 64, n_eval: int = 128, n_probes: int = 2, rtol: float = 1e-4,
                   atol: float = 1e-4, seed: int = 0, device: str | torch.device = "cpu",
                   echo: Callable[[str], None] = print) -> ImageDemoResult:
    """Train a UNet on the digits under ``process``, save a sample grid and a bits/dim report.

    The held-out split (20% of the 1,797 digits, permutation seed 0) is the same for every
    process and seed, so runs are comparable.

    Args:
        out_dir: output folder (``grid.png``, ``report.json``, ``report.md``).
        process: any registered process name.
        steps: optimiser steps (exact and reproducible); ``None``: train for ``minutes``.
        minutes: wall-clock training budget when ``steps`` is ``None``.
        image_size: 8 (native) or larger: the digits' integer levels are padded with background
            (level 0), and bits/dim then counts the border pixels too.
        sampler: any registered sampler name.
        sampler_options: its options.
        process_options: options of the process.
        model_options: options of ``create_model("unet")`` (default ``cond_range``: the range of
            the process's ``network_condition``, see :func:`condition_range`).
        batch_size: training batch size.
        lr: Adam learning rate (warm-up 100 steps, EMA 0.999, gradient clipping 1.0).
        n_samples: images in the grid.
        n_eval: held-out digits whose bits/dim are computed (at most 360).
        n_probes: Hutchinson probes per digit.
        rtol: relative tolerance of dopri5 on the likelihood ODE.
        atol: absolute tolerance of dopri5 on the likelihood ODE.
        seed: seeds initial weights, data order, noise, samples and probes.
        device: where to train.
        echo: where progress goes.

    Returns:
        An :class:`ImageDemoResult`.
    """
    if steps is not None and (isinstance(steps, bool) or int(steps) != steps or steps < 1):
        raise OptionError(f"steps must be a positive integer or None, got {steps!r}")
    if steps is None and not minutes > 0:
        raise OptionError(f"minutes must be positive when steps is None, got {minutes!r}")
    if image_size < DIGITS_SIZE:
        raise OptionError(f"image_size must be at least {DIGITS_SIZE} (the digits are padded, not shrunk), "
                          f"got {image_size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    levels = load_digits_levels()
    pad = image_size - DIGITS_SIZE
    levels = F.pad(levels, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2), value=0)
    train_levels, test_levels = split_holdout(levels, 0.2, seed=0)
    n_eval = min(int(n_eval), test_levels.shape[0])

    popts = dict(process_options or {})
    if "bins" in component_options("process", process):
        popts.setdefault("bins", DIGITS_LEVELS)  # a discrete-data process: the digits' 17 levels
    proc = create_process(process, **popts)
    bins = discrete_bins(proc)
    if bins is not None and bins != DIGITS_LEVELS:
        raise OptionError(f"process {process!r} models discrete data on {bins} levels; the digits have "
                          f"{DIGITS_LEVELS} (pass process_options={{'bins': {DIGITS_LEVELS}}})")
    mopts = {"cond_range": condition_range(proc), **(model_options or {})}
    net = create_model("unet", in_channels=1, image_size=image_size, **mopts)
    model = ScoreModel(net, proc).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    data = (levels_to_signed(train_levels, DIGITS_LEVELS - 1) if bins is not None
            else DequantizedImages(train_levels, DIGITS_LEVELS))
    trainer = Trainer(model, data, batch_size=batch_size, lr=lr,
                      warmup_steps=100, seed=seed, log_every=25, steps=steps or 10**9,
                      precision="auto" if torch.device(device).type == "cuda" else "off")
    echo(f"image demo: {process} + unet ({n_params:,} parameters) on {train_levels.shape[0]} digits "
         f"{image_size}x{image_size}, " + (f"{steps} steps" if steps else f"{minutes:g} min"))
    start = time.perf_counter()
    if steps is not None:
        trainer.fit(int(steps))
    else:
        while time.perf_counter() - start < 60.0 * minutes:
            trainer.fit(trainer.step + 25)
    train_seconds = time.perf_counter() - start
    final_loss = trainer.losses[-1][1]
    echo(f"  trained {trainer.step} steps in {train_seconds:.0f}s, loss {final_loss:.4f}")
    ema = trainer.ema_model().eval()

    smp = create_sampler(sampler, **(sampler_options or {}))
    gen = torch.Generator(device="cpu").manual_seed(seed + 1)
    with torch.no_grad():
        res = smp.sample(ema, (n_samples, 1, image_size, image_size), generator=gen)
    samples = res.samples.detach().cpu()
    in_range = float(((samples >= -1.05) & (samples <= 1.05)).to(torch.float64).mean())
    # the discrete image each sample stands for: its dequantization bin k = floor((z + 1) 17 / 2), or
    # the nearest level for a discrete-data process
    sample_levels = (signed_to_levels(samples, DIGITS_LEVELS - 1) if bins is not None else
                     torch.floor((samples + 1.0) * (DIGITS_LEVELS / 2.0)).clamp(0, DIGITS_LEVELS - 1))
    grid = save_image_grid(levels_to_signed(sample_levels, DIGITS_LEVELS - 1), out / "grid.png",
                           nrow=int(math.ceil(math.sqrt(n_samples))), upscale=4)

    t0 = time.perf_counter()
    t_start: float | None = None
    nfe = 0
    if bins is not None:
        bpd_mean, bpd_se = process_bound_bits_per_dim(ema, test_levels[:n_eval], seed=seed + 3)
    else:
        z = dequantize(test_levels[:n_eval], DIGITS_LEVELS, generator=torch.Generator().manual_seed(seed + 2))
        ll = log_likelihood(ema, z, estimator="hutchinson", n_probes=n_probes, rtol=rtol, atol=atol,
                            generator=torch.Generator().manual_seed(seed + 3))
        t_start = ll.t_start
        bpd = bits_per_dim(ll.log_prob.cpu(), ll.n_dims, bins=DIGITS_LEVELS)
        # stderr over digits (it includes the dequantization and probe noise of each digit's value)
        bpd_mean, nfe = float(bpd.mean()), ll.nfe
        bpd_se = float(bpd.std(correction=1)) / math.sqrt(n_eval) if n_eval > 1 else float("nan")
    ll_seconds = time.perf_counter() - t0
    result = ImageDemoResult(
        process=process, sampler=sampler, image_size=image_size, steps=trainer.step, train_seconds=train_seconds,
        final_loss=final_loss, parameters=n_params, bits_per_dim=bpd_mean, bits_per_dim_stderr=bpd_se,
        n_eval=n_eval, likelihood_nfe=nfe, likelihood_seconds=ll_seconds, likelihood_t_start=t_start,
        bound="process" if bins is not None else "ode",
        baseline_bits_per_dim=histogram_bits_per_dim(train_levels, test_levels[:n_eval], DIGITS_LEVELS),
        uniform_bits_per_dim=math.log2(DIGITS_LEVELS), sample_nfe=res.nfe, samples_in_range=in_range,
        grid=str(grid), losses=list(trainer.losses),
        options={"batch_size": batch_size, "lr": lr, "seed": seed, "minutes": minutes if steps is None else None,
                 "sampler_options": sampler_options or {}, "process_options": popts,
                 "model_options": {k: list(v) if isinstance(v, tuple) else v for k, v in mopts.items()},
                 "n_probes": n_probes, "rtol": rtol, "atol": atol, "device": str(device)})
    _write_report(out, result)
    echo(f"  bits/dim on {n_eval} held-out digits: {bpd_mean:.3f} ± {bpd_se:.3f} (independent-pixel histogram "
         f"{result.baseline_bits_per_dim:.3f}, uniform {result.uniform_bits_per_dim:.3f}); "
         f"wrote {grid}, {out / 'report.md'}")
    return result


def format_report(r: ImageDemoResult) -> str:
    """The Markdown report of one run."""
    if r.bound == "ode":
        how = (f"| likelihood ODE from t = {r.likelihood_t_start:.3g}: NFE, seconds | {r.likelihood_nfe}, "
               f"{r.likelihood_seconds:.1f} |")
        note = ("uniform dequantization z = -1 + 2(k + u)/17 for training and evaluation; bpd = -log p(z)/(D ln 2) "
                "+ log2(17/2), Hutchinson estimate of log p through the probability-flow ODE; ± is the standard "
                "error over digits.")
    else:
        how = f"| the process's bound on the held-out digits: seconds | {r.likelihood_seconds:.1f} |"
        note = (f"{r.process} models the 17 levels k/8 - 1 directly; bits/dim is its own variational bound "
                "(its default loss) averaged over the held-out digits and 4 noise draws; ± is the standard error.")
    return "\n".join([
        f"# Image demo: {r.process} + unet on digits {r.image_size}x{r.image_size}",
        "",
        "| quantity | value |",
        "|---|---:|",
        f"| training steps | {r.steps} |",
        f"| training time (s) | {r.train_seconds:.1f} |",
        f"| final training loss | {r.final_loss:.4f} |",
        f"| UNet parameters | {r.parameters:,} |",
        f"| bits/dim, {r.n_eval} held-out digits (upper bound) | {r.bits_per_dim:.3f} ± {r.bits_per_dim_stderr:.3f} |",
        f"| independent-pixel histogram, held-out (exact, discrete) | {r.baseline_bits_per_dim:.3f} |",
        f"| uniform over 17 levels | {r.uniform_bits_per_dim:.3f} |",
        how,
        f"| sampler {r.sampler}: NFE | {r.sample_nfe} |",
        f"| sample pixels within [-1.05, 1.05] | {100 * r.samples_in_range:.1f}% |",
        "",
        f"Samples: `{Path(r.grid).name}` (as 17-level images). Bits/dim: {note}",
    ]) + "\n"


def _write_report(out: Path, r: ImageDemoResult) -> None:
    (out / "report.json").write_text(json.dumps(asdict(r), indent=2))
    (out / "report.md").write_text(format_report(r))
