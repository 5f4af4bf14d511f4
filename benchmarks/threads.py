"""``--threads N`` for the benchmarks: limit torch and XLA:CPU to the same number of threads.

XLA reads its flags when jax initialises its CPU client, so ``limit_threads(sys.argv)`` must run
before the first jax computation (it is imported before jax in the scripts that use it). On a
shared, oversubscribed machine 2-thread torch spends most of its time in OpenMP barriers; equal
single-threaded systems give a comparison that does not depend on the neighbours' load.
"""

from __future__ import annotations

import os


def limit_threads(argv: list[str]) -> int | None:
    """Apply ``--threads N`` if present in ``argv`` (XLA flags now, torch on first use); returns N."""
    if "--threads" not in argv:
        return None
    n = int(argv[argv.index("--threads") + 1])
    flags = os.environ.get("XLA_FLAGS", "")
    if n == 1:
        flags += " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    else:
        flags += f" intra_op_parallelism_threads={n}"
    os.environ["XLA_FLAGS"] = flags.strip()
    # The flags alone do not hold XLA:CPU to n threads (jax 0.10.2 measured 1.9 CPU-seconds per
    # wall-second with them set to 1): the thunk executor and its YNNPACK pool run on every core.
    # Pinning the process does, for both systems alike.
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, set(cpus[:n]))
    os.environ["OMP_NUM_THREADS"] = str(n)
    import torch

    torch.set_num_threads(n)
    return n
