"""Class-conditional training: labelled batch sources, label dropout, the Trainer, checkpoints that
rebuild the conditional network, and a trained conditional MLP that samples its classes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from common import gen

import sdeflow
from sdeflow.cli.data import SampledSet
from sdeflow.core.conditioning import NULL_LABEL, drop_labels
from sdeflow.data import nine_gaussians
from sdeflow.errors import OptionError
from sdeflow.training import Trainer, load_checkpoint
from sdeflow.training.data import BatchSource
from sdeflow.training.model_spec import ModelSpec


def conditional_model(hidden: int = 32, seed: int = 0) -> sdeflow.ScoreModel:
    torch.manual_seed(seed)
    net = sdeflow.create_model("mlp", dim=2, num_classes=9, hidden=hidden, depth=2)
    return sdeflow.ScoreModel(net, sdeflow.create_process("vp"))


def test_labelled_sources_keep_labels_with_their_rows() -> None:
    x = torch.arange(20, dtype=torch.float32)[:, None].expand(20, 2).contiguous()
    y = torch.arange(20) % 7
    src = BatchSource((x, y), batch_size=6, seed=3, labelled=True)
    for _ in range(8):  # across epochs
        shard = src.next_shard()
        assert torch.equal(shard.y, shard.x[:, 0].long() % 7)
    gm = nine_gaussians()
    src = BatchSource(gm, batch_size=50, seed=1, labelled=True)
    shard = src.next_shard()
    xs, ys = gm.sample_labelled(50, torch.Generator().manual_seed(1))
    assert torch.equal(shard.x, xs) and torch.equal(shard.y, ys)
    batches = [(x[:5], y[:5]), (x[5:9], y[5:9])]
    src = BatchSource(batches, batch_size=4, labelled=True)
    assert [src.next_shard().y.tolist() for _ in range(3)] == [y[:5].tolist(), y[5:9].tolist(), y[:5].tolist()]
    assert torch.equal(BatchSource((x, y), batch_size=4, seed=3).next(), BatchSource(x, 4, seed=3).next())
    with pytest.raises(OptionError, match="labelled data"):
        BatchSource(x, batch_size=4, labelled=True)
    with pytest.raises(OptionError, match="sample_labelled"):
        BatchSource(SampledSet(lambda n, g: torch.zeros(n, 2)), batch_size=4, labelled=True)


def test_label_dropout_rate() -> None:
    labels = torch.zeros(20000, dtype=torch.int64)
    dropped = drop_labels(labels, 0.1, gen(0))
    p = float((dropped == NULL_LABEL).double().mean())
    assert abs(p - 0.1) < 4 * math.sqrt(0.1 * 0.9 / 20000)
    assert torch.equal(drop_labels(labels, 0.0, gen(0)), labels)
    assert bool((drop_labels(labels, 1.0, gen(0)) == NULL_LABEL).all())
    with pytest.raises(OptionError, match="p_uncond"):
        drop_labels(labels, 1.5)


def test_conditional_trainer_needs_labels_and_resumes_exactly(tmp_path: Path) -> None:
    gm = nine_gaussians()
    with pytest.raises(OptionError, match="labelled data"):
        Trainer(conditional_model(), gm.sample(100, gen(0)), steps=2)
    with pytest.raises(OptionError, match="class_names"):
        Trainer(conditional_model(), gm, steps=2, class_names=["a", "b"])
    straight = Trainer(conditional_model(), gm, steps=12, batch_size=16, p_uncond=0.3, ema_decay=None)
    straight.fit()
    first = Trainer(conditional_model(), gm, steps=6, batch_size=16, p_uncond=0.3, ema_decay=None, out_dir=tmp_path,
                    class_names=[f"k{i}" for i in range(9)])
    first.fit()
    second = Trainer(conditional_model(seed=5), gm, steps=12, batch_size=16, p_uncond=0.3, ema_decay=None,
                     out_dir=tmp_path, class_names=[f"k{i}" for i in range(9)])
    assert second.resume() == 6
    second.fit()
    for a, b in zip(straight.model.parameters(), second.model.parameters()):
        assert torch.equal(a, b)
    spec = ModelSpec.from_checkpoint(load_checkpoint(tmp_path))
    assert spec.model_options["num_classes"] == 9 and spec.class_names == [f"k{i}" for i in range(9)]
    loaded = sdeflow.load_score_model(tmp_path, ema=False)
    x, t, labels = torch.randn(9, 2, generator=gen(1)), torch.full((9,), 0.4), torch.arange(9)
    torch.testing.assert_close(loaded.given(labels).score(x, t), second.model.given(labels).score(x, t))
    assert loaded.num_classes == 9


@pytest.mark.slow
def test_trained_conditional_mlp_samples_its_classes() -> None:
    """A small conditional MLP trained on the nine Gaussians with their components as labels: samples
    given a class fall in that class's component, more so with guidance; null samples cover the modes."""
    gm = nine_gaussians()
    trainer = Trainer(conditional_model(hidden=64), gm, steps=800, batch_size=256, lr=2e-3, log_every=100)
    trainer.fit()
    model = trainer.ema_model().eval()
    labels = torch.arange(9).repeat_interleave(100)
    smp = sdeflow.create_sampler("dpm_solver", steps=20)

    def agreement(w: float) -> float:
        with torch.no_grad():
            x = smp.sample(model.given(labels, guidance=w), (900, 2), gen(2)).samples
        nearest = torch.cdist(x.double(), gm.means.double()).argmin(1)
        return float((nearest == labels).double().mean())

    plain, guided = agreement(0.0), agreement(2.0)
    print(plain, guided)
    assert plain > 0.85 and guided > 0.95 and guided >= plain, (plain, guided)
    with torch.no_grad():
        x = smp.sample(model, (900, 2), gen(3)).samples
    counts = torch.bincount(torch.cdist(x.double(), gm.means.double()).argmin(1), minlength=9)
    assert bool((counts > 20).all()), counts
