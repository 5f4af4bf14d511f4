"""funcnet.host_memory: the malloc parameters set at import, and the page faults they remove."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

import funcnet.host_memory as host_memory

linux_glibc = pytest.mark.skipif(host_memory._glibc() is None, reason="mallopt is glibc's (Linux)")

# A step whose temporary buffer (78 MiB: the reversed copy of x) is over glibc's 64 MiB limit for
# the arenas of threads other than the main one; returns the page faults of each call.
_PROBE = textwrap.dedent(
    """
    import json, resource, statistics
    import funcnet
    import funcnet.host_memory as host_memory
    import jax, jax.numpy as jnp
    x = jnp.ones((80_000, 256), jnp.float32)
    w = jnp.ones((256, 4), jnp.float32)
    step = jax.jit(lambda x, w: jnp.sum(jax.lax.rev(x, (0,)) @ w))
    temp = step.lower(x, w).compile().memory_analysis().temp_size_in_bytes
    faults = []
    for _ in range(45):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        step(x, w).block_until_ready()
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print(json.dumps({"policy": host_memory.policy(), "temp_pages": temp / 4096,
                      "faults": statistics.median(faults[25:])}))
    """
)


def _cpu_env() -> dict[str, str]:
    """This environment for a CPU subprocess with funcnet's default host policy."""
    env = {k: v for k, v in os.environ.items() if k not in (host_memory.ENV_VAR, "JAX_PLATFORMS")}
    env["JAX_PLATFORMS"] = "cpu"
    return env


def _probe(env_value: str | None) -> dict:
    env = _cpu_env()
    if env_value is not None:
        env[host_memory.ENV_VAR] = env_value
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@linux_glibc
def test_reuse_policy_stops_the_per_step_page_faults():
    reuse, system = _probe(None), _probe("system")
    assert reuse["policy"] == "reuse" and system["policy"] == "system"
    assert reuse["temp_pages"] > 64 * 2**20 / 4096
    # glibc's defaults map the buffer afresh every call: each page faults in again ...
    assert system["faults"] > 0.8 * system["temp_pages"], system
    # ... funcnet's parameters reuse the heap: (almost) none once it has grown to the step's needs.
    assert reuse["faults"] < 0.05 * reuse["temp_pages"], reuse


@linux_glibc
def test_policy_is_reuse_in_this_cpu_process():
    if os.environ.get(host_memory.ENV_VAR, "").strip().lower() == "system":
        pytest.skip("the test run itself opted out")
    assert host_memory.policy() == "reuse"


def test_environment_variable_is_checked(monkeypatch):
    monkeypatch.setenv(host_memory.ENV_VAR, "tcmalloc")
    with pytest.raises(ValueError, match=r"FUNCNET_HOST_ALLOCATOR.*'reuse', 'system'.*'tcmalloc'"):
        host_memory._requested()
    monkeypatch.setenv(host_memory.ENV_VAR, " System ")
    assert host_memory._requested() == "system"
    monkeypatch.delenv(host_memory.ENV_VAR)
    assert host_memory._requested() == "reuse"


@pytest.mark.parametrize(("platforms", "accelerator"), [("cuda", True), ("tpu,cpu", True), ("cpu", False),
                                                        ("cpu,cuda", False)])
def test_accelerator_backends_keep_the_system_allocator(monkeypatch, platforms, accelerator):
    monkeypatch.setenv("JAX_PLATFORMS", platforms)
    assert host_memory._accelerator_configured() is accelerator


def test_invalid_setting_fails_at_import():
    env = dict(os.environ, **{host_memory.ENV_VAR: "bogus"})
    out = subprocess.run([sys.executable, "-c", "import funcnet"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode != 0 and "FUNCNET_HOST_ALLOCATOR" in out.stderr


@linux_glibc
def test_import_after_jax_started_warns():
    code = ("import warnings, jax.numpy as jnp; jnp.ones(3).block_until_ready()\n"
            "with warnings.catch_warnings(record=True) as caught:\n"
            "    warnings.simplefilter('always')\n"
            "    import funcnet, funcnet.host_memory as h\n"
            "print(h.policy()); print([str(w.message) for w in caught])")
    out = subprocess.run([sys.executable, "-c", code], env=_cpu_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    policy, messages = out.stdout.strip().splitlines()[-2:]
    assert policy.startswith("reuse (partly")
    assert "imported after JAX started its CPU backend" in messages
