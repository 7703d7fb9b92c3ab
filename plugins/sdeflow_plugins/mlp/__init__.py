"""Plugin ``mlp``: a time-conditioned MLP for vector data."""

import sdeflow

from .network import TimeMLP, sinusoidal_embedding


@sdeflow.hookimpl
def sdeflow_register_models(registry: sdeflow.RegistryView) -> None:
    """Register ``mlp``."""
    registry.add("mlp", TimeMLP)


__all__ = ["TimeMLP", "sinusoidal_embedding"]
