"""make_grid / save_image against torchvision's own functions, and the training-curve plot.

torchvision cannot be imported the usual way here; the reference is torchvision 0.28's own
``utils.py`` from its wheel, run on torch tensors (``tests/torchvision_wheel.py``), plus
hand-checked small cases.
"""

import io

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision_wheel import import_torchvision

from funcnet.vision import make_grid, plot_history, save_image, to_uint8_hwc


def _tv_utils():
    """torchvision 0.28's own ``torchvision/utils.py`` (from its wheel, running on torch)."""
    return import_torchvision("torchvision.utils")


def torch_make_grid(tensor, **options):
    """``torchvision.utils.make_grid`` itself."""
    return _tv_utils().make_grid(tensor, **options)


def torch_pixels(grid):
    """The uint8 HWC image ``torchvision.utils.save_image`` writes for ``grid`` (saved as PNG by
    torchvision's own function, read back)."""
    buffer = io.BytesIO()
    _tv_utils().save_image(grid, buffer, format="PNG", padding=0)  # a [C, H, W] grid: saved as is
    buffer.seek(0)
    with Image.open(buffer) as im:
        return np.asarray(im)


SHAPES = [(1, 3, 5, 4), (1, 1, 4, 4), (2, 1, 3, 3), (5, 3, 4, 6), (7, 1, 8, 8), (9, 3, 2, 2), (3, 2, 4, 5),
          (16, 1, 8, 8)]
OPTIONS = [
    {},
    {"nrow": 3},
    {"nrow": 20},
    {"nrow": 1, "padding": 0},
    {"padding": 5, "pad_value": 0.7},
    {"normalize": True},
    {"normalize": True, "scale_each": True},
    {"normalize": True, "value_range": (-1.0, 0.5)},
    {"normalize": True, "value_range": (-1.0, 0.5), "scale_each": True, "nrow": 2, "pad_value": 1.0},
]


@pytest.mark.parametrize("shape", SHAPES)
def test_make_grid_matches_torchvision(rng, shape):
    x = (rng.standard_normal(shape) * 2 + 0.3).astype(np.float32)
    for options in OPTIONS:
        expected = torch_make_grid(torch.tensor(x), **options).numpy()
        for given in (x, jnp.asarray(x)):
            grid = make_grid(given, **options)
            assert grid.shape == expected.shape, options
            assert grid.dtype == np.float32
            np.testing.assert_array_equal(grid, expected, err_msg=str(options))
        pixels = to_uint8_hwc(make_grid(x, **options))
        np.testing.assert_array_equal(pixels, torch_pixels(torch.tensor(expected)))


def test_make_grid_list_2d_and_3d_inputs(rng):
    images = [rng.random((3, 4, 5)).astype(np.float32) for _ in range(3)]
    np.testing.assert_array_equal(make_grid(images, nrow=2),
                                  torch_make_grid([torch.tensor(i) for i in images], nrow=2).numpy())
    single = rng.random((6, 7)).astype(np.float32)
    grid = make_grid(single)
    assert grid.shape == (3, 6, 7)  # B == 1: no padding, grey repeated to 3 channels
    np.testing.assert_array_equal(grid, np.stack([single] * 3))
    chw = rng.random((1, 6, 7)).astype(np.float32)
    np.testing.assert_array_equal(make_grid(chw), np.concatenate([chw] * 3))
    with pytest.raises(ValueError, match="shape"):
        make_grid(np.zeros((1, 1, 1, 2, 2)))
    with pytest.raises(TypeError, match="tuple"):
        make_grid(np.zeros((2, 1, 2, 2)), normalize=True, value_range=[0, 1])


def test_make_grid_hand_checked_layout():
    # Three 1x1 grey images, two per row, padding 1, pad 9: a 3 x (2*2+1) x (2*2+1) grid.
    x = np.array([1.0, 2.0, 3.0], np.float32).reshape(3, 1, 1, 1)
    grid = make_grid(x, nrow=2, padding=1, pad_value=9.0)
    expected = np.full((5, 5), 9.0, np.float32)
    expected[1, 1], expected[1, 3], expected[3, 1] = 1.0, 2.0, 3.0
    np.testing.assert_array_equal(grid, np.stack([expected] * 3))


