"""Images/s of a folder of JPEGs through decoding + augmentation, funcnet vs torch, side by side.

A folder of ``--files`` 256×256 JPEGs in 10 class folders (generated once into ``--root``, default a
temp dir) is read with ``RandomResizedCrop(224) + RandomHorizontalFlip + ToTensor + Normalize``,
batch 64:

  * funcnet ``DataLoader(ImageFolder(...))`` with ``num_workers`` 0, 2 threads, 2 processes,
  * torch ``DataLoader(torchvision ImageFolder(...))`` with ``num_workers`` 0 and 2 (torchvision
    0.28's own dataset and transforms from its wheel, run in torch's workers),
  * Grain (if installed): funcnet's ImageFolder and transforms in ``grain.MapDataset`` +
    ``mp_prefetch`` with 2 worker processes.

Worker pools are persistent and warmed up before timing (start-up is reported separately); every
round takes ``--batches`` batches from every system (each system's stream runs on through the
folder's epochs), the first system rotating, and ratios are taken within a round. On Linux it also
reports CPU seconds per image of each 2-worker system (worker processes' ``/proc`` times plus this
process's own), the cost per image independent of the CPU share a loaded machine grants. Then the seed
CNN (``examples/cnn.py``'s ``Net``, 3 input channels, 224×224) trains from the funcnet loader: the
share of each step's wall time spent waiting for the next batch, once warm.

    python -m benchmarks.image_loader [--files 2000] [--rounds 9] [--batches 8] [--steps 6] [--root DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

from benchmarks.timing import interleaved, median_ratios

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
BATCH = 64


def make_folder(root: str, files: int, side: int = 256, classes: int = 10) -> str:
    """``files`` JPEGs (quality 90) of smooth random colour fields plus noise, in ``classes`` folders."""
    from PIL import Image

    marker = os.path.join(root, f".complete-{files}-{side}")
    if os.path.exists(marker):
        return root
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
    for i in range(files):
        c = i % classes
        os.makedirs(os.path.join(root, f"class{c:02d}"), exist_ok=True)
        f = rng.uniform(1, 6, 3)
        phase = rng.uniform(0, 6.3, 3)
        img = np.stack([127 + 90 * np.sin(2 * np.pi * (f[k] * xx + (k + 1) * yy) + phase[k]) for k in range(3)], -1)
        img += rng.normal(0, 12, img.shape)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(
            os.path.join(root, f"class{c:02d}", f"{i:05d}.jpg"), quality=90)
    open(marker, "w").close()
    return root


def funcnet_loader(root: str, workers: int, mode: str, jpeg: str = "pillow"):
    from funcnet.datasets import ImageFolder
    from funcnet.datasets.folder import default_loader, simplejpeg_loader
    from funcnet.utils.data import DataLoader
    from funcnet.vision import transforms as T

    tf = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(MEAN, STD)])
    kw = dict(num_workers=workers, worker_mode=mode, persistent_workers=mode == "process") if workers else {}
    loader = simplejpeg_loader if jpeg == "simplejpeg" else default_loader
    return DataLoader(ImageFolder(root, tf, loader=loader), batch_size=BATCH, shuffle=True, seed=0, **kw)


def torch_loader(root: str, workers: int):
    import torch

    from tests.torchvision_wheel import import_torchvision

    folder = import_torchvision("torchvision.datasets.folder")
    TT = import_torchvision("torchvision.transforms")
    tf = TT.Compose([TT.RandomResizedCrop(224), TT.RandomHorizontalFlip(), TT.ToTensor(), TT.Normalize(MEAN, STD)])
    # forkserver, not torch's default fork: this process has JAX loaded (jax #9190); same as funcnet's.
    kw = dict(num_workers=workers, persistent_workers=True, multiprocessing_context="forkserver") if workers else {}
    return torch.utils.data.DataLoader(folder.ImageFolder(root, tf), batch_size=BATCH, shuffle=True, **kw)


class GrainStream:
    """Grain over the same folder: funcnet's ImageFolder as the source, its transforms through
    :class:`~funcnet.utils.data.grain_interop.GrainRandomMap`, ``mp_prefetch`` with 2 worker
    processes. One endless (``repeat``) iterator, so its workers persist like the others'."""

    def __init__(self, root: str, workers: int) -> None:
        import grain
        from absl import flags

        from funcnet.datasets import ImageFolder
        from funcnet.utils.data.grain_interop import GrainRandomMap
        from funcnet.vision import transforms as T

        flags.FLAGS.mark_as_parsed()  # grain reads absl flags in its workers
        tf = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(MEAN, STD)])
        folder = ImageFolder(root, tf)
        self.batches_per_epoch = len(folder) // BATCH + (len(folder) % BATCH > 0)
        ds = (grain.MapDataset.range(len(folder)).shuffle(seed=0).repeat()
              .random_map(GrainRandomMap(folder), seed=0).batch(BATCH))
        self.it = iter(ds.to_iter_dataset().mp_prefetch(grain.MultiprocessingOptions(num_workers=workers)))

    def __iter__(self):
        for _ in range(self.batches_per_epoch):
            yield next(self.it)


