"""How long the conformance kit takes per component, from pytest's own per-test durations.

    OMP_NUM_THREADS=1 python benchmarks/kit_timing.py              # the built-ins, as sdeflow's tests run them
    OMP_NUM_THREADS=1 python benchmarks/kit_timing.py example      # plugins by entry-point name, as an author runs
                                                                   # the kit (pytest plugin, default options)

Built-ins: tests/test_testing_kit.py (every sampler and model check, with the options given
there; the samplers under every process) and tests/test_process_conformance.py (every process
check), one test per component and check. Prints one row per component: the checks' total time
("call" durations), the slowest check, and how many checks ran. Results: docs/conformance-kit.md.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections import defaultdict

DURATION = re.compile(r"^\s*([\d.]+)s\s+call\s+\S+::(\w+)\[(.+)\]\s*$")
#: test function -> (kind, how the parameter id splits into component and check)
BUILTIN_TESTS = {
    "test_builtin_samplers_pass_the_kit": "sampler",
    "test_builtin_models_pass_the_kit": "model",
    "test_builtin_samplers_pass_under_every_process": "sampler under every process:",
}
#: the exact-score check's mixtures (a second parameter of its test)
MIXTURES = ("1d", "2d", "5d_full")


def pytest_durations(args: list[str]) -> list[tuple[float, str, str]]:
    """``(seconds, test function, parameter id)`` of every test pytest ran with ``args``."""
    cmd = [sys.executable, "-m", "pytest", *args, "--durations=0", "--durations-min=0", "-q", "-p", "no:cacheprovider"]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}).stdout
    return [(float(m.group(1)), m.group(2), m.group(3)) for m in map(DURATION.match, out.splitlines()) if m]


def builtin_rows() -> dict[str, list[tuple[float, str]]]:
    """Per component, the ``(seconds, check)`` of each kit check sdeflow's tests run on it."""
    per: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for sec, func, pid in pytest_durations(["tests/test_testing_kit.py", "-m", "slow or not slow", "-k",
                                            " or ".join(BUILTIN_TESTS)]):
        if func in BUILTIN_TESTS:
            name, check = pid.split("-", 1)
            per[f"{BUILTIN_TESTS[func]} {name}"].append((sec, check))
    for sec, func, pid in pytest_durations(["tests/test_process_conformance.py"]):
        parts = pid.split("-")
        name = next((p for p in parts if p not in MIXTURES), parts[0])
        extra = "-".join(p for p in parts if p != name)
        per[f"process {name}"].append((sec, func.removeprefix("test_") + (f"[{extra}]" if extra else "")))
    return per


def plugin_rows(plugin: str) -> dict[str, list[tuple[float, str]]]:
    """Per component of ``plugin``, the ``(seconds, check)`` of the kit's pytest plugin run on it."""
    per: dict[str, list[tuple[float, str]]] = defaultdict(list)
    args = ["-p", "sdeflow.testing.pytest_plugin", "--sdeflow-plugin", plugin, "--pyargs", "sdeflow.testing.suite"]
    for sec, _, pid in pytest_durations(args):
        component, _, check = pid.rpartition("::")
        per[component].append((sec, check))
    return per


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plugins", nargs="*", help="plugin entry-point names (default: the built-ins through the tests)")
    opts = parser.parse_args()
    rows: dict[str, list[tuple[float, str]]] = {}
    if opts.plugins:
        for plugin in opts.plugins:
            rows.update(plugin_rows(plugin))
    else:
        rows = builtin_rows()
    print("| component | checks | total (s) | slowest check (s) |")
    print("|---|---:|---:|---|")
    for component, checks in sorted(rows.items()):
        slow_s, slow = max(checks)
        print(f"| `{component}` | {len(checks)} | {sum(s for s, _ in checks):.1f} | {slow} ({slow_s:.1f}) |")


if __name__ == "__main__":
    main()
