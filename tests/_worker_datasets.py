"""Small picklable datasets for the worker-process tests (numpy only: cheap to import in a worker)."""

import os
import time

import numpy as np

from funcnet.utils.data import Dataset, get_worker_info


class Indexed(Dataset):
    """Sample ``i``: ``{"x": float32[2] filled with i, "i": i, "name": "s<i>", "worker": worker id}``;
    optionally dies (``os._exit``) or stalls at one index."""

    def __init__(self, n, exit_at=None, sleep_at=None, sleep_s=30.0):
        self.n, self.exit_at, self.sleep_at, self.sleep_s = n, exit_at, sleep_at, sleep_s

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i == self.exit_at:
            os._exit(3)
        if i == self.sleep_at:
            time.sleep(self.sleep_s)
        info = get_worker_info()
        return {"x": np.full(2, i, np.float32), "i": i, "name": f"s{i}",
                "worker": -1 if info is None else info.id, "init": os.environ.get("FUNCNET_TEST_INIT", "")}


def init_worker(worker_id):
    os.environ["FUNCNET_TEST_INIT"] = f"init{worker_id}"


def failing_init(worker_id):
    raise ValueError(f"worker_init_fn refuses worker {worker_id}")


class Touching(Dataset):
    """Sample ``i`` is ``i``; loading it creates the file ``<directory>/<i>`` (which samples the
    workers have started, seen from the main process)."""

    def __init__(self, n, directory):
        self.n, self.directory = n, directory

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        open(os.path.join(self.directory, str(i)), "w").close()
        return np.int64(i)
