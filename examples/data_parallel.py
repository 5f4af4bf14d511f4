"""Data-parallel training of the demo MLP on every device (torch's DistributedDataParallel).

One machine, all its devices (on a CPU-only machine, simulate 8 devices)::

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python examples/data_parallel.py
    XLA_FLAGS=--xla_force_host_platform_device_count=8 python examples/data_parallel.py --engine pmap
    XLA_FLAGS=--xla_force_host_platform_device_count=8 python examples/data_parallel.py --fsdp

Several hosts (the sharding engine), with torch's launcher variables — on every host::

    MASTER_ADDR=10.0.0.1 MASTER_PORT=29500 WORLD_SIZE=2 RANK=<0 or 1> python examples/data_parallel.py

(``torchrun --nnodes=2 --nproc-per-node=1 ... examples/data_parallel.py`` sets them too; JAX runs
one process per host that drives all of its devices). Two processes on one machine, for a try::

    for r in 0 1; do MASTER_ADDR=127.0.0.1 MASTER_PORT=29500 WORLD_SIZE=2 RANK=$r \\
        python examples/data_parallel.py & done; wait

``--batch-size`` is the *global* batch: each of the D devices gets batch_size / D samples per
step, so the numbers match single-device training with that batch (docs/parallel.md).
"""

from __future__ import annotations

import argparse
import os
import time

import funcnet
import funcnet.distributed as dist
import funcnet.nn as nn
import funcnet.nn.functional as F
import funcnet.optim as optim
from funcnet.datasets import Digits
from funcnet.parallel import PerDeviceSplit, PmapEvalStep, PmapTrainStep, ShardedEvalStep, ShardedTrainStep
from funcnet.train import TrainState, metrics
from funcnet.utils.data import DataLoader, DistributedSampler


class Net(nn.Module):
    def __init__(self, in_features: int = 64):
        super().__init__()
        self.fc1 = nn.Linear(in_features, 128)
        self.bn = nn.SyncBatchNorm(128)  # global-batch statistics under pmap; plain BatchNorm elsewhere
        self.fc2 = nn.Linear(128, 64)
        self.fc3 = nn.Linear(64, 10)

    def forward(self, x):
        x = funcnet.flatten(x, 1)
        x = F.relu(self.bn(self.fc1(x)))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engine", choices=["sharded", "pmap"], default="sharded")
    parser.add_argument("--fsdp", action="store_true", help="shard parameters and optimizer state too")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64, help="global batch size")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/data_parallel")
    args = parser.parse_args()

    dist.init(allow_single=True)  # joins the job that MASTER_ADDR/WORLD_SIZE/RANK describe; else one process
    import jax

    world, devices = dist.get_world_size(), jax.device_count()
    if args.engine == "pmap" and world > 1:
        parser.error("--engine pmap drives the local devices only; use the sharded engine on several hosts")
    if args.batch_size % devices:
        parser.error(f"--batch-size {args.batch_size} must be a multiple of the {devices} devices")
    dist.print0(f"{world} process(es), {devices} device(s) ({jax.devices()[0].platform}), engine {args.engine}, "
                f"global batch {args.batch_size} = {args.batch_size // devices} per device")

    train_set, test_set = Digits(train=True), Digits(train=False)
    model = Net(train_set.tensors[0][0].size)
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.SGD(lr=args.lr, momentum=0.9)
    state = TrainState.create(model, optimizer, funcnet.manual_seed(args.seed))  # same on every process

    # Each process loads only its share of every global batch.
    sampler = DistributedSampler(train_set, shuffle=True, seed=args.seed, drop_last=True)
    local_batch = args.batch_size // world
    if args.engine == "pmap":
        step, eval_step = PmapTrainStep(model, criterion, optimizer), PmapEvalStep(model, criterion)
        state, placement = step.replicate(state), PerDeviceSplit()
    else:
        step = ShardedTrainStep(model, criterion, optimizer, shard_params=args.fsdp, min_shard_size=1024)
        eval_step = ShardedEvalStep(model, criterion, step.mesh)
        state, placement = step.place_state(state), step.batch_sharding
    loader = DataLoader(train_set, batch_size=local_batch, sampler=sampler, drop_last=True, device=placement)
    test_loader = DataLoader(test_set, batch_size=args.batch_size // world, drop_last=True, device=placement,
                             sampler=DistributedSampler(test_set, shuffle=False, drop_last=True))

    start = time.perf_counter()
    for epoch in range(args.epochs):
        running = metrics.empty()
        for batch in loader:
            state, running = step.accumulate(state, running, batch)
        logs = metrics.compute(running)
        dist.print0(f"Epoch {epoch + 1}, loss: {logs['loss']:.4f}, accuracy: {logs['accuracy']:.4f}")
    dist.print0(f"trained in {time.perf_counter() - start:.1f} s")

    running = metrics.empty()
    for batch in test_loader:
        running = eval_step.accumulate(state, running, batch)
    final = step.unreplicate(state) if args.engine == "pmap" else state
    if dist.is_main_process():
        os.makedirs(args.out, exist_ok=True)
    variables = funcnet.parallel.gather(final.variables)  # collective on several hosts: everyone calls it
    dist.save_on_main({"model": model.state_dict(variables)}, os.path.join(args.out, "model.fn"))
    dist.print0(f"saved {args.out}/model.fn (process 0 only)")
    dist.print0(f"test accuracy: {metrics.compute(running)['accuracy']:.4f}")
    dist.shutdown()


if __name__ == "__main__":
    main()
