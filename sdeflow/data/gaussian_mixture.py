"""Gaussian mixtures: an analytic data distribution with closed-form scores at every time.

Under a process with Gaussian marginals ``x_t = a_t x_0 + s_t eps`` a mixture
``p_0 = sum_k w_k N(mu_k, Sigma_k)`` stays a mixture:

    p_t = sum_k w_k N(a_t mu_k, a_t^2 Sigma_k + s_t^2 I),

so ``log p_t`` and ``grad_x log p_t`` are closed-form. Each covariance is diagonalised once,
``Sigma_k = U_k diag(lambda_k) U_k^T``; then ``a^2 Sigma_k + s^2 I = U_k diag(a^2 lambda_k + s^2) U_k^T``
for every time, and a batch with one time per sample costs ``O(n K d^2)`` (``O(n K d)`` when all
covariances are diagonal), with no decomposition per time and no autograd.
"""

from __future__ import annotations

import math
from typing import Sequence, cast

import torch
from torch import Tensor, nn

from ..core.process import ForwardProcess
from ..core.score_model import ScoreModel
from ..errors import OptionError, ShapeError
from ..utils.shapes import randn
from .mixture_conditioning import condition_on_coordinates


def _as_tensor(v: object, dtype: torch.dtype) -> Tensor:
    return v.detach().to(dtype) if isinstance(v, Tensor) else torch.as_tensor(v, dtype=dtype)


