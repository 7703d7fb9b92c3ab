"""Conformance checks for a network registered as a model: ``net(x, t_cond)``.

Each check takes a *factory* (anything building the network, e.g.
``functools.partial(sdeflow.create_model, "mlp", dim=4)``) and the input ``shape``
``(batch, *dims)`` the network is built for. What a network must satisfy (the one model
contract of ``docs/concepts.md``, the k-diffusion wrapper idea):

* ``net(x, t_cond)`` with ``t_cond`` of shape ``(batch,)`` returns a finite tensor shaped like
  ``x`` in ``x``'s dtype; wrapped in a :class:`sdeflow.ScoreModel` its score has that shape and
  its training loss back-propagates finite gradients; the output depends on ``t_cond``
  (:func:`check_model_output`);
* sample ``i`` of the output depends on sample ``i`` of the input and its own time only
  (:func:`check_model_batch_independence`);
* it runs in float64 and agrees there with float32 (:func:`check_model_float64`);
* a class-conditional network (one with an integer ``num_classes`` attribute) follows the
  conditioning contract, ``net(x, t_cond, labels)`` (:func:`check_model_conditional`).

A network whose output is identically zero at initialisation (a zero-initialised last layer,
as in DDPM++) is perturbed first (every parameter plus ``N(0, 0.02^2)`` noise) so that the
checks see a non-trivial function.
"""

from __future__ import annotations

import copy
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from ..core.score_model import ScoreModel
from .common import F64, CheckNotApplicable, assert_close
from .reference import ReferenceOUProcess

#: builds a network from keyword options
ModelFactory = Callable[..., nn.Module]


def _build(factory: ModelFactory) -> nn.Module:
    torch.manual_seed(0)  # reproducible initialisation for the checks
    net = factory()
    assert isinstance(net, nn.Module), f"the factory returned {type(net).__name__}, not a torch.nn.Module"
    return net