def arrays_vs_grain(rounds: int) -> None:
    """Why funcnet does not wrap Grain: an epoch of 60,000 × 784 float32 in memory, batch 64,
    shuffled — funcnet's vectorised gather vs Grain's per-record ``MapDataset`` (no workers)."""
    import grain

    from funcnet.utils.data import DataLoader, TensorDataset

    rng = np.random.default_rng(0)
    x = rng.standard_normal((60000, 784)).astype(np.float32)
    y = rng.integers(0, 10, 60000).astype(np.int32)

    class Source:  # a Grain RandomAccessDataSource over the same arrays
        def __len__(self) -> int:
            return len(x)

        def __getitem__(self, i: int):
            return x[i], y[i]

    funcnet_loader = DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=True, seed=0)
    grain_ds = grain.MapDataset.source(Source()).shuffle(seed=0).batch(BATCH)
    samples = interleaved({"funcnet DataLoader": lambda: epoch(funcnet_loader),
                           "grain MapDataset": lambda: epoch(grain_ds)}, rounds, scale=1.0 / len(x))
    ratio = median_ratios(samples, "funcnet DataLoader")["grain MapDataset"]
    for name, per in samples.items():
        print(f"in-memory arrays, {name:20s}: {statistics.median([1 / s for s in per]) / 1e3:8.0f} k samples/s")
    print(f"funcnet / grain throughput (median of per-round ratios): {ratio:.1f}x")


def epoch(loader) -> int:
    n = 0
    for x, _ in loader:
        n += len(x)
    return n


def endless(loader):
    """The loader's batches, epoch after epoch (each new pass is the next epoch)."""
    while True:
        yield from loader


def take(stream, batches: int) -> int:
    return sum(len(next(stream)[0]) for _ in range(batches))


def train_wait_fraction(root: str, steps: int, workers: int, mode: str) -> tuple[float, float, float]:
    """The seed CNN trained from the funcnet loader: (median step s, median wait s, wait share of
    total time) over the steps after the first two (compilation, pipeline fill)."""
    import jax

    import funcnet
    import funcnet.nn as nn
    import funcnet.optim as optim
    from examples.cnn import Net
    from funcnet.train import TrainState, make_train_step

    model = Net(224)
    model.conv1 = nn.Conv2d(3, 16, kernel_size=3, padding=1)  # RGB input
    optimizer = optim.SGD(lr=0.01, momentum=0.9)
    state = TrainState.create(model, optimizer, funcnet.manual_seed(0))
    step = make_train_step(model, nn.CrossEntropyLoss(), optimizer)
    loader = funcnet_loader(root, workers, mode)
    waits, totals = [], []
    it = iter(loader)
    while len(totals) < steps + 2:
        t0 = time.perf_counter()
        try:
            x, y = next(it)
        except StopIteration:
            it = iter(loader)
            x, y = next(it)
        t1 = time.perf_counter()
        state, _ = step(state, (x, y.astype(np.int32)))
        jax.block_until_ready(state)
        t2 = time.perf_counter()
        waits.append(t1 - t0)
        totals.append(t2 - t0)
    if hasattr(loader, "shutdown_workers"):
        loader.shutdown_workers()
    w, t = waits[2:], totals[2:]
    return statistics.median(t), statistics.median(w), sum(w) / sum(t)


