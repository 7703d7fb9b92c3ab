"""Training cases shared by tests/test_distributed.py (one process) and tests/distributed_worker.py
(two gloo processes under torchrun): the same seeds, data and options in both."""

from __future__ import annotations

from typing import Any

import torch

import sdeflow
from sdeflow.data.datasets import nine_gaussians
from sdeflow.training import Trainer

F64 = torch.float64


def _rows(n: int) -> torch.Tensor:
    return nine_gaussians().sample(n, torch.Generator().manual_seed(0)).to(F64)


# name: (process, data factory, batch size, steps). Every case splits unevenly over 2 ranks:
# batch 7 -> rows 4 + 3, and 30 rows leave a last batch of 2 per epoch (1 + 1); batch 9 -> 5 + 4;
# the iterable's last batch has 1 row, so rank 1 gets no row (weight 0) in that step.
CASES: dict[str, tuple[str, Any, int, int]] = {
    "tensor": ("vp", lambda: _rows(30), 7, 12),
    "distribution": ("subvp", lambda: nine_gaussians(dtype=F64), 9, 8),
    "iterable": ("vp", lambda: list(_rows(14).split([5, 5, 3, 1])), 7, 8),
    "ncsn": ("ncsn", lambda: _rows(30), 7, 8),
    # a class-conditional network on the components as labels, with label dropout
    "labelled": ("vp", lambda: nine_gaussians(dtype=F64), 9, 8),
}


def make_trainer(name: str, distributed: Any = False, out_dir: Any = None, **overrides: Any) -> Trainer:
    process, data, batch_size, steps = CASES[name]
    torch.manual_seed(0)
    labelled = name == "labelled"
    net = sdeflow.create_model("mlp", dim=2, hidden=16, depth=1, num_classes=9 if labelled else None).to(F64)
    model = sdeflow.ScoreModel(net, sdeflow.create_process(process))
    opts = dict(steps=steps, batch_size=batch_size, lr=1e-2, warmup_steps=2, grad_clip=0.5, ema_decay=0.9,
                log_every=3, seed=5, **({"p_uncond": 0.3} if labelled else {}))
    return Trainer(model, data(), out_dir=out_dir, distributed=distributed, **{**opts, **overrides})