def _inputs(shape: Sequence[int], dtype: torch.dtype, seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(tuple(shape), generator=g, dtype=dtype)
    t = 0.05 + 0.9 * torch.rand(shape[0], generator=g, dtype=dtype)
    return x, t


def _nontrivial(net: nn.Module, shape: Sequence[int]) -> nn.Module:
    """``net``, with its parameters perturbed if its output is identically zero."""
    x, t = _inputs(shape, next((p.dtype for p in net.parameters()), torch.float32))
    with torch.no_grad():
        if bool((net(x, t) == 0).all()):
            g = torch.Generator().manual_seed(1)
            for p in net.parameters():
                p.add_(0.02 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return net


def check_model_output(factory: ModelFactory, shape: Sequence[int]) -> None:
    """``net(x, t_cond)`` returns a finite tensor of ``x``'s shape and dtype; the output changes
    with ``t_cond``; ``t_cond`` may be an expanded view of one time (stride 0, as samplers pass
    it) with the same result as a contiguous copy (``1e-6``); ``ScoreModel(net, process).score``
    has ``x``'s shape and ``ScoreModel.loss`` is a finite scalar whose gradient reaches the
    parameters, finite.

    Args:
        factory: builds the network.
        shape: input shape ``(batch, *dims)`` with ``batch >= 2``.
    """
    net = _nontrivial(_build(factory), shape)
    what = f"model {type(net).__name__} on input {tuple(shape)}"
    x, t = _inputs(shape, torch.float32)
    out = net(x, t)
    assert isinstance(out, Tensor), f"{what}: returned {type(out).__name__}, not a tensor"
    assert out.shape == x.shape, f"{what}: returned shape {tuple(out.shape)}; net(x, t_cond) must return x's shape"
    assert out.dtype == x.dtype, f"{what}: returned dtype {out.dtype} for a {x.dtype} input"
    assert torch.isfinite(out).all(), f"{what}: output contains NaN/Inf"
    other = net(x, torch.flip(t, [0]) * 0.5 + 0.02)
    assert not torch.allclose(out, other), f"{what}: the output does not depend on t_cond"
    # samplers pass one time for the whole batch as an expanded view (stride 0, no copy)
    shared = t[:1].expand(x.shape[0])
    try:
        viewed = net(x, shared)
    except RuntimeError as err:
        raise AssertionError(f"{what}: fails when t_cond is an expanded view of one time (stride 0), as samplers "
                             f"pass it; do not write into t_cond: {err}") from err
    assert_close(viewed, net(x, shared.contiguous()), f"{what}: t_cond as an expanded view vs a contiguous copy",
                 rtol=1e-6, atol=1e-6)
    sm = ScoreModel(net, ReferenceOUProcess(), parametrization="eps")
    assert sm.score(x, t).shape == x.shape, f"{what}: ScoreModel.score shape"
    loss = sm.loss(x, generator=torch.Generator().manual_seed(2))
    assert loss.ndim == 0 and torch.isfinite(loss), f"{what}: ScoreModel.loss must be a finite scalar, got {loss}"
    loss.backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert grads and any(g is not None for g in grads), f"{what}: the loss gradient reaches no parameter"
    assert all(torch.isfinite(g).all() for g in grads if g is not None), f"{what}: non-finite parameter gradients"


def check_model_batch_independence(factory: ModelFactory, shape: Sequence[int]) -> None:
    """In eval mode, output sample ``i`` depends on input sample ``i`` (and its own ``t_cond``)
    only: the gradient of ``out[0]`` with respect to the other samples is exactly zero, and
    the network applied to the first and to the last sample alone, each with its own time, gives
    the same output as in the batch (float64, ``rtol = 1e-10``).

    Args:
        factory: builds the network.
        shape: input shape ``(batch, *dims)`` with ``batch >= 2``.
    """
    assert shape[0] >= 2, f"check_model_batch_independence needs a batch of at least 2, got shape {tuple(shape)}"
    net = _nontrivial(_build(factory), shape).to(F64).eval()
    what = f"model {type(net).__name__} on input {tuple(shape)}"
    x, t = _inputs(shape, F64)
    x.requires_grad_(True)
    out = net(x, t)
    (grad,) = torch.autograd.grad(out[0].sum(), x)
    leak = float(grad[1:].abs().max())
    assert leak == 0.0, f"{what}: output sample 0 depends on other samples of the batch (gradient {leak:.3g})"
    for i in (0, shape[0] - 1):
        alone = net(x[i:i + 1].detach(), t[i:i + 1])
        assert_close(alone, out[i:i + 1].detach(), f"{what}: sample {i} alone (with its own t_cond) vs in a batch",
                     rtol=1e-10, atol=1e-12)


def check_model_float64(factory: ModelFactory, shape: Sequence[int]) -> None:
    """The network moved to float64 returns float64, finite, and agrees with the same weights
    in float32 to float32 accuracy (``rtol = atol = 1e-3`` of the output scale).

    Args:
        factory: builds the network.
        shape: input shape ``(batch, *dims)``.
    """
    net32 = _nontrivial(_build(factory), shape).eval()
    net64 = copy.deepcopy(net32).to(F64)
    what = f"model {type(net32).__name__} on input {tuple(shape)}"
    x, t = _inputs(shape, F64)
    with torch.no_grad():
        out64 = net64(x, t)
        out32 = net32(x.float(), t.float())
    assert out64.dtype == F64, f"{what}: a float64 network returned {out64.dtype}"
    assert torch.isfinite(out64).all(), f"{what}: float64 output contains NaN/Inf"
    scale = float(out64.abs().max()) or 1.0
    assert_close(out32.double(), out64, f"{what}: float32 vs float64 output", rtol=1e-3, atol=1e-3 * scale)


def check_model_conditional(factory: ModelFactory, shape: Sequence[int]) -> None:
    """The conditioning contract of a class-conditional network (``num_classes = K``, an int >= 1):

    * ``net(x, t_cond, labels)`` with ``int64`` labels ``(batch,)`` in ``0..K-1`` returns ``x``'s shape
      and dtype, finite, and the output depends on the labels;
    * the null label: ``net(x, t_cond)``, ``net(x, t_cond, None)`` and ``net(x, t_cond, -1 everywhere)``
      are the same unconditional prediction, and a ``-1`` row equals that prediction (``sdeflow.NULL_LABEL``);
    * sample ``i`` depends on label ``i`` only (eval mode, float64);
    * ``ScoreModel(net, process).given(labels)`` trains: its loss back-propagates finite gradients,
      which differ from those of the null labels (the labels reach the parameters); its guided view
      ``given(labels, guidance=w)`` returns ``(1 + w) eps(x, c) - w eps(x, null)``.

    Raises:
        CheckNotApplicable: the network has no ``num_classes`` (an unconditional network).
    """
    net = _build(factory)
    k = getattr(net, "num_classes", None)
    if k is None:
        raise CheckNotApplicable(f"{type(net).__name__} is not class-conditional (no num_classes attribute)")
    assert isinstance(k, int) and not isinstance(k, bool) and k >= 1, (
        f"{type(net).__name__}.num_classes must be a positive int (or None), got {k!r}")
    net = _nontrivial(net, shape).to(F64).eval()
    what = f"class-conditional model {type(net).__name__} (num_classes={k}) on input {tuple(shape)}"
    x, t = _inputs(shape, F64)
    n = shape[0]
    labels = torch.arange(n) % k
    with torch.no_grad():
        out = net(x, t, labels)
        null = net(x, t)
        assert out.shape == x.shape and out.dtype == x.dtype, (
            f"{what}: net(x, t, labels) returned {tuple(out.shape)} {out.dtype}")
        assert torch.isfinite(out).all(), f"{what}: output contains NaN/Inf"
        assert_close(net(x, t, None), null, f"{what}: net(x, t, None) vs net(x, t)", rtol=1e-12, atol=1e-12)
        assert_close(net(x, t, torch.full((n,), -1)), null, f"{what}: labels -1 (no label) vs net(x, t)",
                     rtol=1e-12, atol=1e-12)
        other = net(x, t, (labels + 1) % k) if k > 1 else null
        assert not torch.allclose(out, other), f"{what}: the output does not depend on the labels"
        mixed = labels.clone()
        mixed[0] = -1
        got = net(x, t, mixed)
        assert_close(got[:1], null[:1], f"{what}: a row with label -1 vs the unconditional prediction", rtol=1e-10,
                     atol=1e-12)
        assert_close(got[1:], out[1:], f"{what}: the other rows keep their labels", rtol=1e-10, atol=1e-12)
        alone = net(x[1:2], t[1:2], labels[1:2])
        assert_close(alone, out[1:2], f"{what}: sample 1 alone vs in a batch", rtol=1e-10, atol=1e-12)
    sm = ScoreModel(net.train(), ReferenceOUProcess(), parametrization="eps")
    grads = []
    for view in (sm.given(labels), sm.given(torch.full((n,), -1))):
        net.zero_grad()
        loss = view.loss(x, generator=torch.Generator().manual_seed(2))
        assert loss.ndim == 0 and torch.isfinite(loss), (
            f"{what}: given(labels).loss must be a finite scalar, got {loss}")
        loss.backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in net.parameters() if p.grad is not None]))
    assert grads[0].numel() and torch.isfinite(grads[0]).all(), f"{what}: missing or non-finite gradients"
    assert not torch.allclose(grads[0], grads[1]), f"{what}: the labels do not reach the loss gradient"
    net.zero_grad()
    net.eval()
    w = 2.5
    tt = 0.05 + 0.9 * torch.rand(n, generator=torch.Generator().manual_seed(3), dtype=F64)
    guided = sm.given(labels, guidance=w).eps(x, tt)
    expected = (1 + w) * sm.given(labels).eps(x, tt) - w * sm.eps(x, tt)
    assert_close(guided, expected, f"{what}: guided eps vs (1 + w) eps(x, c) - w eps(x, null)", rtol=1e-10, atol=1e-10)


#: every model check by short name, in the order the pytest plugin runs them
MODEL_CHECKS: dict[str, Callable[[ModelFactory, Sequence[int]], None]] = {
    "output_contract": check_model_output,
    "batch_independence": check_model_batch_independence,
    "float64": check_model_float64,
    "conditional": check_model_conditional,
}


def check_model(factory: ModelFactory, shape: Sequence[int]) -> None:
    """Run every check of :data:`MODEL_CHECKS` (the conditional one only on a class-conditional network).

    Args:
        factory: builds the network.
        shape: input shape ``(batch, *dims)`` with ``batch >= 2``.
    """
    for check in MODEL_CHECKS.values():
        try:
            check(factory, shape)
        except CheckNotApplicable:
            pass
