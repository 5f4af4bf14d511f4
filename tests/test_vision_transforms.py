"""funcnet.vision.transforms against torchvision 0.28's own transforms (from its wheel), on the same
input and parameters: numpy arrays vs torch tensors (tensor path), PIL images vs PIL images."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from funcnet.vision import transforms as T
from funcnet.vision.transforms import functional as F
from tests.torchvision_wheel import import_torchvision


@pytest.fixture(scope="module")
def TF():
    return import_torchvision("torchvision.transforms.functional")


@pytest.fixture(scope="module")
def TT():
    return import_torchvision("torchvision.transforms")


def tv_mode(TF, name):
    return TF.InterpolationMode(name)


def image_u8(seed, c=3, h=37, w=53):
    # smooth structure plus noise: interpolation differences show up, not only flat areas
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 127 + 100 * np.sin(xx / 5.0 + seed)[None] * np.cos(yy / 7.0)[None]
    img = base + rng.normal(0, 25, (c, h, w))
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def pil_of(arr):
    return Image.fromarray(np.ascontiguousarray(arr.transpose(1, 2, 0)))


def check_u8(got, want, tol=0):
    want = want.numpy() if isinstance(want, torch.Tensor) else np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, want.shape, got.dtype, want.dtype)
    diff = np.abs(got.astype(np.int32) - want.astype(np.int32))
    assert diff.max() <= tol, f"max diff {diff.max()} > {tol}"
    # off by one only where float rounding differs (a few pixels), not systematically
    assert (diff > 0).mean() <= 0.03, f"{(diff > 0).mean():.1%} of values differ"


def check_pil(got, want):
    assert got.mode == want.mode and got.size == want.size
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


# ------------------------------------------------------------------------------------ conversions
def test_to_tensor_and_pil_to_tensor(TF):
    arr = image_u8(0)
    pil = pil_of(arr)
    np.testing.assert_array_equal(F.to_tensor(pil), TF.to_tensor(pil).numpy())
    np.testing.assert_array_equal(F.to_tensor(arr.transpose(1, 2, 0)), TF.to_tensor(arr.transpose(1, 2, 0)).numpy())
    assert F.to_tensor(pil).dtype == np.float32
    np.testing.assert_array_equal(F.pil_to_tensor(pil), TF.pil_to_tensor(pil).numpy())
    gray = pil.convert("L")
    np.testing.assert_array_equal(F.to_tensor(gray), TF.to_tensor(gray).numpy())
    with pytest.raises(TypeError, match="PIL image or a numpy array"):
        F.to_tensor([1, 2])


def test_normalize(TF):
    x = F.to_tensor(pil_of(image_u8(1)))
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    want = TF.normalize(torch.from_numpy(x.copy()), mean, std).numpy()
    np.testing.assert_allclose(F.normalize(x, mean, std), want, rtol=0, atol=1e-6)
    np.testing.assert_allclose(T.Normalize(mean, std)(x), want, rtol=0, atol=1e-6)
    with pytest.raises(TypeError, match="float numpy array"):
        F.normalize(image_u8(1), mean, std)
    with pytest.raises(ValueError, match="std evaluated to zero"):
        F.normalize(x, mean, [1, 0, 1])


# ------------------------------------------------------------------------------------ resize
@pytest.mark.parametrize("size", [(20, 31), (61, 90), 24, (37, 20)])
@pytest.mark.parametrize("mode", ["bilinear", "bicubic", "nearest"])
def test_resize_tensor_path(TF, size, mode):
    arr = image_u8(2)
    want = TF.resize(torch.from_numpy(arr), size, tv_mode(TF, mode), antialias=True)
    check_u8(F.resize(arr, size, mode, antialias=True), want, tol=0 if mode == "nearest" else 1)
    x = arr.astype(np.float32) / 255
    want_f = TF.resize(torch.from_numpy(x), size, tv_mode(TF, mode), antialias=True).numpy()
    np.testing.assert_allclose(F.resize(x, size, mode), want_f, atol=2e-5)


@pytest.mark.parametrize("size", [(20, 31), (61, 90), (9, 9)])
def test_resize_bilinear_without_antialias(TF, size):
    x = image_u8(3).astype(np.float32) / 255
    want = TF.resize(torch.from_numpy(x), size, tv_mode(TF, "bilinear"), antialias=False).numpy()
    np.testing.assert_allclose(F.resize(x, size, antialias=False), want, atol=2e-6)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic", "nearest"])
def test_resize_pil_path_is_torchvisions(TF, mode):
    pil = pil_of(image_u8(4))
    for size in [(20, 31), 24, (80, 70)]:
        check_pil(F.resize(pil, size, mode), TF.resize(pil, size, tv_mode(TF, mode)))
    check_pil(T.Resize(30, max_size=40)(pil), TF.resize(pil, 30, max_size=40))


# ------------------------------------------------------------------------------------ crops, pads, flips
@pytest.mark.parametrize("mode", ["constant", "edge", "reflect", "symmetric"])
@pytest.mark.parametrize("padding", [3, (2, 5), (1, 2, 3, 4)])
def test_pad(TF, mode, padding):
    arr = image_u8(5, h=11, w=13)
    fill = 7 if mode == "constant" else 0
    check_u8(F.pad(arr, padding, fill, mode), TF.pad(torch.from_numpy(arr), padding, fill, mode))
    pil = pil_of(arr)
    check_pil(F.pad(pil, padding, fill, mode), TF.pad(pil, padding, fill, mode))


@pytest.mark.parametrize("box", [(3, 4, 20, 30), (-3, -4, 20, 30), (30, 40, 20, 30), (40, 60, 10, 10)])
def test_crop_inside_and_outside(TF, box):
    arr = image_u8(6)
    check_u8(F.crop(arr, *box), TF.crop(torch.from_numpy(arr), *box))
    pil = pil_of(arr)
    check_pil(F.crop(pil, *box), TF.crop(pil, *box))


@pytest.mark.parametrize("size", [20, (30, 21), (40, 60), (37, 53)])
def test_center_crop(TF, size):
    arr = image_u8(7)
    check_u8(F.center_crop(arr, size), TF.center_crop(torch.from_numpy(arr), size))
    pil = pil_of(arr)
    check_pil(T.CenterCrop(size)(pil), TF.center_crop(pil, size))


def test_flips(TF):
    arr = image_u8(8)
    check_u8(F.hflip(arr), TF.hflip(torch.from_numpy(arr)))
    check_u8(F.vflip(arr), TF.vflip(torch.from_numpy(arr)))
    pil = pil_of(arr)
    check_pil(F.hflip(pil), TF.hflip(pil))
    check_pil(F.vflip(pil), TF.vflip(pil))


# ------------------------------------------------------------------------------------ random transforms
def test_random_resized_crop_params_then_torchvision_functional(TF):
    arr, rng = image_u8(9), np.random.default_rng(0)
    t = T.RandomResizedCrop(24)
    for seed in range(6):
        i, j, h, w = t.get_params(arr, t.scale, t.ratio, np.random.default_rng(seed))
        assert 0 <= i <= 37 - h and 0 <= j <= 53 - w
        assert 0.08 * 37 * 53 * 0.85 <= h * w <= 37 * 53
        want = TF.resized_crop(torch.from_numpy(arr), i, j, h, w, [24, 24], antialias=True)
        got = t(arr, np.random.default_rng(seed))
        check_u8(got, want, tol=1)
        pil = pil_of(arr)
        check_pil(t(pil, np.random.default_rng(seed)), TF.resized_crop(pil, i, j, h, w, [24, 24]))
    del rng


@pytest.mark.parametrize("scale,ratio,shape", [((2.0, 3.0), (0.75, 1.33), (37, 53)),  # fallback, in range
                                               ((2.0, 3.0), (2.0, 3.0), (37, 53)),  # too tall -> clamp
                                               ((2.0, 3.0), (0.2, 0.3), (37, 53))])  # too wide -> clamp
def test_random_resized_crop_fallback_equals_torchvision(TT, scale, ratio, shape):
    img = torch.zeros((3, *shape), dtype=torch.uint8)
    want = TT.RandomResizedCrop.get_params(img, list(scale), list(ratio))
    got = T.RandomResizedCrop.get_params(np.zeros((3, *shape), np.uint8), scale, ratio, np.random.default_rng(0))
    assert got == tuple(want)


def test_random_crop_and_padding_modes(TF):
    arr = image_u8(10, h=20, w=24)
    for mode in ["constant", "edge", "reflect", "symmetric"]:
        t = T.RandomCrop(18, padding=3, padding_mode=mode, fill=5)
        padded = TF.pad(torch.from_numpy(arr), 3, 5 if mode == "constant" else 0, mode)
        i, j, h, w = t.get_params(padded.numpy(), (18, 18), np.random.default_rng(1))
        check_u8(t(arr, np.random.default_rng(1)), TF.crop(padded, i, j, h, w))
    t = T.RandomCrop((26, 30), pad_if_needed=True)
    assert t(arr, np.random.default_rng(2)).shape == (3, 26, 30)
    with pytest.raises(ValueError, match="larger than input image"):
        T.RandomCrop(30)(arr, np.random.default_rng(0))


def test_random_flip_uses_the_rng_and_no_hidden_global():
    arr = image_u8(11)
    flips = [np.array_equal(T.RandomHorizontalFlip()(arr, np.random.default_rng(s)), arr[..., ::-1])
             for s in range(40)]
    assert 5 < sum(flips) < 35
    assert np.array_equal(T.RandomHorizontalFlip(p=1.0)(arr, np.random.default_rng(0)), arr[..., ::-1])
    assert np.array_equal(T.RandomVerticalFlip(p=1.0)(arr, np.random.default_rng(0)), arr[..., ::-1, :])
    with pytest.raises(ValueError, match="explicit numpy Generator"):
        T.RandomHorizontalFlip()(arr)


@pytest.mark.parametrize("factor", [0.3, 1.0, 1.7])
def test_color_adjustments(TF, factor):
    arr = image_u8(12)
    ta = torch.from_numpy(arr)
    pil = pil_of(arr)
    for ours, theirs in [(F.adjust_brightness, TF.adjust_brightness), (F.adjust_contrast, TF.adjust_contrast),
                         (F.adjust_saturation, TF.adjust_saturation)]:
        check_u8(ours(arr, factor), theirs(ta, factor), tol=1)
        check_pil(ours(pil, factor), theirs(pil, factor))
        x = arr.astype(np.float32) / 255
        np.testing.assert_allclose(ours(x, factor), theirs(torch.from_numpy(x), factor).numpy(), atol=1e-6)
    hue = (factor - 1) / 2
    check_u8(F.adjust_hue(arr, hue), TF.adjust_hue(ta, hue), tol=1)
    check_pil(F.adjust_hue(pil, hue), TF.adjust_hue(pil, hue))
    x = arr.astype(np.float32) / 255
    np.testing.assert_allclose(F.adjust_hue(x, hue), TF.adjust_hue(torch.from_numpy(x), hue).numpy(), atol=1e-5)


def test_color_jitter_params_then_torchvision(TF, TT):
    arr = image_u8(13)
    t = T.ColorJitter(0.4, 0.4, 0.4, 0.1)
    tv = TT.ColorJitter(0.4, 0.4, 0.4, 0.1)
    assert (t.brightness, t.contrast, t.saturation, t.hue) == (tuple(tv.brightness), tuple(tv.contrast),
                                                               tuple(tv.saturation), tuple(tv.hue))
    for seed in range(3):
        order, b, c, s, h = t.get_params(t.brightness, t.contrast, t.saturation, t.hue, np.random.default_rng(seed))
        want = torch.from_numpy(arr)
        for i in order:
            fn, f = [(TF.adjust_brightness, b), (TF.adjust_contrast, c), (TF.adjust_saturation, s),
                     (TF.adjust_hue, h)][i]
            want = fn(want, f)
        check_u8(t(arr, np.random.default_rng(seed)), want, tol=1)


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
@pytest.mark.parametrize("expand", [False, True])
def test_rotate(TF, mode, expand):
    arr = image_u8(14)
    for angle in [17.0, -63.5, 90.0]:
        for fill in [None, [10.0, 20.0, 30.0]]:
            want = TF.rotate(torch.from_numpy(arr), angle, tv_mode(TF, mode), expand, fill=fill).numpy()
            got = F.rotate(arr, angle, mode, expand, fill=fill)
            assert got.shape == want.shape
            diff = np.abs(got.astype(int) - want.astype(int))
            # a sample point exactly on a pixel edge may round the other way in float32 (nearest)
            assert (diff > 1).mean() < 0.002 and (mode == "nearest" or diff.max() <= 1), (diff.max(), (diff > 1).mean())
    pil = pil_of(arr)
    check_pil(F.rotate(pil, 17.0, mode, expand, fill=[1, 2, 3]), TF.rotate(pil, 17.0, tv_mode(TF, mode), expand,
                                                                           fill=[1, 2, 3]))


def test_random_rotation(TF):
    arr = image_u8(15)
    t = T.RandomRotation(30, interpolation="bilinear")
    angle = t.get_params(t.degrees, np.random.default_rng(3))
    assert -30 <= angle <= 30
    want = TF.rotate(torch.from_numpy(arr), angle, tv_mode(TF, "bilinear"), fill=[0.0, 0.0, 0.0]).numpy()
    diff = np.abs(t(arr, np.random.default_rng(3)).astype(int) - want.astype(int))
    assert diff.max() <= 1


def test_compose_passes_rng_and_calls_plain_callables():
    arr = image_u8(16)
    calls = []
    t = T.Compose([T.RandomHorizontalFlip(), lambda x: calls.append(1) or x, T.RandomCrop(10)])
    a = t(arr, np.random.default_rng(5))
    b = t(arr, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert calls == [1, 1] and a.shape == (3, 10, 10)
    assert not all(np.array_equal(t(arr, np.random.default_rng(s)), a) for s in range(6, 12))


def test_standard_imagenet_pipeline_matches_torchvision_pipeline(TF):
    """RandomResizedCrop + flip + ToTensor + Normalize on a PIL image, step by step with our params."""
    pil = pil_of(image_u8(17, h=64, w=80))
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    rrc = T.RandomResizedCrop(32)
    ours = T.Compose([rrc, T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)])
    rng = np.random.default_rng(11)
    i, j, h, w = rrc.get_params(pil, rrc.scale, rrc.ratio, rng)
    flip = rng.random() < 0.5
    ref = TF.resized_crop(pil, i, j, h, w, [32, 32])
    ref = TF.hflip(ref) if flip else ref
    ref = TF.normalize(TF.to_tensor(ref), mean, std).numpy()
    np.testing.assert_array_equal(ours(pil, np.random.default_rng(11)), ref)  # same float32 arithmetic
    assert math.isfinite(float(ref.sum()))
    x = np.ones((5, 6, 1), np.float32)  # a float input must not be normalized in place
    T.Compose([T.ToTensor(), T.Normalize([0.5], [0.5])])(x)
    np.testing.assert_array_equal(x, 1.0)
