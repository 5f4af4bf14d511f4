"""Shared test helpers: torch on CPU, deterministic seeds, array comparison."""

import numpy as np
import pytest
import torch  # a test dependency: fail loudly, never skip
from hypothesis import settings

# Property tests draw the same examples on every run (CI must not flake); explore new ones with
# `python -m pytest --hypothesis-profile=explore`.
settings.register_profile("default", derandomize=True)
settings.register_profile("explore", derandomize=False, max_examples=200)
settings.load_profile("default")

torch.set_num_threads(2)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def assert_close(actual, expected, rtol=1e-5, atol=1e-6):
    """Compare a JAX/numpy array with a torch tensor or array."""
    if hasattr(expected, "detach"):
        expected = expected.detach().cpu().numpy()
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=rtol, atol=atol)
