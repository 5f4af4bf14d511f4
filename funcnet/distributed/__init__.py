"""``funcnet.distributed``: several processes (hosts) as one JAX job — torch.distributed's role.

torch → funcnet::

    dist.init_process_group("nccl")          →  funcnet.distributed.init()
    dist.get_rank() / dist.get_world_size()  →  get_rank() / get_world_size()
    dist.barrier()                           →  barrier()
    if rank == 0: torch.save(...)            →  save_on_main(obj, path)   (all processes call it)

:func:`init` wraps ``jax.distributed.initialize``. Its arguments come, in this order, from
the call, from torch's launcher variables (``MASTER_ADDR``, ``MASTER_PORT``, ``WORLD_SIZE``,
``RANK``, as set by ``torchrun``), from JAX's (``JAX_COORDINATOR_ADDRESS``,
``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``, ``JAX_COORDINATOR_BIND_ADDRESS``), and finally
from JAX's cluster auto-detection (Slurm, Open MPI, TPU pods).

Differences from torch: there are no process groups and no backends to choose — after
``init`` every process sees every device (``jax.devices()``) and a ``jax.jit`` over a mesh of
them (``funcnet.parallel.ShardedTrainStep``) *is* the distributed program. JAX runs one
process per host driving all its local devices (torch: one per GPU); pass
``local_device_ids=[int(os.environ["LOCAL_RANK"])]`` to keep torch's one-device-per-process.
"""

from __future__ import annotations

import functools
import ipaddress
import os
from collections.abc import Callable
from typing import Any, TypeVar

import jax

_F = TypeVar("_F", bound=Callable[..., Any])


def _env_int(*names: str) -> int | None:
    for name in names:
        value = os.environ.get(name)
        if value not in (None, ""):
            try:
                return int(value)
            except ValueError:
                raise ValueError(f"funcnet.distributed.init: environment variable {name}={value!r} is not an "
                                 f"integer") from None
    return None


def _is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    bind_address: str | None = None,
) -> dict[str, Any]:
    """The ``jax.distributed.initialize`` arguments :func:`init` would use (``None``: auto-detect).

    ``bind_address`` may be a host (the coordinator's port is appended) or ``host:port``.
    When it is not given and the coordinator is a loopback address (``127.0.0.1``,
    ``localhost``), the coordinator binds to that address only; otherwise JAX's default
    (every interface, which other hosts need) applies unless ``JAX_COORDINATOR_BIND_ADDRESS``
    is set.
    """
    if coordinator_address is None:
        master, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
        if master and port:
            coordinator_address = f"{master}:{port}"
        elif master or port:
            raise ValueError(f"funcnet.distributed.init: MASTER_ADDR and MASTER_PORT must be set together; got "
                             f"MASTER_ADDR={master!r}, MASTER_PORT={port!r}")
        else:
            coordinator_address = os.environ.get("JAX_COORDINATOR_ADDRESS") or None
    if num_processes is None:
        num_processes = _env_int("WORLD_SIZE", "JAX_NUM_PROCESSES")
    if process_id is None:
        process_id = _env_int("RANK", "JAX_PROCESS_ID")
    if bind_address is None:
        bind_address = os.environ.get("JAX_COORDINATOR_BIND_ADDRESS") or None
    if coordinator_address is not None:
        if ":" not in coordinator_address.rsplit("]", 1)[-1]:
            raise ValueError(f"funcnet.distributed.init: coordinator_address must be 'host:port', got "
                             f"{coordinator_address!r}")
        host, port = coordinator_address.rsplit(":", 1)
        if bind_address is None and _is_loopback(host):
            bind_address = coordinator_address
        elif bind_address is not None and ":" not in bind_address.rsplit("]", 1)[-1]:
            bind_address = f"{bind_address}:{port}"
    if num_processes is not None and process_id is not None and not 0 <= process_id < num_processes:
        raise ValueError(f"funcnet.distributed.init: rank {process_id} is outside [0, {num_processes}) "
                         f"(world size {num_processes})")
    return dict(coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id,
                coordinator_bind_address=bind_address)


_CLUSTER_VARIABLES = ("SLURM_JOB_ID", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "TPU_WORKER_HOSTNAMES",
                      "CLOUD_TPU_TASK_ID", "MEGASCALE_COORDINATOR_ADDRESS")


def _cluster_detected() -> bool:
    """Variables of a launcher that ``jax.distributed.initialize`` can auto-detect."""
    return any(os.environ.get(name) for name in _CLUSTER_VARIABLES)


