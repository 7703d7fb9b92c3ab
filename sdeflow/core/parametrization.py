"""Conversions between the five network parametrizations.

With the Gaussian perturbation ``x_t = a x0 + s eps`` (``a = alpha_t``, ``s = sigma_t``):

* score    ``= -eps / s``                                (Song et al. 2021, Eq. 3 and 7)
* x0       ``= (x_t - s eps) / a``                        (Tweedie's formula)
* v        ``= a eps - s x0``                             (Salimans & Ho 2022, Eq. 9)
* velocity ``u = a' x0 + s' eps``                         (the flow ``dx_t/dt`` of the interpolation;
  Lipman et al. 2023, Eq. 15-16 and 23; Liu et al. 2022, Eq. 1), with ``a' = d alpha_t/dt``,
  ``s' = d sigma_t/dt``. For the linear path ``x_t = (1 - t) x0 + t eps`` it is ``eps - x0``.

For ``a^2 + s^2 != 1`` (VE, sub-VP) the v relations are solved in general form:
``x0 = (a x_t - s v) / (a^2 + s^2)`` and ``eps = (s x_t + a v) / (a^2 + s^2)``. The velocity
relations follow from the 2x2 system ``(x_t, u) = M (x0, eps)`` with determinant
``D = a s' - s a' = a^2 d(s/a)/dt``, positive wherever the log-SNR decreases:
``eps = (a u - a' x_t) / D`` and ``x0 = (s' x_t - s u) / D``.

The velocity is not Salimans and Ho's ``v``: ``v`` is the rate of change of ``x_t`` along the
angle ``phi = atan(s / a)`` of a variance-preserving path, the velocity its rate of change in the
process's own time. For the trigonometric path ``a = cos(pi t / 2)``, ``s = sin(pi t / 2)`` they
differ by the constant factor ``pi / 2``; for the linear path ``u = ((2t - 1) x_t + v) / ((1 - t)^2 + t^2)``.

One module serves every process and every sampler. ``a``, ``s`` (and ``da``, ``ds``) must already
be broadcast to the data's shape (see :func:`sdeflow.utils.shapes.append_dims`).
"""

from __future__ import annotations

from torch import Tensor

from ..errors import OptionError

PARAMETRIZATIONS: tuple[str, ...] = ("eps", "score", "x0", "v", "velocity")
#: parametrizations whose conversions need the time derivatives ``d alpha_t/dt``, ``d sigma_t/dt``
NEEDS_DERIVATIVES: frozenset[str] = frozenset({"velocity"})


def check_parametrization(name: str) -> str:
    """Return ``name`` if it is a known parametrization, else raise listing the valid ones."""
    if name not in PARAMETRIZATIONS:
        raise OptionError(f"unknown parametrization {name!r}; valid: {', '.join(PARAMETRIZATIONS)}")
    return name


def _unknown(kind: str) -> OptionError:
    return OptionError(f"unknown parametrization {kind!r}; valid: {', '.join(PARAMETRIZATIONS)}")


def _derivatives(da: Tensor | None, ds: Tensor | None) -> tuple[Tensor, Tensor]:
    if da is None or ds is None:
        raise OptionError("the velocity parametrization needs the time derivatives of the marginal: pass "
                          "da = d alpha_t/dt and ds = d sigma_t/dt (ForwardProcess.marginal_and_derivatives)")
    return da, ds


def to_eps(kind: str, out: Tensor, x: Tensor, a: Tensor, s: Tensor, *, da: Tensor | None = None,
           ds: Tensor | None = None) -> Tensor:
    """Noise prediction ``eps`` from a network output of parametrization ``kind``."""
    if kind == "eps":
        return out
    if kind == "score":
        return -s * out
    if kind == "x0":
        return (x - a * out) / s
    if kind == "v":
        return (s * x + a * out) / (a * a + s * s)
    if kind == "velocity":
        da, ds = _derivatives(da, ds)
        return (a * out - da * x) / (a * ds - s * da)
    raise _unknown(kind)


def to_x0(kind: str, out: Tensor, x: Tensor, a: Tensor, s: Tensor, *, da: Tensor | None = None,
          ds: Tensor | None = None) -> Tensor:
    """Denoised estimate ``E[x0 | x_t]`` from a network output of parametrization ``kind``."""
    if kind == "x0":
        return out
    if kind == "eps":
        return (x - s * out) / a
    if kind == "score":
        return (x + s * s * out) / a
    if kind == "v":
        return (a * x - s * out) / (a * a + s * s)
    if kind == "velocity":
        da, ds = _derivatives(da, ds)
        return (ds * x - s * out) / (a * ds - s * da)
    raise _unknown(kind)


