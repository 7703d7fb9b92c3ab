"""Layer 2, the mathematics: forward processes and their reverse-time dynamics, parametrizations,
score models, training losses, the sampler interface and exact likelihoods."""