def init(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    bind_address: str | None = None,
    local_device_ids: int | list[int] | None = None,
    cpu_collectives: str | None = "auto",
    initialization_timeout: int = 300,
    heartbeat_timeout_seconds: int = 100,
    allow_single: bool = False,
    **kwargs: Any,
) -> bool:
    """Join this process to the distributed JAX job (``torch.distributed.init_process_group``).

    Call it first thing, before any JAX computation. Arguments not given are read from the
    environment (see the module docstring; :func:`resolve` shows the result). A world of one
    process (``WORLD_SIZE=1``) is not initialised. Calling it again once initialised does nothing.

    Args:
        coordinator_address: ``"host:port"`` of process 0's coordinator service.
        num_processes / process_id: world size and this process's rank.
        bind_address: where process 0's coordinator listens (``"host"`` or ``"host:port"``);
            defaults to the coordinator address itself when that is a loopback address.
        local_device_ids: restrict this process to these local devices (GPU: one per process).
        cpu_collectives: the CPU cross-process collectives. ``"auto"`` turns on ``"gloo"``
            when none is configured — without it every cross-process computation on CPU fails
            with "Multiprocess computations aren't implemented on the CPU backend"; a name
            (``"gloo"``, ``"mpi"``) sets it; ``None`` leaves JAX's setting alone.
        initialization_timeout / heartbeat_timeout_seconds: seconds, passed to JAX.
        allow_single: when nothing describes a job (no address, world size or rank anywhere and
            no Slurm/Open MPI/TPU-pod variables), run as a single process instead of failing —
            so one script serves both cases. Off by default, as torch: a multi-host run with a
            typo in its variables should fail, not train alone.
        **kwargs: anything else ``jax.distributed.initialize`` accepts.

    Returns:
        True when a multi-process job was initialised by this call, False otherwise.
    """
    if jax.distributed.is_initialized():
        return False
    args = resolve(coordinator_address, num_processes, process_id, bind_address)
    if args["num_processes"] == 1:
        return False
    if allow_single and all(v is None for v in args.values()) and not _cluster_detected():
        return False
    if cpu_collectives == "auto":
        if jax.config.jax_cpu_collectives_implementation in (None, "", "none"):
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
    elif cpu_collectives is not None:
        jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    try:
        jax.distributed.initialize(
            coordinator_address=args["coordinator_address"],
            num_processes=args["num_processes"],
            process_id=args["process_id"],
            local_device_ids=local_device_ids,
            coordinator_bind_address=args["coordinator_bind_address"],
            initialization_timeout=initialization_timeout,
            heartbeat_timeout_seconds=heartbeat_timeout_seconds,
            **kwargs,
        )
    except (RuntimeError, ValueError) as err:
        raise RuntimeError(
            f"funcnet.distributed.init failed (coordinator {args['coordinator_address']}, rank "
            f"{args['process_id']} of {args['num_processes']}, bind {args['coordinator_bind_address']}): {err}. "
            f"Set MASTER_ADDR/MASTER_PORT/WORLD_SIZE/RANK (or pass them), start every process, and call "
            f"init() before any JAX computation."
        ) from err
    return True


def is_initialized() -> bool:
    """Whether ``jax.distributed`` is initialised (``torch.distributed.is_initialized``)."""
    return jax.distributed.is_initialized()


def shutdown() -> None:
    """Leave the job (``torch.distributed.destroy_process_group``); a no-op when not initialised."""
    if jax.distributed.is_initialized():
        jax.distributed.shutdown()


def get_rank() -> int:
    """This process's index (``jax.process_index()``); 0 when not distributed."""
    return jax.process_index()


def get_world_size() -> int:
    """The number of processes (``jax.process_count()``); 1 when not distributed."""
    return jax.process_count()


def is_main_process() -> bool:
    """True on process 0 — the one that writes checkpoints and logs."""
    return jax.process_index() == 0


def barrier(name: str = "funcnet.distributed.barrier") -> None:
    """Wait until every process reaches this point (``torch.distributed.barrier``).

    Every process must call it with the same ``name``; a no-op in a single process.
    """
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def broadcast(value: Any) -> Any:
    """Process 0's value of a pytree of arrays, on every process (e.g. a seed chosen at run time)."""
    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils

    return multihost_utils.broadcast_one_to_all(value)


def main_process_only(fn: _F) -> _F:
    """Decorator: run ``fn`` on process 0 only; other processes get ``None``. Not for collectives."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs) if is_main_process() else None

    return wrapper  # type: ignore[return-value]


@main_process_only
def print0(*args: Any, **kwargs: Any) -> None:
    """``print`` on process 0 only (one log line per job, not one per process)."""
    print(*args, **kwargs)


def save_on_main(obj: Any, path: Any, save_fn: Callable[[Any, Any], Any] | None = None) -> None:
    """Save ``obj`` once per job: gathered to host arrays on every process (a collective when it
    is sharded across processes, so *every* process must call this), written by process 0 only
    with ``save_fn(obj, path)`` (default ``funcnet.save``), then a barrier so that nobody reads
    the file before it exists."""
    from funcnet.parallel.sharding import gather

    host = gather(obj)
    if is_main_process():
        if save_fn is None:
            from funcnet import save as save_fn
        save_fn(host, path)
    barrier("funcnet.distributed.save_on_main")


__all__ = [
    "barrier", "broadcast", "get_rank", "get_world_size", "init", "is_initialized", "is_main_process",
    "main_process_only", "print0", "resolve", "save_on_main", "shutdown",
]
