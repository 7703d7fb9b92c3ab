"""The image demo's class-conditional part: a class-by-guidance grid of digits and, per guidance scale,
how often the digit classifier recognises the requested class.

Classifier-free guidance (Ho & Salimans 2022, Eq. 6) trades diversity for fidelity: as ``w`` grows,
samples look more like their class and less like each other. :func:`guidance_sweep` measures both
sides on the digits: the agreement of the demo's digit classifier (logistic regression on the
training digits, about 97% accurate on held-out digits) with the requested class, its mean top-class
probability, and the mean distance between samples of one class (diversity), per guidance scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ..core.score_model import ScoreModel
from ..data.images import DIGITS_LEVELS, levels_to_signed, save_image_grid

#: guidance scales of the demo's sweep, and the one its headline number uses
GUIDANCE_SCALES: tuple[float, ...] = (0.0, 1.0, 2.0, 4.0)
DEMO_GUIDANCE = 2.0
#: the digit classes
NUM_DIGITS = 10


@dataclass
class GuidanceSweep:
    """What :func:`guidance_sweep` measured (one entry per guidance scale).

    Attributes:
        scales: the guidance scales ``w``.
        accuracy: fraction of samples the digit classifier assigns to the requested class.
        confidence: the classifier's mean probability of the requested class.
        diversity: mean L2 distance (in gray levels) between two samples of the same class.
        per_class: samples per class and scale.
        nfe: score evaluations per sampler run (each a network call on the doubled batch when ``w != 0``).
        grid: the class-by-guidance grid (rows: classes 0-9; column blocks: the scales).
        demo_guidance: the scale the demo reports as its headline.
        reference_accuracy: the classifier's accuracy on held-out real digits (its ceiling).
    """

    scales: list[float]
    accuracy: list[float]
    confidence: list[float]
    diversity: list[float]
    per_class: int
    nfe: list[int]
    grid: str
    demo_guidance: float = DEMO_GUIDANCE
    reference_accuracy: float | None = None

    @property
    def demo_accuracy(self) -> float | None:
        """The accuracy at :attr:`demo_guidance` (``None`` when it was not swept)."""
        return self.accuracy[self.scales.index(self.demo_guidance)] if self.demo_guidance in self.scales else None


def to_levels(x: torch.Tensor) -> torch.Tensor:
    """The dequantization bin ``k = floor((z + 1) 17 / 2)`` of continuous samples ``z`` in ``[-1, 1]``."""
    return torch.floor((x.cpu() + 1.0) * (DIGITS_LEVELS / 2.0)).clamp(0, DIGITS_LEVELS - 1)


def mean_pairwise_distance(levels: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean L2 distance between two different images of the same label (diversity within a class)."""
    flat = levels.reshape(levels.shape[0], -1).to(torch.float64)
    total, count = 0.0, 0
    for c in labels.unique().tolist():
        v = flat[labels == c]
        m = v.shape[0]
        if m > 1:
            total += float(torch.cdist(v, v).sum())
            count += m * (m - 1)
    return total / max(count, 1)


def guidance_sweep(model: ScoreModel, sampler: Any, classifier: Any, out_dir: str | Path, image_size: int,
                   scales: tuple[float, ...] = GUIDANCE_SCALES, per_class: int = 20, grid_per_cell: int = 3,
                   seed: int = 0, demo_guidance: float = DEMO_GUIDANCE, progress: bool = False,
                   levels_of: Callable[[torch.Tensor], torch.Tensor] | None = None) -> GuidanceSweep:
    """Sample ``per_class`` digits of every class at every guidance scale (the same prior noise for
    every scale, so a column block shows the effect of ``w`` on the same draws), judge them, and
    write the class-by-guidance grid ``class_grid.png``.

    Args:
        model: a class-conditional score model of the digits (10 classes).
        sampler: any sampler.
        classifier: the digit classifier (:func:`sdeflow.cli.image_demo.digit_classifier`).
        out_dir: where ``class_grid.png`` goes.
        image_size: side of the images.
        scales: guidance scales.
        per_class: samples per class and scale.
        grid_per_cell: samples per class and scale shown in the grid.
        seed: seed of the prior noise (the same for every scale).
        demo_guidance: the headline scale.
        progress: progress bars.
        levels_of: maps the sampler's output to integer gray levels (default :func:`to_levels`, the
            dequantization bin; a process of discrete data passes its decoder).
    """
    labels = torch.arange(NUM_DIGITS).repeat_interleave(per_class)
    n = labels.numel()
    acc, conf, div, nfes, cells = [], [], [], [], []
    for w in scales:
        view = model.given(labels.to(model.device), guidance=float(w))
        with torch.no_grad():
            res = sampler.sample(view, (n, 1, image_size, image_size), generator=torch.Generator().manual_seed(seed),
                                 progress=progress)
        levels = (levels_of or to_levels)(res.samples)
        flat = levels.reshape(n, -1).to(torch.float64).numpy() / (DIGITS_LEVELS - 1)
        prob = torch.as_tensor(classifier.predict_proba(flat))
        acc.append(float((prob.argmax(1) == labels).to(torch.float64).mean()))
        conf.append(float(prob[torch.arange(n), labels].mean()))
        div.append(mean_pairwise_distance(levels, labels))
        nfes.append(int(res.nfe))
        cells.append(levels.reshape(NUM_DIGITS, per_class, 1, image_size, image_size)[:, :grid_per_cell])
    rows = torch.stack(cells, dim=1)  # (classes, scales, k, 1, s, s): one row per class
    images = levels_to_signed(rows.reshape(-1, 1, image_size, image_size), DIGITS_LEVELS - 1)
    grid = save_image_grid(images, Path(out_dir) / "class_grid.png", nrow=len(scales) * grid_per_cell, upscale=4)
    return GuidanceSweep(list(map(float, scales)), acc, conf, div, per_class, nfes, str(grid), float(demo_guidance))


def format_sweep(sweep: GuidanceSweep) -> str:
    """Markdown table of a sweep."""
    lines = ["| guidance w | classifier agrees with the class | mean p(class) | within-class distance (levels) | NFE |",
             "|---:|---:|---:|---:|---:|"]
    for w, a, c, d, nfe in zip(sweep.scales, sweep.accuracy, sweep.confidence, sweep.diversity, sweep.nfe):
        mark = " (demo)" if w == sweep.demo_guidance else ""
        lines.append(f"| {w:g}{mark} | {100 * a:.1f}% | {c:.3f} | {d:.2f} | {nfe} |")
    return "\n".join(lines)


__all__ = ["DEMO_GUIDANCE", "GUIDANCE_SCALES", "GuidanceSweep", "format_sweep", "guidance_sweep",
           "mean_pairwise_distance", "to_levels"]
