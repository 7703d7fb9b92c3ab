"""sdeflow's built-in plugins, one package each, found through the ``sdeflow`` entry points."""
