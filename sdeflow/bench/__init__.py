"""``sdeflow bench``: solver accuracy against ground truth, side by side with diffusers' schedulers.

A run is a grid of target x process x sampler x NFE budget (:class:`BenchSpec`, presets
``quick`` and ``full``). Every cell records the NFE actually used, the wall time, each metric
with its noise floor, and the pathwise error against a tight reference from the same initial
noise (deterministic samplers) or the strong error on a shared Brownian path (``sde``); empirical
orders are fitted per line. Targets and metrics are components registered through the hooks
``sdeflow_register_targets`` / ``sdeflow_register_metrics``. See ``docs/bench.md``.

    import sdeflow.bench as bench
    spec = bench.preset("quick", targets=["nine_gaussians"])
    result = bench.run_bench(spec)
    bench.write_outputs(result, "bench_out")
"""

from .configs import BUILTIN_CONFIGS, SamplerConfig, resolve_config
from .metrics import BUILTIN_METRICS, Metric
from .outputs import summary_markdown, terminal_table, to_json, write_outputs
from .peers import PEER_CONFIGS, PeerConfig, peers_available, run_peer
from .runner import BenchResult, run_bench
from .spec import FULL, PRESETS, QUICK, BenchSpec, preset
from .targets import BUILTIN_TARGETS, PreparedTarget, prepare_target

__all__ = [
    "BUILTIN_CONFIGS", "BUILTIN_METRICS", "BUILTIN_TARGETS", "BenchResult", "BenchSpec", "FULL", "Metric",
    "PEER_CONFIGS", "PRESETS", "PeerConfig", "PreparedTarget", "QUICK", "SamplerConfig", "peers_available",
    "prepare_target", "preset", "resolve_config", "run_bench", "run_peer", "summary_markdown", "terminal_table",
    "to_json", "write_outputs",
]
