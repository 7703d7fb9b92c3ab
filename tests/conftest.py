"""Fixtures shared by the test modules.

``single_thread``: modules whose tensors are tiny (exact-score solver tests, samplers, bench
suite) opt in with ``pytestmark = pytest.mark.usefixtures("single_thread")``. On a busy 2-core
machine OpenMP's intra-op threads made each solver step tens of times slower; the previous
thread count is restored after the module, so the training and UNet tests keep theirs.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(scope="module")
def single_thread() -> Iterator[None]:
    """One intra-op thread for the module, restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