def to_score(kind: str, out: Tensor, x: Tensor, a: Tensor, s: Tensor, *, da: Tensor | None = None,
             ds: Tensor | None = None) -> Tensor:
    """Score ``grad_x log p_t(x)`` from a network output of parametrization ``kind``."""
    if kind == "score":
        return out
    if kind == "eps":
        return -out / s
    if kind == "x0":
        return (a * out - x) / (s * s)
    if kind == "v":
        return -(s * x + a * out) / ((a * a + s * s) * s)
    if kind == "velocity":
        da, ds = _derivatives(da, ds)
        return (da * x - a * out) / ((a * ds - s * da) * s)
    raise _unknown(kind)


def to_v(kind: str, out: Tensor, x: Tensor, a: Tensor, s: Tensor, *, da: Tensor | None = None,
         ds: Tensor | None = None) -> Tensor:
    """Salimans and Ho's ``v = a eps - s x0`` from a network output of parametrization ``kind``."""
    if kind == "v":
        return out
    eps = to_eps(kind, out, x, a, s, da=da, ds=ds)
    x0 = to_x0(kind, out, x, a, s, da=da, ds=ds)
    return a * eps - s * x0


def to_velocity(kind: str, out: Tensor, x: Tensor, a: Tensor, s: Tensor, *, da: Tensor | None = None,
                ds: Tensor | None = None) -> Tensor:
    """The flow's velocity ``u = a' E[x0 | x_t] + s' E[eps | x_t]`` (Lipman et al. 2023, Eq. 15-16)
    from a network output of parametrization ``kind``.

    It equals the probability-flow ODE's vector field ``f x - g^2 score / 2`` (Song et al. 2021,
    Eq. 13) of the process with these marginals: from the score it reads
    ``u = (a'/a) x - (D s / a) score`` with ``D = a s' - s a'``.
    """
    da, ds = _derivatives(da, ds)
    if kind == "velocity":
        return out
    if kind == "eps":
        return (da / a) * x + ((a * ds - s * da) / a) * out
    if kind == "score":
        return (da / a) * x - ((a * ds - s * da) * s / a) * out
    if kind == "x0":
        return (ds / s) * x - ((a * ds - s * da) / s) * out
    if kind == "v":
        return ((a * da + s * ds) * x + (a * ds - s * da) * out) / (a * a + s * s)
    raise _unknown(kind)


def from_x0(kind: str, x0: Tensor, x: Tensor, a: Tensor, s: Tensor, *, da: Tensor | None = None,
            ds: Tensor | None = None) -> Tensor:
    """The output of parametrization ``kind`` that predicts the data ``x0`` at ``x_t = x`` (what an exact
    model of the point mass at ``x0`` outputs): ``x0`` itself, ``eps = (x - a x0) / s``,
    ``score = (a x0 - x) / s^2``, ``v = a eps - s x0`` or the velocity ``a' x0 + s' eps``."""
    if kind == "x0":
        return x0
    convert = {"eps": to_eps, "score": to_score, "v": to_v, "velocity": to_velocity}.get(kind)
    if convert is None:
        raise _unknown(kind)
    return convert("x0", x0, x, a, s, da=da, ds=ds)


def target(kind: str, x0: Tensor, eps: Tensor, a: Tensor, s: Tensor, *, da: Tensor | None = None,
           ds: Tensor | None = None) -> Tensor:
    """Regression target of parametrization ``kind`` for the pair ``(x0, eps)``.

    ``score`` targets ``-eps / s``, the conditional score of ``q(x_t | x0)``
    (Vincent 2011; Song et al. 2021, Eq. 7); ``velocity`` the conditional velocity
    ``a' x0 + s' eps`` (Lipman et al. 2023, Eq. 23).
    """
    if kind == "eps":
        return eps
    if kind == "x0":
        return x0
    if kind == "v":
        return a * eps - s * x0
    if kind == "score":
        return -eps / s
    if kind == "velocity":
        da, ds = _derivatives(da, ds)
        return da * x0 + ds * eps
    raise _unknown(kind)
