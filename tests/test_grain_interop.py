"""funcnet's ImageFolder and transforms inside a Grain pipeline (the optional ``grain`` extra)."""

import numpy as np
import pytest

from funcnet.datasets import ImageFolder
from funcnet.utils.data import TensorDataset
from funcnet.vision import transforms as T
from tests.test_image_folder import make_tree

grain = pytest.importorskip("grain", reason="optional extra funcnet[grain] not installed")
from funcnet.utils.data.grain_interop import GrainRandomMap  # noqa: E402


def pipeline(folder, seed):
    return (grain.MapDataset.range(len(folder)).shuffle(seed=seed)
            .random_map(GrainRandomMap(folder), seed=seed).batch(4))


def test_grain_drives_funcnet_augmentation_reproducibly_and_resumes(tmp_path):
    folder = ImageFolder(make_tree(str(tmp_path / "data")),
                         T.Compose([T.RandomResizedCrop(8), T.RandomHorizontalFlip(), T.ToTensor()]))
    a, b, c = pipeline(folder, 1), pipeline(folder, 1), pipeline(folder, 2)
    assert len(a) == 3
    xa, ya = a[0]
    xb, yb = b[0]
    assert xa.shape == (4, 3, 8, 8) and xa.dtype == np.float32
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(xa, c[0][0])
    order = list(grain.MapDataset.range(len(folder)).shuffle(seed=1))
    assert np.concatenate([a[i][1] for i in range(3)]).tolist() == [folder.targets[i] for i in order]
    # Grain's checkpointable iterator resumes with the same remaining batches
    stream = a.to_iter_dataset()
    it = iter(stream)
    first = next(it)
    state = it.get_state()
    rest = [x for x, _ in it]
    again = iter(stream)
    again.set_state(state)
    for u, v in zip([x for x, _ in again], rest, strict=True):
        np.testing.assert_array_equal(u, v)
    del first


def test_grain_random_map_on_a_plain_dataset_needs_a_transform():
    ds = TensorDataset(np.arange(12, dtype=np.uint8).reshape(3, 1, 2, 2), np.arange(3))
    with pytest.raises(TypeError, match="has no get"):
        GrainRandomMap(ds)
    flip = GrainRandomMap(ds, transform=T.RandomHorizontalFlip(p=1.0))
    x, y = flip.random_map(1, np.random.default_rng(0))
    np.testing.assert_array_equal(x, ds[1][0][..., ::-1])
    assert y == 1
