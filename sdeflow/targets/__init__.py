"""Analytic target distributions with known densities and scores."""

from .gaussian_mixture import ExactMixtureScoreModel, GaussianMixture

__all__ = ["GaussianMixture", "ExactMixtureScoreModel"]
