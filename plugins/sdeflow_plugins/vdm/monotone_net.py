"""The two sums of the monotone schedule network, evaluated in blocks with a hand-written backward.

For times ``t_i`` and ``H`` features with positive ``a_j`` (slopes), ``c_j`` (output weights), free
offsets ``d_j`` and ``w1 > 0`` (see :class:`~sdeflow_plugins.vdm.schedule.LearnedGamma`):

    N_i = w1 t_i + sum_j c_j [sigmoid(a_j t_i + d_j) - sigmoid(d_j)]      (gamma~(t_i) - gamma~(0))
    S_i = w1 + sum_j c_j a_j sigmoid'(a_j t_i + d_j)                       (dN_i / dt_i)

Autograd on these formulas keeps a dozen ``(n, H)`` temporaries alive; with ``H = 1024`` a
20,000-time grid needs gigabytes and seconds. Here the ``(n, H)`` work is done in cache-sized row
blocks, only ``N``, ``S`` and the inputs are kept, and the backward recomputes each block:
memory ``O(n + H)``, the same result. The gradients (``s = sigmoid(u)``, ``s' = s (1 - s)``,
``s'' = s' (1 - 2 s)``, ``u_ij = a_j t_i + d_j``, upstream ``gN``, ``gS``):

    dN_i/dt_i = S_i,                  dS_i/dt_i = sum_j c_j a_j^2 s''_ij
    dN_i/dc_j = s_ij - sigmoid(d_j),  dS_i/dc_j = a_j s'_ij
    dN_i/da_j = c_j t_i s'_ij,        dS_i/da_j = c_j (s'_ij + a_j t_i s''_ij)
    dN_i/dd_j = c_j (s'_ij - sigmoid'(d_j)),  dS_i/dd_j = c_j a_j s''_ij
    dN_i/dw1 = t_i,                   dS_i/dw1 = 1

Everything is differentiable once (``once_differentiable``): the VDM loss needs first derivatives
only, because ``gamma'`` is itself this closed form (tested against autograd and ``gradcheck``).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

#: elements of one ``(rows, H)`` block (512 KiB in float64)
BLOCK_ELEMENTS = 1 << 16


def _block_terms(t: Tensor, a: Tensor, d: Tensor, neg_sig_d: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """``(rise, s', s)`` of a row block: ``rise = sigmoid(u) - sigmoid(d)`` without cancellation
    (``-sigmoid(u) sigmoid(-d) expm1(-a t)``) and ``s' = sigmoid(u) sigmoid(-u)``."""
    x = torch.outer(t, a)  # a_j t_i >= 0
    u = x + d
    s = torch.sigmoid(u)
    sp = torch.sigmoid(u.neg_()).mul_(s)
    if neg_sig_d is None:
        neg_sig_d = -torch.sigmoid(-d)
    rise = torch.expm1(x.neg_()).mul_(s).mul_(neg_sig_d)
    return rise, sp, s


def block_sums(t: Tensor, w1: Tensor, a: Tensor, d: Tensor, c: Tensor, ac: Tensor | None = None,
               neg_sig_d: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``(N, S)`` for one block of times, without autograd bookkeeping (``ac = a * c`` and
    ``neg_sig_d = -sigmoid(-d)`` may be passed precomputed)."""
    rise, sp, _ = _block_terms(t, a, d, neg_sig_d)
    return w1 * t + rise @ c, w1 + sp @ (a * c if ac is None else ac)


def _blocks(n: int, h: int) -> range:
    return range(0, n, max(1, BLOCK_ELEMENTS // max(h, 1)))


class MonotoneSums(torch.autograd.Function):
    """``(N, S) = MonotoneSums.apply(t, w1, a, d, c)`` for flat ``t`` (see the module docstring)."""

    @staticmethod
    def forward(ctx: FunctionCtx, t: Tensor, w1: Tensor, a: Tensor, d: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        n, h = t.shape[0], a.shape[0]
        step = _blocks(n, h).step
        ac = a * c
        big_n = torch.empty_like(t)
        big_s = torch.empty_like(t)
        neg_sig_d = -torch.sigmoid(-d)
        with torch.autocast(device_type=t.device.type, enabled=False):
            for i in range(0, n, step):
                big_n[i:i + step], big_s[i:i + step] = block_sums(t[i:i + step], w1, a, d, c, ac, neg_sig_d)
        ctx.save_for_backward(t, w1, a, d, c, big_s)
        return big_n, big_s

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, g_n: Tensor | None, g_s: Tensor | None):  # type: ignore[override]
        t, w1, a, d, c, big_s = ctx.saved_tensors  # type: ignore[attr-defined]
        n, h = t.shape[0], a.shape[0]
        g_n = torch.zeros_like(t) if g_n is None else g_n
        g_s = torch.zeros_like(t) if g_s is None else g_s
        step = _blocks(n, h).step
        gc = torch.zeros_like(c)
        ga = torch.zeros_like(a)
        gd = torch.zeros_like(d)
        gt = torch.empty_like(t) if ctx.needs_input_grad[0] else None  # type: ignore[attr-defined]
        caa = c * a * a
        neg_sig_d = -torch.sigmoid(-d)
        with torch.autocast(device_type=t.device.type, enabled=False):
            for i in range(0, n, step):
                tb, gnb, gsb = t[i:i + step], g_n[i:i + step], g_s[i:i + step]
                rise, sp, s = _block_terms(tb, a, d, neg_sig_d)
                spp = sp * (1.0 - 2.0 * s)
                sp_gs = gsb @ sp
                spp_gst = (gsb * tb) @ spp
                gc += gnb @ rise + a * sp_gs
                ga += (gnb * tb) @ sp + sp_gs + a * spp_gst
                gd += gnb @ sp + a * (gsb @ spp)
                if gt is not None:
                    gt[i:i + step] = gnb * big_s[i:i + step] + gsb * (spp @ caa)
        sig_d = torch.sigmoid(d)
        gd = c * (gd - sig_d * (1.0 - sig_d) * g_n.sum())
        ga = c * ga
        gw1 = (g_n * t).sum() + g_s.sum()
        return gt, gw1.reshape(w1.shape), ga, gd, gc


def monotone_sums(t: Tensor, w1: Tensor, a: Tensor, d: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """``(N(t), S(t))`` of the module docstring for flat ``t`` (differentiable once in every input).

    Args:
        t: times, shape ``(n,)``.
        w1: positive 0-d slope of the linear part.
        a: per-feature slopes (positive), shape ``(H,)``.
        d: per-feature offsets, shape ``(H,)``.
        c: per-feature output weights (positive), shape ``(H,)``.

    Returns:
        ``N`` and ``S``, each of shape ``(n,)``.
    """
    return MonotoneSums.apply(t, w1, a, d, c)  # type: ignore[no-any-return]
