"""Layer 4, the plugin framework: hook specifications, registries, the plugin manager and the
factories (``create_process``, ``create_model``, ``create_sampler``)."""