class GaussianMixture:
    """``p(x) = sum_k w_k N(x; mu_k, Sigma_k)`` in any dimension.

    Args:
        weights: ``(K,)`` non-negative mixture weights (normalised to sum to one).
        means: ``(K, d)`` component means.
        covs: ``(K, d, d)`` full covariances, ``(K, d)`` diagonals, ``(K,)`` isotropic
            variances, or a single float (the same isotropic variance for all).
    """

    def __init__(self, weights: Sequence[float] | Tensor, means: Sequence | Tensor, covs: Sequence | Tensor | float,
                 dtype: torch.dtype | None = None) -> None:
        out_dtype = dtype or torch.get_default_dtype()
        dtype = torch.float64
        w = _as_tensor(weights, dtype).reshape(-1)
        mu = _as_tensor(means, dtype)
        if mu.ndim == 1:
            mu = mu.reshape(-1, 1) if w.numel() > 1 or mu.numel() == 1 else mu.reshape(1, -1)
        if mu.ndim != 2 or mu.shape[0] != w.shape[0]:
            raise ShapeError(f"means must have shape (K, d) with K={w.shape[0]} weights, got {tuple(mu.shape)}")
        if torch.any(w < 0) or not torch.isfinite(w).all() or float(w.sum()) <= 0:
            raise OptionError(f"weights must be finite, non-negative and not all zero, got {w.tolist()}")
        k, d = mu.shape
        c = _as_tensor(covs, dtype)
        if c.ndim == 0:
            c = c.expand(k)
        if c.ndim == 1 and c.shape == (k,):
            c = c[:, None].expand(k, d)
        if c.ndim == 2 and c.shape == (k, d):
            if torch.any(c <= 0):
                raise OptionError("diagonal covariances must be positive")
            lam, vecs, diagonal = c.clone(), torch.eye(d, dtype=dtype).expand(k, d, d).clone(), True
        elif c.ndim == 3 and c.shape == (k, d, d):
            if not torch.allclose(c, c.transpose(-1, -2), atol=1e-10):
                raise OptionError("covariance matrices must be symmetric")
            lam, vecs = torch.linalg.eigh(c)
            if torch.any(lam <= 0):
                raise OptionError("covariance matrices must be positive definite (smallest eigenvalue "
                                  f"{float(lam.min()):g})")
            off = c - torch.diag_embed(torch.diagonal(c, dim1=-2, dim2=-1))
            diagonal = bool(torch.all(off == 0))
            if diagonal:
                lam = torch.diagonal(c, dim1=-2, dim2=-1).clone()
                vecs = torch.eye(d, dtype=dtype).expand(k, d, d).clone()
        else:
            raise ShapeError(
                f"covs must be (K, d, d), (K, d), (K,) or a float for K={k}, d={d}; got shape {tuple(c.shape)}"
            )
        self.weights = (w / w.sum()).to(out_dtype)
        self.means = mu.to(out_dtype)
        self.eigvals = lam.to(out_dtype)
        self.eigvecs = vecs.to(out_dtype)
        self.diagonal = diagonal

    # ------------------------------------------------------------------ basic properties
    @property
    def dim(self) -> int:
        """Data dimension ``d``."""
        return self.means.shape[1]

    @property
    def n_components(self) -> int:
        """Number of components ``K``."""
        return self.means.shape[0]

    @property
    def covs(self) -> Tensor:
        """Full covariances ``(K, d, d)``."""
        return self.eigvecs @ torch.diag_embed(self.eigvals) @ self.eigvecs.transpose(-1, -2)

    @property
    def dtype(self) -> torch.dtype:
        return self.means.dtype

    @property
    def device(self) -> torch.device:
        return self.means.device

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "GaussianMixture":
        """A copy on ``device`` with floating dtype ``dtype``."""
        out = object.__new__(GaussianMixture)
        for name in ("weights", "means", "eigvals", "eigvecs"):
            setattr(out, name, getattr(self, name).to(device=device, dtype=dtype))
        out.diagonal = self.diagonal
        return out

    def mean(self) -> Tensor:
        """Mixture mean ``sum_k w_k mu_k``, shape ``(d,)``."""
        return self.weights @ self.means

    def covariance(self) -> Tensor:
        """Mixture covariance ``sum_k w_k (Sigma_k + mu_k mu_k^T) - m m^T``, shape ``(d, d)``."""
        m = self.mean()
        second = torch.einsum("k,kij->ij", self.weights, self.covs + self.means[:, :, None] * self.means[:, None, :])
        return second - torch.outer(m, m)

    def at(self, a: float | Tensor, s: float | Tensor) -> "GaussianMixture":
        """The mixture of ``a x + s eps`` for scalars ``a``, ``s``: means ``a mu_k``, covariances
        ``a^2 Sigma_k + s^2 I``."""
        a = float(a)
        s = float(s)
        out = self.to()
        out.means = a * self.means
        out.eigvals = a * a * self.eigvals + s * s
        return out

    # ------------------------------------------------------------------ sampling and density
    def sample(self, n: int, generator: torch.Generator | None = None, *, components: Tensor | None = None) -> Tensor:
        """Draw ``n`` samples, shape ``(n, d)``, in the mixture's dtype and device.

        Args:
            n: number of samples.
            generator: random source.
            components: optional component index per sample ``(n,)`` (``-1``: drawn by the weights),
                e.g. the class labels of a class-conditional draw.
        """
        return self.sample_labelled(n, generator, components=components)[0]

    def sample_labelled(self, n: int, generator: torch.Generator | None = None, *,
                        components: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``n`` samples and the component each was drawn from (its class label): ``((n, d), (n,) int64)``.

        ``sample(n, generator)`` draws exactly the same samples from the same generator state.
        """
        if int(n) != n or n <= 0:
            raise OptionError(f"n must be a positive integer, got {n!r}")
        gen_device = generator.device if generator is not None else self.device
        idx = torch.multinomial(self.weights.to(gen_device), int(n), replacement=True, generator=generator)
        idx = idx.to(self.device)
        if components is not None:
            comp = self._check_components(components, int(n), self.device)
            idx = torch.where(comp >= 0, comp, idx)
        z = randn((int(n), self.dim), generator, self.device, self.dtype)
        z = z * self.eigvals[idx].sqrt()
        if not self.diagonal:
            z = torch.einsum("nij,nj->ni", self.eigvecs[idx], z)
        return self.means[idx] + z, idx

    def _check_components(self, components: Tensor, n: int, device: torch.device) -> Tensor:
        """Component indices ``(n,)`` (one index is broadcast) as ``int64`` on ``device``: shape check only."""
        comp = torch.as_tensor(components).reshape(-1).to(device=device, dtype=torch.int64)
        if comp.numel() == 1:
            comp = comp.expand(n)
        if comp.numel() != n:
            raise ShapeError(f"components must hold one index or one per sample ({n}), got {comp.numel()}")
        return comp

    def _mask_components(self, logits: Tensor, components: Tensor | None) -> Tensor:
        """Keep only each sample's own component in ``logits`` ``(n, K)`` (all where it is ``-1``)."""
        if components is None:
            return logits
        comp = self._check_components(components, logits.shape[0], logits.device)
        keep = (comp[:, None] < 0) | (torch.arange(self.n_components, device=logits.device)[None] == comp[:, None])
        return logits.masked_fill(~keep, float("-inf"))

    def _components(self, x: Tensor, a: Tensor, s: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Per-component pieces at ``(a, s)`` given per sample: log w_k N_k, rotated residuals, variances."""
        a2 = (a * a)[:, None, None]
        var = a2 * self.eigvals[None] + (s * s)[:, None, None]  # (n, K, d)
        diff = x[:, None, :] - a[:, None, None] * self.means[None]  # (n, K, d)
        y = diff if self.diagonal else torch.einsum("nkd,kde->nke", diff, self.eigvecs)
        logn = -0.5 * ((y * y / var).sum(-1) + torch.log(var).sum(-1) + self.dim * math.log(2 * math.pi))
        return torch.log(self.weights)[None] + logn, y, var

    def _like(self, x: Tensor) -> "GaussianMixture":
        if x.dtype == self.dtype and x.device == self.device:
            return self
        return self.to(x.device, x.dtype)

    def _flat(self, x: Tensor) -> tuple[Tensor, torch.Size]:
        if x.ndim < 2 or x[0].numel() != self.dim:
            raise ShapeError(f"expected samples of shape (n, {self.dim}) (or (n, *dims) with {self.dim} values each), "
                             f"got {tuple(x.shape)}")
        return x.reshape(x.shape[0], self.dim), x.shape

    def _coeffs(self, x: Tensor, a: Tensor | float, s: Tensor | float) -> tuple[Tensor, Tensor]:
        n = x.shape[0]
        if not isinstance(a, Tensor) or a.ndim == 0:
            a = torch.as_tensor(a, dtype=x.dtype, device=x.device).expand(n)
        if not isinstance(s, Tensor) or s.ndim == 0:
            s = torch.as_tensor(s, dtype=x.dtype, device=x.device).expand(n)
        return a.to(x.dtype), s.to(x.dtype)

    def marginal_log_prob(self, x: Tensor, a: Tensor | float, s: Tensor | float,
                          components: Tensor | None = None) -> Tensor:
        """``log p_t(x)`` of ``a x_0 + s eps`` with ``x_0`` from the mixture; ``a``, ``s`` scalars or ``(n,)``.

        ``components`` ``(n,)``: the log-density of each sample's own component instead
        (``log N(x; a mu_c, a^2 Sigma_c + s^2 I)``, the class-conditional ``log p_t(x | c)``; ``-1``:
        the mixture's)."""
        flat, _ = self._flat(x)
        a, s = self._coeffs(flat, a, s)
        mix = self._like(flat)
        logits, _, _ = mix._components(flat, a, s)
        out = torch.logsumexp(mix._mask_components(logits, components), dim=1)
        if components is None:
            return out
        comp = mix._check_components(components, flat.shape[0], flat.device)
        own = torch.log(mix.weights)[comp.clamp_min(0)]
        return out - torch.where(comp >= 0, own, torch.zeros_like(own))

    def marginal_score(self, x: Tensor, a: Tensor | float, s: Tensor | float,
                       components: Tensor | None = None) -> Tensor:
        """``grad_x log p_t(x)`` in closed form: ``-sum_k r_k(x) C_k^{-1} (x - a mu_k)`` with
        ``C_k = a^2 Sigma_k + s^2 I`` and responsibilities ``r_k`` (shape like ``x``).

        ``components`` ``(n,)``: the score of each sample's own component instead (the class-conditional
        ``grad log p_t(x | c)``; ``-1``: the mixture's)."""
        flat, shape = self._flat(x)
        a, s = self._coeffs(flat, a, s)
        mix = self._like(flat)
        logits, y, var = mix._components(flat, a, s)
        resp = torch.softmax(mix._mask_components(logits, components), dim=1)
        g = -(y / var) * resp[:, :, None]  # (n, K, d) in eigen coordinates
        score = g.sum(1) if mix.diagonal else torch.einsum("kde,nke->nd", mix.eigvecs, g)
        return score.reshape(shape)

    def log_prob(self, x: Tensor) -> Tensor:
        """``log p(x)`` in nats, shape ``(n,)``."""
        return self.marginal_log_prob(x, 1.0, 0.0)

    def score(self, x: Tensor) -> Tensor:
        """``grad_x log p(x)``, shaped like ``x``."""
        return self.marginal_score(x, 1.0, 0.0)

    def entropy_mc(self, n: int = 100_000, generator: torch.Generator | None = None) -> Tensor:
        """Monte-Carlo estimate of the differential entropy ``-E[log p(x)]`` (nats)."""
        return -self.log_prob(self.sample(n, generator)).mean()

    # ------------------------------------------------------------------ exact conditionals
    def condition(self, component: int | None = None, *, mask: Tensor | Sequence[bool] | None = None,
                  values: Tensor | Sequence[float] | None = None) -> "GaussianMixture":
        """An exact conditional distribution, as a :class:`GaussianMixture`.

        * ``condition(component=k)``: the ``k``-th component ``N(mu_k, Sigma_k)``, i.e. ``p(x | c = k)``
          when the components are the classes;
        * ``condition(mask=m, values=v)``: ``p(x_U | x_O = v_O)`` over the unobserved coordinates
          ``U`` (``m`` False), in their order: a mixture with weights ``w_k N(v_O; mu_kO, Sigma_kOO)``
          (normalised), means ``mu_kU + Sigma_kUO Sigma_kOO^{-1} (v_O - mu_kO)`` and covariances
          ``Sigma_kUU - Sigma_kUO Sigma_kOO^{-1} Sigma_kOU`` (the Gaussian conditioning formulas,
          Bishop 2006, Eqs. 2.81-2.82, applied to each component).

        Args:
            component: a component index.
            mask: boolean ``(d,)``, ``True`` = observed (at least one observed, one not).
            values: ``(d,)``, the observed values (entries where ``mask`` is False are ignored).
        """
        if component is not None:
            if mask is not None or values is not None:
                raise OptionError("condition() takes component=k or mask=m, values=v, not both")
            k = self.n_components
            if isinstance(component, bool) or not isinstance(component, int) or not 0 <= component < k:
                raise OptionError(f"component must be an integer in 0..{k - 1}, got {component!r}")
            out = self.to()
            out.weights = torch.ones(1, dtype=self.dtype, device=self.device)
            for name in ("means", "eigvals", "eigvecs"):
                setattr(out, name, getattr(self, name)[component:component + 1].clone())
            return out
        if mask is None or values is None:
            raise OptionError("condition() needs component=k, or mask=m (True = observed) and values=v")
        weights, means, covs = condition_on_coordinates(self.weights, self.means, self.covs, mask, values)
        return GaussianMixture(weights, means, covs, dtype=self.dtype).to(device=self.device)

    # ------------------------------------------------------------------ exact score model
    def score_model(self, process: ForwardProcess, exact_prior: bool = True) -> "ExactMixtureScoreModel":
        """The exact score model of ``p_t`` under ``process`` (any process with Gaussian marginals).

        Args:
            process: a :class:`sdeflow.ForwardProcess` (built-in or third-party).
            exact_prior: draw initial samples from the exact ``p_{t_max}`` instead of the
                process's data-free prior, so a sampler's error is its own, not the prior's.
        """
        return ExactMixtureScoreModel(self, process, exact_prior=exact_prior)

    def __repr__(self) -> str:
        return f"GaussianMixture(K={self.n_components}, d={self.dim}, dtype={self.dtype})"


class _MixtureParams(nn.Module):
    """Holds a mixture's tensors as buffers so ``.to(device, dtype)`` moves them."""

    weights: Tensor
    means: Tensor
    eigvals: Tensor
    eigvecs: Tensor

    def __init__(self, gmm: GaussianMixture, dtype: torch.dtype) -> None:
        super().__init__()
        g = gmm.to(dtype=dtype)
        self.register_buffer("weights", g.weights)
        self.register_buffer("means", g.means)
        self.register_buffer("eigvals", g.eigvals)
        self.register_buffer("eigvecs", g.eigvecs)
        self.diagonal = g.diagonal

    def mixture(self) -> GaussianMixture:
        out = object.__new__(GaussianMixture)
        out.weights, out.means, out.eigvals, out.eigvecs = self.weights, self.means, self.eigvals, self.eigvecs
        out.diagonal = self.diagonal
        return out

    def forward(self, x: Tensor, t_cond: Tensor) -> Tensor:  # pragma: no cover - never called
        raise RuntimeError("the exact mixture score is computed by ExactMixtureScoreModel.network_output")


class ExactMixtureScoreModel(ScoreModel):
    """The exact score of a Gaussian mixture diffused by ``process`` (parametrization ``score``).

    Its dtype and device are those of the mixture's buffers (the mixture's own by default;
    ``.to(torch.float64)`` switches to double precision).
    """

    def __init__(self, gmm: GaussianMixture, process: ForwardProcess, exact_prior: bool = True,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__(_MixtureParams(gmm, dtype or gmm.dtype), process, parametrization="score")
        self.exact_prior = exact_prior

    @property
    def _params(self) -> _MixtureParams:
        return cast(_MixtureParams, self.network)

    @property
    def mixture(self) -> GaussianMixture:
        """The data distribution ``p_0`` (on the model's device and dtype)."""
        return self._params.mixture()

    @property
    def num_classes(self) -> int:
        """The components are the classes: ``given(labels)`` conditions on component indices."""
        return self._params.mixture().n_components

    def network_output(self, x: Tensor, t: Tensor) -> Tensor:
        a, s = self.process.marginal(t)
        return self._params.mixture().marginal_score(x, a, s)

    def conditional_output(self, x: Tensor, t: Tensor, labels: Tensor) -> Tensor:
        """The exact score of each sample's component ``grad log p_t(x | c)`` (``c = -1``: the mixture's)."""
        a, s = self.process.marginal(t)
        return self._params.mixture().marginal_score(x, a, s, components=labels)

    def conditional_prior_sample(self, shape: Sequence[int], labels: Tensor | None,
                                 generator: torch.Generator | None = None, device: torch.device | str | None = None,
                                 dtype: torch.dtype | None = None) -> Tensor:
        """Initial samples: with ``exact_prior``, each sample's component of ``p_{t_max}`` (the exact
        ``p_{t_max}(x | c)``)."""
        if labels is None or not self.exact_prior:
            return self.prior_sample(shape, generator, device, dtype)
        pt = self._prior_mixture(shape)
        x = pt.sample(int(shape[0]), generator, components=labels.to(pt.device))
        return x.reshape(tuple(shape)).to(device=device or self.device, dtype=dtype or self.dtype)

    def conditional_prior_log_prob(self, x: Tensor, labels: Tensor | None) -> Tensor:
        """Log-density of :meth:`conditional_prior_sample`."""
        if labels is None or not self.exact_prior:
            return self.prior_log_prob(x)
        t = self.process.check_time(float(self.process.t_max), x.shape[0], like=x)
        a, s = self.process.marginal(t)
        return self._params.mixture().marginal_log_prob(x, a, s, components=labels)

    def marginal_log_prob(self, x: Tensor, t: Tensor | float) -> Tensor:
        """``log p_t(x)`` in closed form (nats, shape ``(batch,)``)."""
        t = self.process.check_time(t, x.shape[0], like=x)
        a, s = self.process.marginal(t)
        return self._params.mixture().marginal_log_prob(x, a, s)

    def marginal_mixture(self, t: float) -> GaussianMixture:
        """``p_t`` itself, as a :class:`GaussianMixture`."""
        tt = self.process.check_time(torch.tensor([float(t)], dtype=self.dtype, device=self.device))
        a, s = self.process.marginal(tt)
        return self._params.mixture().at(float(a[0]), float(s[0]))

    def prior_sample(self, shape: Sequence[int], generator: torch.Generator | None = None,
                     device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Tensor:
        """Initial samples: exact ``p_{t_max}`` when ``exact_prior`` (else the process prior)."""
        if not self.exact_prior:
            return super().prior_sample(shape, generator, device, dtype)
        x = self._prior_mixture(shape).sample(int(shape[0]), generator)
        return x.reshape(tuple(shape)).to(device=device or self.device, dtype=dtype or self.dtype)

    def _prior_mixture(self, shape: Sequence[int]) -> GaussianMixture:
        pt = self.marginal_mixture(float(self.process.t_max))
        if int(torch.Size(tuple(shape)[1:]).numel()) != pt.dim:
            raise ShapeError(f"the mixture has dimension {pt.dim}: sample shape must be (n, {pt.dim}) (or (n, *dims) "
                             f"with {pt.dim} values each), got {tuple(shape)}")
        return pt

    def prior_log_prob(self, x: Tensor) -> Tensor:
        """Log-density of the prior used by :meth:`prior_sample`."""
        if not self.exact_prior:
            return super().prior_log_prob(x)
        return self.marginal_log_prob(x, float(self.process.t_max))
