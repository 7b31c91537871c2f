"""Shared test settings."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """On 2 cores, tiny networks run faster on one torch thread than on two contending ones
    (and CI shares the machine). Imported lazily: most tests never touch torch."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