def test_normalize_divisor_is_max_of_range_and_1e_5():
    # range 1e-6: max(high - low, 1e-5) divides by 1e-5 (the older "+1e-5" would give 1/11)
    x = np.array([0.0, 1e-6], np.float32).reshape(2, 1, 1, 1)
    grid = make_grid(x, normalize=True, padding=0, nrow=2)
    np.testing.assert_allclose(grid[0, 0], [0.0, 0.1], rtol=1e-6)
    # constant images normalise to 0, not NaN
    assert np.all(make_grid(np.full((2, 1, 2, 2), 0.3, np.float32), normalize=True, padding=0) == 0)
    # value_range clamps: -5 -> 0, 5 -> 1
    grid = make_grid(np.array([-5.0, 0.0, 5.0], np.float32).reshape(3, 1, 1, 1), normalize=True,
                     value_range=(-1.0, 1.0), padding=0)
    np.testing.assert_array_equal(grid[0, 0], [0.0, 0.5, 1.0])
    # the input is not modified
    x = np.array([2.0, 4.0], np.float32).reshape(2, 1, 1, 1)
    make_grid(x, normalize=True)
    np.testing.assert_array_equal(x.ravel(), [2.0, 4.0])


def test_pixels_round_half_up_and_clamp():
    # 0.5*255 + 0.5 = 128 -> 128; 0.498*255 + 0.5 = 127.49 -> 127; clamp below 0 and above 255
    values = np.array([0.0, 0.498, 0.5, 1.0, -0.1, 1.2, 1 / 255, 0.9999], np.float32)
    pixels = to_uint8_hwc(values.reshape(1, 1, -1))
    assert pixels.shape == (1, 8, 1) and pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels.ravel(), [0, 127, 128, 255, 0, 255, 1, 255])


@pytest.mark.parametrize("shape", [(1, 3, 5, 4), (5, 1, 8, 8), (4, 3, 6, 7)])
def test_save_image_png_reads_back_pixel_exact(rng, tmp_path, shape):
    x = rng.random(shape).astype(np.float32)
    path = tmp_path / "grid.png"
    save_image(jnp.asarray(x), path, nrow=3, padding=1, pad_value=0.25)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "RGB"
        read = np.asarray(im)
    expected = torch_pixels(torch_make_grid(torch.tensor(x), nrow=3, padding=1, pad_value=0.25))
    np.testing.assert_array_equal(read, expected)


def test_save_image_format_argument_and_jpeg(rng, tmp_path):
    x = rng.random((4, 3, 8, 8)).astype(np.float32)
    buffer = io.BytesIO()
    save_image(x, buffer, format="PNG", normalize=True)
    buffer.seek(0)
    with Image.open(buffer) as im:
        assert im.format == "PNG"
        np.testing.assert_array_equal(np.asarray(im), torch_pixels(torch_make_grid(torch.tensor(x), normalize=True)))
    save_image(x, tmp_path / "grid.jpg")
    with Image.open(tmp_path / "grid.jpg") as im:
        assert im.format == "JPEG" and im.size == (2 + 4 * 10, 2 + 10)


def test_plot_history_writes_png(tmp_path):
    as_lists = {"loss": [1.0, 0.6, 0.4], "val_loss": [1.1, 0.8, 0.7], "accuracy": [0.5, 0.7, 0.8], "lr": [0.1] * 3}
    fig = plot_history(as_lists, tmp_path / "lists.png")
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss", "accuracy"]
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["loss", "val_loss"]
    as_dicts = [{"loss": 1.0, "epoch_time": "1s"}, {"loss": 0.5, "val_accuracy": 0.9}, {"loss": 0.3}]
    plot_history(as_dicts, tmp_path / "dicts.png", title="run")
    for name in ("lists.png", "dicts.png"):
        with Image.open(tmp_path / name) as im:
            assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100
    with pytest.raises(ValueError, match="no numeric series"):
        plot_history({"lr": [0.1, 0.2]})
