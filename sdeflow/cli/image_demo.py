"""The image demo: a small UNet trained on the 8x8 digits, a sample grid, bits/dim on held-out digits.

``run_image_demo`` trains ``create_model("unet", ...)`` under any registered process on
scikit-learn's digits (17 gray levels; see :mod:`sdeflow.data.images.digits`) for a fixed number of
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
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from ..core.likelihood import bits_per_dim, dequantize, log_likelihood
from ..core.process import ForwardProcess
from ..core.score_model import ScoreModel
from ..data.images import (
    DIGITS_LEVELS,
    DIGITS_SIZE,
    DequantizedImages,
    levels_to_signed,
    load_digits_split,
    save_image_grid,
    signed_to_levels,
)
from ..errors import OptionError
from ..plugins.api import component_options, create_model, create_process, create_sampler
from ..training import Trainer, list_checkpoints
from .class_demo import DEMO_GUIDANCE, GUIDANCE_SCALES, GuidanceSweep, format_sweep

#: how a process of discrete data's samples z_0 become images (:meth:`ForwardProcess.decode`)
DECODE_MODES = ("mode", "sample")


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
    samples_in_range_expected: float | None
    grid: str
    sample_confidence: float
    reference_confidence: float
    sample_classes: int
    nearest_ratio: float
    losses: list[tuple[int, float]] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    guidance: dict[str, Any] | None = None


def condition_range(process: ForwardProcess, points: int = 257) -> tuple[float, float]:
    """``(min, max)`` of ``process.network_condition(t)`` over ``[t_min, t_max]``: the UNet's
    ``cond_range`` for this process (``(t_min, 1)`` for time-conditioned processes; the log-SNR or
    noise-level range for processes that condition on those)."""
    t = torch.linspace(float(process.t_min), float(process.t_max), points, dtype=torch.float64)
    with torch.no_grad():
        c = process.network_condition(t.to(torch.get_default_dtype())).to(torch.float64)
    lo, hi = float(c.min()), float(c.max())
    return (lo, hi) if hi > lo else (lo - 0.5, lo + 0.5)


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


def latent_in_range(process: ForwardProcess, x: torch.Tensor, bound: float = 1.05) -> torch.Tensor:
    """``P(|z| <= bound)`` for each pixel of ``z = alpha x + sigma eps`` at the process's ``t_min``: the
    forward marginal ``q(z_0 | x)`` (Kingma et al. 2021, Eq. 1), ``Phi((b - alpha x) / sigma) -
    Phi((-b - alpha x) / sigma)``, an indicator where ``sigma = 0``.

    A chain that ends at ``z_0`` (``ancestral`` with ``denoise=False`` on ``vdm``) has, for an exact
    model, the marginal ``q(z_0)``, so the mean of this over the data is the fraction of its output
    pixels expected within ``[-bound, bound]``: 99.8% at the UNet's learned ``gamma_0 = -8.2`` on the
    digits, 85% at an MLP's ``-5`` (``sigma_0 / alpha_0 = 0.08``; the background pixels at -1 leave
    the range a quarter of the time). ``z_0`` is not an image; its decoding
    :meth:`ForwardProcess.decode` is.

    Args:
        process: the forward process.
        x: data values, any shape.
        bound: half-width of the interval.

    Returns:
        Probabilities shaped like ``x`` (float64).
    """
    x = x.to(torch.float64)
    param = next(iter(process.parameters()), None)  # a learned schedule: its own dtype and device
    t = torch.full((1,), float(process.t_min)) if param is None else torch.full((1,), float(process.t_min),
                                                                              dtype=param.dtype, device=param.device)
    with torch.no_grad():
        a, s = (float(v) for v in process.marginal(t))
    if s == 0.0:
        return ((a * x).abs() <= bound).to(torch.float64)
    return torch.special.ndtr((bound - a * x) / s) - torch.special.ndtr((-bound - a * x) / s)


def default_sampler(process: ForwardProcess) -> tuple[str, dict[str, Any]]:
    """The demo's sampler for ``process``: DPM-Solver++ (20 steps, Lu et al. 2022b) for processes of
    continuous data; for a process of discrete data (``vdm``) its own ancestral chain
    ``p(z_s | z_t)`` with 1000 steps and ``x_0``-clipping to ``[-1, 1]`` (Kingma et al. 2021, Eqs.
    26-27), ending at ``z_0`` (no extra denoising: the decoder
    ``p(x | z_0)`` maps ``z_0`` onto the levels, :meth:`ForwardProcess.decode`)."""
    if process.data_levels is not None:
        return "ancestral", {"steps": 1000, "clip_x0": 1.0, "denoise": False}
    return "dpm_solver", {"steps": 20}


def digit_classifier(image_size: int = DIGITS_SIZE) -> Any:
    """The demo's judge of recognisable digits: a multinomial logistic regression (scikit-learn,
    L2, C = 1) on the pixel levels / 16 of the training split with their labels (about 97% accurate
    on the held-out digits at 8x8). Its top-class probability, averaged over images, measures how
    clearly the images look like some digit, in the spirit of the Inception score (Salimans et al.
    2016) with a classifier that fits the data set."""
    from sklearn.linear_model import LogisticRegression

    levels, labels = load_digits_split("train", image_size, return_labels=True)  # type: ignore[misc]
    x = levels.reshape(levels.shape[0], -1).to(torch.float64).numpy() / (DIGITS_LEVELS - 1)
    return LogisticRegression(max_iter=5000).fit(x, labels.numpy())


def digit_confidence(classifier: Any, levels: torch.Tensor) -> tuple[float, int]:
    """Mean top-class probability of :func:`digit_classifier` over integer images ``(N, 1, s, s)``, and
    how many of the 10 classes are predicted at least once (diversity)."""
    x = levels.reshape(levels.shape[0], -1).to(torch.float64).cpu().numpy() / (DIGITS_LEVELS - 1)
    prob = classifier.predict_proba(x)
    return float(prob.max(1).mean()), int(len(set(prob.argmax(1).tolist())))


def nearest_digit_ratio(samples: torch.Tensor, train: torch.Tensor, reference: torch.Tensor) -> float:
    """How far images lie from the training digits, relative to unseen real digits: the median L2
    distance (in levels) from each sample to its nearest training digit, divided by the same median
    for the ``reference`` (held-out) digits. About 1: as close to the data as real unseen digits
    (the precision side of k-NN precision/recall, Kynkaenniemi et al. 2019); noise and speckle give
    more (uniform noise: about 3.5 on the 8x8 digits); copies of training digits give less."""
    flat = [v.reshape(v.shape[0], -1).to(torch.float64).cpu() for v in (samples, train, reference)]
    near = [torch.cdist(v, flat[1]).min(1).values.median() for v in (flat[0], flat[2])]
    return float(near[0] / near[1])


def run_image_demo(out_dir: str | Path = "image_demo_out", process: str = "vp", *, steps: int | None = None,
                   minutes: float = 3.0, image_size: int = DIGITS_SIZE, sampler: str | None = None,
                   sampler_options: dict[str, Any] | None = None, process_options: dict[str, Any] | None = None,
                   model_options: dict[str, Any] | None = None, batch_size: int = 128, lr: float = 2e-3,
                   n_samples: int = 64, n_eval: int = 128, n_probes: int = 2, rtol: float = 1e-4,
                   atol: float = 1e-4, seed: int = 0, device: str | torch.device = "cpu",
                   dtype: torch.dtype = torch.float32, decode: str = "mode", progress: bool = False,
                   echo: Callable[[str], None] = print, labels: bool = False,
                   guidance_scales: Sequence[float] = GUIDANCE_SCALES, demo_guidance: float = DEMO_GUIDANCE,
                   per_class: int = 20) -> ImageDemoResult:
    """Train a UNet on the digits under ``process``, save a sample grid and a bits/dim report.

    The held-out split (20% of the 1,797 digits, permutation seed 0) is the same for every
    process and seed, so runs are comparable.

    Args:
        out_dir: output folder (``grid.png``, ``report.json``, ``report.md`` and the checkpoint
            folder ``model/``, so ``sdeflow sample <out_dir>/model ...`` works afterwards).
        process: any registered process name.
        steps: optimiser steps (exact and reproducible); ``None``: train for ``minutes``.
        minutes: wall-clock training budget when ``steps`` is ``None``.
        image_size: 8 (native) or larger: the digits' integer levels are padded with background
            (level 0), and bits/dim then counts the border pixels too.
        sampler: any registered sampler name; ``None``: :func:`default_sampler`.
        sampler_options: its options (with ``sampler=None``: merged over the default's).
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
        dtype: floating dtype of the model and the data (float32 or float64).
        decode: a process of discrete data (``vdm``) maps its samples ``z_0`` onto the levels with
            its decoder ``p(x | z_0)`` (:meth:`ForwardProcess.decode`): ``"mode"`` (its most likely
            level, default) or ``"sample"`` (a draw); the grid shows the result.
        progress: progress bars for training and sampling.
        echo: where progress goes.
        labels: train a class-conditional UNet (the digits' labels, label dropout 0.1) and add the
            class-by-guidance grid ``class_grid.png`` and the classifier's agreement with the requested
            class per guidance scale (:func:`sdeflow.cli.class_demo.guidance_sweep`) to the report.
        guidance_scales: the scales of that sweep.
        demo_guidance: the scale whose agreement is the headline number.
        per_class: samples per class and guidance scale in the sweep.

    Returns:
        An :class:`ImageDemoResult`.
    """
    if steps is not None and (isinstance(steps, bool) or int(steps) != steps or steps < 1):
        raise OptionError(f"steps must be a positive integer or None, got {steps!r}")
    if steps is None and not minutes > 0:
        raise OptionError(f"minutes must be positive when steps is None, got {minutes!r}")
    if decode not in DECODE_MODES:
        raise OptionError(f"decode must be one of {', '.join(DECODE_MODES)}, got {decode!r}")
    if image_size < DIGITS_SIZE:
        raise OptionError(f"image_size must be at least {DIGITS_SIZE} (the digits are padded, not shrunk), "
                          f"got {image_size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    train_levels, test_levels = load_digits_split("train", image_size), load_digits_split("test", image_size)
    n_eval = min(int(n_eval), test_levels.shape[0])

    popts = dict(process_options or {})
    if "bins" in component_options("process", process):
        popts.setdefault("bins", DIGITS_LEVELS)  # a discrete-data process: the digits' 17 levels
    proc = create_process(process, **popts)
    bins = proc.data_levels
    if bins is not None and bins != DIGITS_LEVELS:
        raise OptionError(f"process {process!r} models discrete data on {bins} levels; the digits have "
                          f"{DIGITS_LEVELS} (pass process_options={{'bins': {DIGITS_LEVELS}}})")
    mopts = {"cond_range": condition_range(proc), **({"num_classes": 10} if labels else {}), **(model_options or {})}
    net = create_model("unet", in_channels=1, image_size=image_size, **mopts)
    model = ScoreModel(net, proc).to(device=device, dtype=dtype)
    n_params = sum(p.numel() for p in model.parameters())
    train_labels = load_digits_split("train", image_size, return_labels=True)[1]
    data: Any
    if bins is not None:  # the level grid, a fixed set (with its labels for a class-conditional model)
        values = levels_to_signed(train_levels, DIGITS_LEVELS - 1, dtype)
        data = (values, train_labels) if labels else values
    else:
        data = DequantizedImages(train_levels, DIGITS_LEVELS, dtype=dtype, labels=train_labels)
    ckpt_dir = out / "model"
    for old in list_checkpoints(ckpt_dir):  # a fresh run: the demo always retrains
        old.with_suffix(".safetensors").unlink(missing_ok=True)
        old.unlink(missing_ok=True)
    data_spec = {"name": "digits", "options": {} if image_size == DIGITS_SIZE else {"size": image_size}}
    trainer = Trainer(model, data, batch_size=batch_size, lr=lr,
                      warmup_steps=100, seed=seed, log_every=25, steps=steps or 10**9,
                      precision="auto" if torch.device(device).type == "cuda" else "off", progress=progress,
                      metadata={"data": data_spec, "image_demo": {"process": process}},
                      class_names=[str(k) for k in range(10)] if labels else None)
    echo(f"image demo: {process} + {'class-conditional ' if labels else ''}unet ({n_params:,} parameters) on "
         f"{train_levels.shape[0]} digits "
         f"{image_size}x{image_size}, " + (f"{steps} steps" if steps else f"{minutes:g} min"))
    start = time.perf_counter()
    if steps is not None:
        trainer.fit(int(steps))
    else:
        while time.perf_counter() - start < 60.0 * minutes:
            trainer.fit(trainer.step + 25)
    train_seconds = time.perf_counter() - start
    trainer.out_dir = ckpt_dir  # one checkpoint at the end (fit() would write one per chunk of the minutes loop)
    trainer.save()
    final_loss = trainer.losses[-1][1]
    echo(f"  trained {trainer.step} steps in {train_seconds:.0f}s, loss {final_loss:.4f}")
    ema = trainer.ema_model().eval()

    if sampler is None:
        sampler, defaults = default_sampler(proc)
        sampler_options = {**defaults, **(sampler_options or {})}
    smp = create_sampler(sampler, **(sampler_options or {}))
    gen = torch.Generator(device="cpu").manual_seed(seed + 1)
    with torch.no_grad():
        res = smp.sample(ema, (n_samples, 1, image_size, image_size), generator=gen, progress=progress)
    raw = res.samples.detach()
    in_range = float(((raw >= -1.05) & (raw <= 1.05)).to(torch.float64).mean())
    # a chain that ends at z_0 (no final denoising) of a discrete-data process: what an exact model gives
    ends_at_z0 = bins is not None and getattr(smp, "denoise", True) is False
    in_range_expected = (float(latent_in_range(proc, levels_to_signed(train_levels, DIGITS_LEVELS - 1)).mean())
                         if ends_at_z0 else None)
    # the discrete image each sample stands for: for a discrete-data process the decoder's level for z_0
    # (p(x | z_0)); else the dequantization bin k = floor((z + 1) 17 / 2) of the continuous sample
    if bins is not None:
        decoded = proc.decode(raw, torch.Generator(device="cpu").manual_seed(seed + 4), sample=decode == "sample")
        sample_levels = signed_to_levels(decoded.cpu(), DIGITS_LEVELS - 1)
    else:
        sample_levels = torch.floor((raw.cpu() + 1.0) * (DIGITS_LEVELS / 2.0)).clamp(0, DIGITS_LEVELS - 1)
    grid = save_image_grid(levels_to_signed(sample_levels, DIGITS_LEVELS - 1), out / "grid.png",
                           nrow=int(math.ceil(math.sqrt(n_samples))), upscale=4)
    judge = digit_classifier(image_size)
    confidence, classes = digit_confidence(judge, sample_levels)
    reference_confidence, _ = digit_confidence(judge, test_levels[:n_eval])
    nearest = nearest_digit_ratio(sample_levels, train_levels, test_levels[:n_eval])

    sweep = None
    if labels:
        from .class_demo import guidance_sweep

        def levels_of(z: torch.Tensor) -> torch.Tensor:
            if bins is None:
                return torch.floor((z.cpu() + 1.0) * (DIGITS_LEVELS / 2.0)).clamp(0, DIGITS_LEVELS - 1)
            x = proc.decode(z, torch.Generator(device="cpu").manual_seed(seed + 6), sample=decode == "sample")
            return signed_to_levels(x.cpu(), DIGITS_LEVELS - 1)

        sweep = guidance_sweep(ema, smp, judge, out, image_size, tuple(guidance_scales), per_class, seed=seed + 5,
                               demo_guidance=demo_guidance, progress=progress, levels_of=levels_of)
        test_levels_all, test_labels = load_digits_split("test", image_size, return_labels=True)  # type: ignore[misc]
        pred = judge.predict(test_levels_all.reshape(test_levels_all.shape[0], -1).to(torch.float64).numpy()
                             / (DIGITS_LEVELS - 1))
        sweep.reference_accuracy = float((torch.as_tensor(pred) == test_labels).to(torch.float64).mean())
        echo("  classifier agrees with the requested class: " + ", ".join(
            f"w={w:g}: {100 * a:.1f}%" for w, a in zip(sweep.scales, sweep.accuracy)) + f"; wrote {sweep.grid}")

    t0 = time.perf_counter()
    t_start: float | None = None
    nfe = 0
    if bins is not None:
        bpd_mean, bpd_se = process_bound_bits_per_dim(ema, test_levels[:n_eval], seed=seed + 3)
    else:
        z = dequantize(test_levels[:n_eval], DIGITS_LEVELS, generator=torch.Generator().manual_seed(seed + 2),
                       dtype=dtype)
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
        samples_in_range_expected=in_range_expected,
        grid=str(grid), sample_confidence=confidence, reference_confidence=reference_confidence,
        sample_classes=classes, nearest_ratio=nearest, losses=list(trainer.losses),
        options={"batch_size": batch_size, "lr": lr, "seed": seed, "minutes": minutes if steps is None else None,
                 "sampler_options": sampler_options or {}, "process_options": popts,
                 "model_options": {k: list(v) if isinstance(v, tuple) else v for k, v in mopts.items()},
                 "n_probes": n_probes, "rtol": rtol, "atol": atol, "device": str(device),
                 "dtype": str(dtype).replace("torch.", ""), "decode": decode if bins is not None else None,
                 "labels": labels},
        guidance=None if sweep is None else asdict(sweep))
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
    decoded = f", z_0 decoded by p(x | z_0), {r.options.get('decode')}" if r.bound == "process" else ""
    guided: list[str] = []
    if r.guidance is not None:
        sweep = GuidanceSweep(**r.guidance)
        guided = ["", "## Class-conditional samples and classifier-free guidance", "",
                  f"`{Path(sweep.grid).name}`: rows are the digits 0-9, column blocks the guidance scales "
                  f"{', '.join(f'{w:g}' for w in sweep.scales)} ({sweep.per_class} samples per class and scale; the "
                  "same prior draws for every scale). The digit classifier's agreement with the requested class "
                  f"(its accuracy on held-out real digits: {100 * (sweep.reference_accuracy or 0):.1f}%):", "",
                  format_sweep(sweep)]
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
        f"| sampler's output pixels within [-1.05, 1.05] | {100 * r.samples_in_range:.1f}% |"
        + ("" if r.samples_in_range_expected is None else
           f"\n| the same for z_0 ~ q(z_0 \\| x) of the training digits (exact model) | "
           f"{100 * r.samples_in_range_expected:.1f}% |"),
        f"| digit classifier's mean top-class probability: samples / held-out digits | {r.sample_confidence:.3f} / "
        f"{r.reference_confidence:.3f} |",
        f"| digit classes among the samples (of 10) | {r.sample_classes} |",
        f"| distance to the nearest training digit, samples / held-out digits (medians) | {r.nearest_ratio:.3f} |",
        "",
        f"Samples: `{Path(r.grid).name}` (as 17-level images{decoded}). Bits/dim: {note} Recognisable digits: a "
        "logistic-regression digit classifier fitted on the training digits is asked how clearly each image is some "
        "digit (its top-class probability; real held-out digits for scale), and how far the samples lie from the "
        "nearest training digit relative to unseen real digits (1: as close as real digits; uniform noise 3.5).",
        *guided,
    ]) + "\n"


def format_summary(results: list[ImageDemoResult], root: str | Path | None = None) -> str:
    """One Markdown table over several runs (``sdeflow demo images``), with the two references for scale.

    Args:
        results: the runs.
        root: folder the grid paths are written relative to.
    """
    def rel(path: str) -> str:
        if root is None:
            return path
        try:
            return str(Path(path).relative_to(Path(root)))
        except ValueError:
            return path

    lines = ["# Image demo: UNet on the digits", "",
             "| process | steps | training (s) | bits/dim, held-out (upper bound) | bound | sampler (NFE) | "
             "digit confidence | nearest-digit ratio | grid | requested class recognised |",
             "|---|---:|---:|---:|---|---|---:|---:|---|---|"]
    for r in results:
        classes = "-"
        if r.guidance is not None:
            sweep = GuidanceSweep(**r.guidance)
            classes = ", ".join(f"w={w:g}: {100 * a:.0f}%" for w, a in zip(sweep.scales, sweep.accuracy)) + \
                f" (`{rel(sweep.grid)}`)"
        lines.append(f"| {r.process} | {r.steps} | {r.train_seconds:.0f} | {r.bits_per_dim:.3f} ± "
                     f"{r.bits_per_dim_stderr:.3f} | {r.bound} | {r.sampler} ({r.sample_nfe}) | "
                     f"{r.sample_confidence:.3f} | {r.nearest_ratio:.2f} | `{rel(r.grid)}` | {classes} |")
    if results:
        r = results[0]
        lines += ["", f"References on the same {r.n_eval} held-out digits: independent-pixel histogram "
                  f"{r.baseline_bits_per_dim:.3f} bits/dim (exact, discrete), uniform over 17 levels "
                  f"{r.uniform_bits_per_dim:.3f}; digit confidence of the real digits {r.reference_confidence:.3f} "
                  "(a logistic-regression classifier's mean top-class probability) and nearest-digit ratio 1 (median "
                  "distance to the nearest training digit over that of real unseen digits). Bound `ode`: dequantized "
                  "probability-flow likelihood; `process`: the process's own variational bound (vdm). Per-run "
                  "details: `<process>/report.md`."]
    return "\n".join(lines) + "\n"


def _write_report(out: Path, r: ImageDemoResult) -> None:
    (out / "report.json").write_text(json.dumps(asdict(r), indent=2))
    (out / "report.md").write_text(format_report(r))
