"""Shared test helpers: torch on CPU, deterministic seeds, array comparison, fast XLA compiles."""

import importlib.util
import os
import subprocess
import sys
import zlib

# XLA compiles most of this suite's time away (~55% of it with XLA's default settings). Unless the
# caller chose these settings (XLA_FLAGS) or set FUNCNET_TEST_COMPILE=default, tests compile with
# XLA:CPU's LLVM optimisations off and its older elemental emitters instead of the MLIR fusion
# emitters: the HLO graph and its fusions are XLA's usual ones, elementwise code may round
# differently by an ulp (no fused multiply-adds), and the whole suite takes ~35% less time (431 ->
# 287 s on 2 cores; -O0 alone: 536 -> 431 s). Set here, before anything starts JAX's backend;
# subprocesses (examples, multi-process tests) inherit it. Tests whose checks sit at ulp level carry
# @pytest.mark.default_compile and run in a fresh process compiled as users' programs are (see
# pytest_pyfunc_call below).
_FAST_XLA_FLAGS = {"xla_backend_optimization_level": "0", "xla_cpu_use_fusion_emitters": "false"}
# The caller's XLA_FLAGS, kept across the processes this one starts (pytest-xdist's workers inherit
# the XLA_FLAGS set below, so they read the caller's from here).
_USER_XLA_FLAGS = os.environ.setdefault("FUNCNET_TEST_USER_XLA_FLAGS", os.environ.get("XLA_FLAGS", ""))
FAST_COMPILE = (os.environ.get("FUNCNET_TEST_COMPILE", "fast") == "fast"
                and not any(name in _USER_XLA_FLAGS for name in _FAST_XLA_FLAGS))
if FAST_COMPILE:
    os.environ["XLA_FLAGS"] = " ".join([_USER_XLA_FLAGS, *(f"--{k}={v}" for k, v in _FAST_XLA_FLAGS.items())]).strip()

import numpy as np  # noqa: E402 (after XLA_FLAGS)
import pytest  # noqa: E402 (after XLA_FLAGS)
import torch  # noqa: E402 (after XLA_FLAGS) — a test dependency: fail loudly, never skip
from hypothesis import settings  # noqa: E402 (after XLA_FLAGS)

import funcnet.testing as funcnet_testing  # noqa: E402 (after XLA_FLAGS)

# Property tests draw the same examples on every run (CI must not flake); explore new ones with
# `python -m pytest --hypothesis-profile=explore`.
settings.register_profile("default", derandomize=True)
settings.register_profile("explore", derandomize=False, max_examples=200)
settings.load_profile("default")

torch.set_num_threads(2)


def pytest_pyfunc_call(pyfuncitem):
    """A ``default_compile`` test, while the suite compiles fast: run it in a fresh pytest process
    at XLA's default level (its fixtures there are its own) and report that run's result."""
    if not (FAST_COMPILE and pyfuncitem.get_closest_marker("default_compile")):
        return None
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    env.update(XLA_FLAGS=_USER_XLA_FLAGS, FUNCNET_TEST_COMPILE="default")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", pyfuncitem.nodeid],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        pytest.fail(f"{pyfuncitem.nodeid} failed when compiled at XLA's default level (a fresh process):\n"
                    f"{result.stdout[-6000:]}{result.stderr[-2000:]}", pytrace=False)
    return True


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


def assert_close_to_scale(actual, expected, rtol=1e-5):
    """``actual`` equals ``expected`` (a torch tensor or array) to ``rtol`` relative, with an absolute
    slack of ``rtol`` × max(1, max |expected|): for sums of many terms (convolutions, products),
    whose rounding scales with the largest values rather than with each element."""
    expected = expected.detach().numpy() if hasattr(expected, "detach") else np.asarray(expected)
    actual = np.asarray(actual)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


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
