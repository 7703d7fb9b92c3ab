"""Conversions between the four network parametrizations.

With the Gaussian perturbation ``x_t = a x0 + s eps`` (``a = alpha_t``, ``s = sigma_t``):

* score ``= -eps / s``                                   (Song et al. 2021, Eq. 3 and 7)
* x0    ``= (x_t - s eps) / a``                           (Tweedie's formula)
* v     ``= a eps - s x0``                                (Salimans & Ho 2022, Eq. 9)

For ``a^2 + s^2 != 1`` (VE, sub-VP) the v relations are solved in general form:
``x0 = (a x_t - s v) / (a^2 + s^2)`` and ``eps = (s x_t + a v) / (a^2 + s^2)``.

One module serves every process and every sampler. ``a`` and ``s`` must already be
broadcast to the data's shape (see :func:`sdeflow.utils.shapes.append_dims`).
"""

from __future__ import annotations

from torch import Tensor

from ..errors import OptionError

PARAMETRIZATIONS: tuple[str, ...] = ("eps", "score", "x0", "v")


def check_parametrization(name: str) -> str:
    """Return ``name`` if it is a known parametrization, else raise listing the valid ones."""
    if name not in PARAMETRIZATIONS:
        raise OptionError(f"unknown parametrization {name!r}; valid: {', '.join(PARAMETRIZATIONS)}")
    return name


def to_eps(kind: str, out: Tensor, x: Tensor, a: Tensor, s: Tensor) -> Tensor:
    """Noise prediction ``eps`` from a network output of parametrization ``kind``."""
    if kind == "eps":
        return out
    if kind == "score":
        return -s * out
    if kind == "x0":
        return (x - a * out) / s
    if kind == "v":
        return (s * x + a * out) / (a * a + s * s)
    raise OptionError(f"unknown parametrization {kind!r}; valid: {', '.join(PARAMETRIZATIONS)}")


def to_x0(kind: str, out: Tensor, x: Tensor, a: Tensor, s: Tensor) -> Tensor:
    """Denoised estimate ``E[x0 | x_t]`` from a network output of parametrization ``kind``."""
    if kind == "x0":
        return out
    if kind == "eps":
        return (x - s * out) / a
    if kind == "score":
        return (x + s * s * out) / a
    if kind == "v":
        return (a * x - s * out) / (a * a + s * s)
    raise OptionError(f"unknown parametrization {kind!r}; valid: {', '.join(PARAMETRIZATIONS)}")


def to_score(kind: str, out: Tensor, x: Tensor, a: Tensor, s: Tensor) -> Tensor:
    """Score ``grad_x log p_t(x)`` from a network output of parametrization ``kind``."""
    if kind == "score":
        return out
    if kind == "eps":
        return -out / s
    if kind == "x0":
        return (a * out - x) / (s * s)
    if kind == "v":
        return -(s * x + a * out) / ((a * a + s * s) * s)
    raise OptionError(f"unknown parametrization {kind!r}; valid: {', '.join(PARAMETRIZATIONS)}")


def to_v(kind: str, out: Tensor, x: Tensor, a: Tensor, s: Tensor) -> Tensor:
    """Velocity ``v = a eps - s x0`` from a network output of parametrization ``kind``."""
    if kind == "v":
        return out
    eps = to_eps(kind, out, x, a, s)
    x0 = to_x0(kind, out, x, a, s)
    return a * eps - s * x0


def from_x0(kind: str, x0: Tensor, x: Tensor, a: Tensor, s: Tensor) -> Tensor:
    """The output of parametrization ``kind`` that predicts the data ``x0`` at ``x_t = x``: ``x0`` itself,
    ``eps = (x - a x0) / s``, ``score = (a x0 - x) / s^2`` or ``v = a eps - s x0`` (what an exact model of
    the point mass at ``x0`` outputs)."""
    if kind == "x0":
        return x0
    if kind == "eps":
        return to_eps("x0", x0, x, a, s)
    if kind == "score":
        return to_score("x0", x0, x, a, s)
    if kind == "v":
        return to_v("x0", x0, x, a, s)
    raise OptionError(f"unknown parametrization {kind!r}; valid: {', '.join(PARAMETRIZATIONS)}")


def target(kind: str, x0: Tensor, eps: Tensor, a: Tensor, s: Tensor) -> Tensor:
    """Regression target of parametrization ``kind`` for the pair ``(x0, eps)``.

    ``score`` targets ``-eps / s``, the conditional score of ``q(x_t | x0)``
    (Vincent 2011; Song et al. 2021, Eq. 7).
    """
    if kind == "eps":
        return eps
    if kind == "x0":
        return x0
    if kind == "v":
        return a * eps - s * x0
    if kind == "score":
        return -eps / s
    raise OptionError(f"unknown parametrization {kind!r}; valid: {', '.join(PARAMETRIZATIONS)}")
