"""Layer 1, utilities: shape checks and broadcasting, batch sharding, atomic file writes."""
