"""default_collate against torch's, and the batch transforms."""

from collections import namedtuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from torch.utils.data import default_collate as torch_collate

from funcnet.utils.data import default_collate
from funcnet.utils.data import transforms as T

Point = namedtuple("Point", ["xy", "label"])


def test_arrays_stacked_like_torch(rng):
    samples = [rng.standard_normal((3, 2)).astype(np.float32) for _ in range(4)]
    ours = default_collate(samples)
    np.testing.assert_array_equal(ours, torch_collate([torch.tensor(s) for s in samples]).numpy())
    assert ours.dtype == np.float32 and ours.shape == (4, 3, 2)
    ints = [np.arange(3, dtype=np.int16) + i for i in range(2)]
    assert default_collate(ints).dtype == np.int16  # numpy dtypes kept, as torch
    jx = default_collate([jnp.ones(2), jnp.zeros(2)])
    np.testing.assert_array_equal(jx, [[1, 1], [0, 0]])


def test_numbers_dicts_namedtuples_tuples(rng):
    samples = [{"img": rng.standard_normal(2).astype(np.float32), "y": i, "w": 0.5 * i, "ok": i % 2 == 0,
                "name": f"s{i}", "pt": Point(np.array([i, i], np.int64), i)} for i in range(3)]
    ours = default_collate(samples)
    theirs = torch_collate([{**s, "img": torch.tensor(s["img"]), "pt": Point(torch.tensor(s["pt"].xy), i)}
                            for i, s in enumerate(samples)])
    assert list(ours) == list(theirs)
    np.testing.assert_array_equal(ours["img"], theirs["img"].numpy())
    np.testing.assert_array_equal(ours["y"], theirs["y"].numpy())
    np.testing.assert_allclose(ours["w"], theirs["w"].numpy())
    np.testing.assert_array_equal(ours["ok"], theirs["ok"].numpy())
    assert ours["name"] == theirs["name"] == ["s0", "s1", "s2"]
    assert type(ours["pt"]) is Point and type(theirs["pt"]) is Point
    np.testing.assert_array_equal(ours["pt"].xy, theirs["pt"].xy.numpy())
    # documented differences: JAX's default dtypes, tuples stay tuples
    assert ours["y"].dtype == np.int32 and ours["w"].dtype == np.float32 and ours["ok"].dtype == np.bool_
    tup = default_collate([(np.zeros(2), 1), (np.ones(2), 2)])
    assert isinstance(tup, tuple)
    assert isinstance(torch_collate([(torch.zeros(2), 1), (torch.ones(2), 2)]), list)
    lst = default_collate([[1, 2.0], [3, 4.0]])
    assert isinstance(lst, list) and lst[0].tolist() == [1, 3] and lst[1].tolist() == [2.0, 4.0]


def test_ragged_and_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match=r"ragged batch at \[0\]: sample 0 has shape \(3,\) but sample 1 has "
                                         r"shape \(4,\)"):
        default_collate([(np.zeros(3), 0), (np.zeros(4), 1)])
    with pytest.raises(RuntimeError, match="each element in list of batch should be of equal size"):
        default_collate([[1, 2], [1, 2, 3]])
    with pytest.raises(ValueError, match="keys"):
        default_collate([{"a": 1}, {"b": 1}])
    with pytest.raises(TypeError, match="found object"):
        default_collate([object(), object()])
    with pytest.raises(ValueError, match="empty list"):
        default_collate([])


def test_normalize(rng):
    x = rng.random((2, 3, 4, 4)).astype(np.float32)
    mean, std = [0.1, 0.2, 0.3], [0.5, 0.25, 2.0]
    expect = (x - np.array(mean, np.float32)[:, None, None]) / np.array(std, np.float32)[:, None, None]
    np.testing.assert_allclose(T.Normalize(mean, std)(x), expect, rtol=1e-6)


def test_random_crop_takes_a_window_of_the_padded_image(rng):
    x = rng.random((16, 2, 5, 6)).astype(np.float32)
    out = np.asarray(T.RandomCrop(5, padding=2)(x, jax.random.PRNGKey(0)))
    assert out.shape == (16, 2, 5, 5)
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    offsets = set()
    for n in range(16):
        found = [(i, j) for i in range(padded.shape[2] - 4) for j in range(padded.shape[3] - 4)
                 if np.array_equal(padded[n, :, i:i + 5, j:j + 5], out[n])]
        assert found, f"sample {n} is not a crop of its padded image"
        offsets.add(found[0])
    assert len(offsets) > 3  # per-sample offsets
    again = np.asarray(T.RandomCrop(5, padding=2)(x, jax.random.PRNGKey(0)))
    np.testing.assert_array_equal(out, again)
    with pytest.raises(ValueError, match="needs a PRNG key"):
        T.RandomCrop(5)(x)
    with pytest.raises(ValueError, match="larger than the padded image"):
        T.RandomCrop(9)(x, jax.random.PRNGKey(0))


def test_random_horizontal_flip(rng):
    x = rng.random((64, 1, 3, 3)).astype(np.float32)
    out = np.asarray(T.RandomHorizontalFlip(0.5)(x, jax.random.PRNGKey(1)))
    flipped = np.array([np.array_equal(out[n], x[n, :, :, ::-1]) for n in range(64)])
    same = np.array([np.array_equal(out[n], x[n]) for n in range(64)])
    assert (flipped | same).all() and 10 < flipped.sum() < 54
    np.testing.assert_array_equal(T.RandomHorizontalFlip(0.0)(x, jax.random.PRNGKey(1)), x)


def test_one_hot_equals_torch():
    y = np.array([0, 3, 1, 9])
    np.testing.assert_array_equal(T.OneHot(10)(y), TF.one_hot(torch.tensor(y), 10).numpy())
    assert T.one_hot(y, 10).dtype == jnp.float32


def test_compose_and_perfield_keys():
    x = np.arange(2 * 1 * 2 * 3, dtype=np.float32).reshape(2, 1, 2, 3)
    key = jax.random.PRNGKey(5)
    flip = T.RandomHorizontalFlip(1.0)
    composed = T.Compose([T.Normalize([1.0], [2.0]), flip])
    np.testing.assert_allclose(composed(x, key), ((x - 1) / 2)[..., ::-1])
    crop = T.RandomCrop(2, padding=1)
    pipeline = T.Compose([crop, T.RandomHorizontalFlip()])
    manual = T.RandomHorizontalFlip()(crop(x, jax.random.fold_in(key, 0)), jax.random.fold_in(key, 1))
    np.testing.assert_array_equal(pipeline(x, key), manual)
    batch = (x, np.array([1, 2]))
    out = T.PerField(flip, T.OneHot(3))(batch, key)
    assert isinstance(out, tuple)
    np.testing.assert_array_equal(out[0], x[..., ::-1])
    np.testing.assert_array_equal(out[1], [[0, 1, 0], [0, 0, 1]])
    d = T.PerField(image=flip)({"image": x, "label": 1}, key)
    np.testing.assert_array_equal(d["image"], x[..., ::-1])
    assert d["label"] == 1  # the untouched field passes through (was after an `and` that never ran)
    with pytest.raises(KeyError, match="no field 'img'"):
        T.PerField(img=flip)({"image": x}, key)
