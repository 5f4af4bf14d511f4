"""Shared test helpers: torch on CPU, deterministic seeds, array comparison."""

import importlib.util
import os
import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch  # a test dependency: fail loudly, never skip
from hypothesis import settings

import funcnet.testing as funcnet_testing

# Property tests draw the same examples on every run (CI must not flake); explore new ones with
# `python -m pytest --hypothesis-profile=explore`.
settings.register_profile("default", derandomize=True)
settings.register_profile("explore", derandomize=False, max_examples=200)
settings.load_profile("default")

torch.set_num_threads(2)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _reseed_module_rng(request):
    """A test module's shared generator (``RNG``/``rng`` at module level) restarts from a seed of the
    test's own id before each test, so a test draws the same numbers however pytest-xdist orders
    and distributes the tests (a shared stream made one parity case pass or fail by worker)."""
    module = request.module
    for name in ("RNG", "rng"):
        if isinstance(getattr(module, name, None), np.random.Generator):
            setattr(module, name, np.random.default_rng(zlib.crc32(request.node.nodeid.encode())))


def assert_close(actual, expected, rtol=1e-5, atol=1e-6):
    """The suite's parity tolerance (1e-5 relative, 1e-6 absolute) over ``funcnet.testing.assert_close``:
    a JAX/numpy array (or pytree) against a torch tensor or array; dtypes may differ (float32 JAX
    against float64 references), NaNs in the same places are equal (numpy's rule, kept)."""
    funcnet_testing.assert_close(actual, expected, rtol=rtol, atol=atol, check_dtype=False, equal_nan=True)


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_example(name: str):
    """``examples/<name>.py`` as a module (without running its ``main``), so a test exercises the
    example's own code rather than a copy of it."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", os.path.join(ROOT, "examples", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_example(name: str, *args: str, timeout: int = 300) -> list[str]:
    """Run ``examples/<name>`` as a user does (a fresh interpreter in the repository root); its
    stdout lines. Fails with the end of stderr if the example exits non-zero."""
    result = subprocess.run([sys.executable, os.path.join(ROOT, "examples", name), *args], cwd=ROOT,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()


class TorchSeedNet(torch.nn.Module):
    """The seed program's network in PyTorch (784→128→64→10, ReLU): the reference for the
    translation in examples/mnist.py (``load_example("mnist").Net``)."""

    def __init__(self, in_features: int = 784):
        super().__init__()
        self.fc1 = torch.nn.Linear(in_features, 128)
        self.fc2 = torch.nn.Linear(128, 64)
        self.fc3 = torch.nn.Linear(64, 10)

    def forward(self, x):
        x = torch.flatten(x, 1)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)
