"""Layer 5, data: analytic Gaussian-mixture targets, toy data sets, images and sample metrics."""

from .datasets import anisotropic_mixture, checkerboard, gaussian_1d, nine_gaussians, swiss_roll, two_moons
from .gaussian_mixture import ExactMixtureScoreModel, GaussianMixture

__all__ = ["ExactMixtureScoreModel", "GaussianMixture", "anisotropic_mixture", "checkerboard", "gaussian_1d",
           "nine_gaussians", "swiss_roll", "two_moons"]