def cpu_per_image(root: str, batches: int = 12) -> None:
    """CPU seconds per image of torch's and funcnet's process workers and funcnet's threads (``/proc``
    times of the worker processes plus this process's own time): what each image costs, apart from
    the share of the CPU the scheduler grants on a loaded machine."""
    import resource

    def proc_cpu(pid: int) -> float:
        fields = open(f"/proc/{pid}/stat").read().split(")")[-1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    for mode in ("torch", "process", "thread"):
        loader = torch_loader(root, 2) if mode == "torch" else funcnet_loader(root, 2, mode)
        it = iter(loader)
        next(it)
        if mode == "torch":
            pids = [w.pid for w in loader._iterator._workers]
        else:
            pids = [p.pid for p in loader._pool.procs] if mode == "process" else []
        before = sum(proc_cpu(p) for p in pids)
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        n = take(it, batches)
        wall = time.perf_counter() - start
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        own = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
        used = own + sum(proc_cpu(p) for p in pids) - before
        name = {"torch": "torch workers=2 processes", "process": "funcnet workers=2 processes",
                "thread": "funcnet workers=2 threads"}[mode]
        print(f"{name:28s}: {used / n * 1e3:.2f} ms CPU per image, {n / wall:.0f} images/s, "
              f"CPU busy {used / wall:.2f} of 2 cores")
        if mode == "process":
            loader.shutdown_workers()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--batches", type=int, default=8, help="batches per system per round")
    parser.add_argument("--steps", type=int, default=6, help="timed CNN steps (0: skip the training loop)")
    parser.add_argument("--root", default=None, help="image folder (generated if missing)")
    parser.add_argument("--only", default=None, help="comma-separated system names to time")
    parser.add_argument("--grain-images", action="store_true", help="also time Grain's mp_prefetch on the folder")
    args = parser.parse_args()
    sys.path.insert(0, os.getcwd())  # tests.torchvision_wheel, examples.cnn
    import torch

    torch.set_num_threads(1)  # as in torch's own workers; its default intra-op threads thrash on 2 shared cores
    root = make_folder(args.root or os.path.join(tempfile.gettempdir(), f"funcnet-bench-jpegs-{args.files}"),
                       args.files)
    print(f"folder: {root} ({args.files} JPEGs 256x256), batch {BATCH}, cpus {os.cpu_count()}, "
          f"load {os.getloadavg()[0]:.1f}")

    loaders = {
        "torch workers=0": torch_loader(root, 0),
        "torch workers=2 (processes)": torch_loader(root, 2),
        "funcnet workers=0": funcnet_loader(root, 0, "thread"),
        "funcnet workers=2 threads": funcnet_loader(root, 2, "thread"),
        "funcnet workers=2 processes": funcnet_loader(root, 2, "process"),
    }
    try:
        import simplejpeg  # noqa: F401

        loaders["funcnet workers=2 processes simplejpeg"] = funcnet_loader(root, 2, "process", "simplejpeg")
    except ImportError:
        print("simplejpeg not installed: pip install 'funcnet[jpeg]' to include it")
    if args.grain_images:  # opt-in: Grain's workers were OOM-killed once on the shared machine
        loaders["grain mp_prefetch 2 processes"] = GrainStream(root, 2)
    if args.only:
        keep = args.only.split(",")
        loaders = {k: v for k, v in loaders.items() if any(s in k for s in keep)}
    # A round takes --batches from every system in turn (its stream continues across epochs of the
    # folder): short slices, many rounds, so the load drift of the shared machine hits systems alike.
    streams = {k: endless(ld) for k, ld in loaders.items()}
    for name, stream in streams.items():  # start the workers and fill their pipelines
        start = time.perf_counter()
        next(stream)
        print(f"warm-up {name}: first batch after {time.perf_counter() - start:.2f} s")
        take(stream, 4)
    samples = interleaved({k: (lambda st=st: take(st, args.batches)) for k, st in streams.items()}, args.rounds,
                          scale=1.0 / (args.batches * BATCH))
    base_torch = {"0": "torch workers=0", "2": "torch workers=2 (processes)"}
    print(f"\n{args.rounds} rounds x {args.batches} batches of {BATCH} per system")
    print(f"{'system':40s} {'images/s (median)':>18s} {'min':>6s} {'max':>6s} {'vs torch, equal workers':>24s}")
    for name, per_image in samples.items():
        rates = [1.0 / s for s in per_image]
        base = base_torch["0" if "=0" in name else "2"]  # grain: vs torch's 2 workers
        ratio = median_ratios({name: per_image, base: samples[base]}, name)[base] if base in samples else float("nan")
        print(f"{name:40s} {statistics.median(rates):18.0f} {min(rates):6.0f} {max(rates):6.0f} {ratio:23.2f}x")
    for loader in loaders.values():
        if hasattr(loader, "shutdown_workers"):
            loader.shutdown_workers()
    del loaders

    if sys.platform.startswith("linux"):
        cpu_per_image(root)
    try:
        arrays_vs_grain(args.rounds)
    except ImportError:
        pass

    if args.steps:
        for workers, mode in [(2, "process")]:
            step_s, wait_s, share = train_wait_fraction(root, args.steps, workers, mode)
            print(f"seed CNN (3x224x224, batch {BATCH}) fed by funcnet workers={workers} {mode}: step {step_s:.3f} s, "
                  f"wait {wait_s * 1e3:.1f} ms (median), waiting {share:.1%} of step time")


if __name__ == "__main__":
    main()
