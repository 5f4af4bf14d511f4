"""pytest plugin for numeric tests of JAX models (opt-in).

Enable it per run with ``python -m pytest -p funcnet.testing.pytest_plugin``, or for a project in
its top-level ``conftest.py``: ``pytest_plugins = ["funcnet.testing.pytest_plugin"]``. It is not
registered as a ``pytest11`` entry point on purpose: its fixture names (``key``, ``assert_close``)
are generic, and installing funcnet should not add fixtures to unrelated test suites.

Provides:
- fixture ``key``: a ``jax.random.key`` for this test, derived from ``--funcnet-seed`` (default 0)
  and the test's node id (so each test gets its own stream, independent of test order and of
  which other tests run). A failing test's report shows the seed and node id to reproduce it;
  ``--funcnet-seed N`` reruns the suite on other draws.
- fixture ``assert_close``: :func:`funcnet.testing.assert_close`.
- marker ``@pytest.mark.funcnet_jit_and_eager``: the test runs twice, ``[jit]`` as usual and
  ``[eager]`` under ``jax.disable_jit()`` (every ``jax.jit`` runs op by op in Python, so
  Python-side logic is exercised and both paths must give the test's numbers). The test may ask
  for the fixture ``funcnet_jit_mode`` (``"jit"`` or ``"eager"``).

JAX is imported only when a fixture or the marker is used; torch never.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any

import pytest

MARKER = "funcnet_jit_and_eager"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("funcnet")
    group.addoption("--funcnet-seed", type=int, default=0,
                    help="seed of the per-test PRNG keys of the `key` fixture (default 0)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}: run the test twice, jitted and under jax.disable_jit() (funcnet.testing)")


def _nodeid_hash(nodeid: str) -> int:
    """The integer folded into ``jax.random.key(seed)`` for a test: crc32 of its node id (stable
    across runs and machines, unlike ``hash``)."""
    return zlib.crc32(nodeid.encode())


def _nodeid_without_jit_mode(item: pytest.Item) -> str:
    """The node id, without the ``[jit]``/``[eager]`` part the marker adds: both runs get the same key."""
    callspec = getattr(item, "callspec", None)
    if callspec is None or "funcnet_jit_mode" not in callspec.params:
        return item.nodeid
    mode = callspec.params["funcnet_jit_mode"]
    return item.nodeid.replace(f"[{mode}]", "").replace(f"-{mode}]", "]").replace(f"[{mode}-", "[")


@pytest.fixture
def key(request: pytest.FixtureRequest) -> Any:
    """A ``jax.random.key`` for this test: ``fold_in(key(--funcnet-seed), crc32(node id))``."""
    import jax

    seed = request.config.getoption("funcnet_seed")
    nodeid = _nodeid_without_jit_mode(request.node)
    return jax.random.fold_in(jax.random.key(seed), _nodeid_hash(nodeid))


@pytest.fixture(name="assert_close")
def assert_close_fixture() -> Any:
    """:func:`funcnet.testing.assert_close`."""
    from funcnet.testing import assert_close

    return assert_close


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker(MARKER) is None:
        return
    if "funcnet_jit_mode" not in metafunc.fixturenames:
        metafunc.fixturenames.append("funcnet_jit_mode")
    metafunc.parametrize("funcnet_jit_mode", ["jit", "eager"], indirect=True)


@pytest.fixture
def funcnet_jit_mode(request: pytest.FixtureRequest) -> Iterator[str]:
    """``"jit"`` or ``"eager"`` (under ``jax.disable_jit()``) for tests marked ``funcnet_jit_and_eager``."""
    mode = getattr(request, "param", "jit")
    if mode == "eager":
        import jax

        with jax.disable_jit():
            yield mode
    else:
        yield mode


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed and "key" in getattr(item, "fixturenames", ()):
        seed = item.config.getoption("funcnet_seed")
        nodeid = _nodeid_without_jit_mode(item)
        report.sections.append((
            "funcnet key",
            f"key = jax.random.fold_in(jax.random.key({seed}), {_nodeid_hash(nodeid)})"
            f"  # --funcnet-seed {seed}, node id {nodeid!r}"))
