"""The kit's test: one test per selected component and check (see :mod:`sdeflow.testing.pytest_plugin`).

Import it into a test module of a plugin's own test suite::

    from sdeflow.testing.suite import test_sdeflow_conformance  # noqa: F401

or run it directly: ``pytest -p sdeflow.testing.pytest_plugin --sdeflow-plugin NAME --pyargs sdeflow.testing.suite``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .pytest_plugin import Case


def test_sdeflow_conformance(sdeflow_case: "Case") -> None:
    """Run one conformance check on one component (parametrized by the pytest plugin)."""
    sdeflow_case.run()
