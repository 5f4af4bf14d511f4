"""funcnet.nn.init against torch.nn.init: the formulas exactly (gain, fan), the distributions by a
two-sample Kolmogorov-Smirnov test against torch's own draws (the values cannot match: torch's
CPU random stream is not JAX's)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from funcnet.nn import init

# (shape) cases for fans: Linear, Conv1d/2d/3d, a zero-size dimension
FAN_SHAPES = [(3, 5), (8, 4, 3), (6, 2, 3, 5), (4, 3, 2, 2, 2), (7, 0)]


@pytest.mark.parametrize("shape", FAN_SHAPES)
def test_fan_in_and_fan_out_match_torch(shape):
    expected = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    assert init.calculate_fan_in_and_fan_out(shape) == expected


def test_fan_needs_two_dimensions_like_torch():
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(4))
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.calculate_fan_in_and_fan_out((4,))


@pytest.mark.parametrize("nonlinearity,param", [
    ("linear", None), ("conv1d", None), ("conv2d", None), ("conv3d", None), ("conv_transpose1d", None),
    ("conv_transpose2d", None), ("conv_transpose3d", None), ("sigmoid", None), ("tanh", None),
    ("relu", None), ("leaky_relu", None), ("leaky_relu", 0.2), ("leaky_relu", math.sqrt(5)), ("selu", None),
])
def test_calculate_gain_matches_torch(nonlinearity, param):
    assert init.calculate_gain(nonlinearity, param) == torch.nn.init.calculate_gain(nonlinearity, param)


def test_calculate_gain_rejects_unknown_like_torch():
    with pytest.raises(ValueError, match="Unsupported nonlinearity"):
        torch.nn.init.calculate_gain("swish")
    with pytest.raises(ValueError, match="Unsupported nonlinearity"):
        init.calculate_gain("swish")


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov D: the largest gap between the empirical CDFs."""
    a, b = np.sort(a.ravel()), np.sort(b.ravel())
    grid = np.concatenate([a, b])
    cdf_a, cdf_b = np.searchsorted(a, grid, "right") / a.size, np.searchsorted(b, grid, "right") / b.size
    return float(np.max(np.abs(cdf_a - cdf_b)))


def assert_same_distribution(ours: np.ndarray, theirs: np.ndarray):
    """KS at significance 1e-4: D < 2.15·√((n+m)/(n·m)) (c(α) = √(-ln(α/2)/2)). A wrong bound or
    std by 5% gives D ≈ 0.03 at these sizes, over twice the threshold (≈ 0.0136 for 50k vs 50k)."""
    n, m = ours.size, theirs.size
    threshold = math.sqrt(-math.log(1e-4 / 2) / 2) * math.sqrt((n + m) / (n * m))
    d = ks_statistic(np.asarray(ours, np.float64), np.asarray(theirs, np.float64))
    assert d < threshold, f"KS D = {d:.4f} >= {threshold:.4f}"


# (funcnet initialiser, torch in-place initialiser) over a [250, 40, 5] weight (fan_in 200, fan_out 1250)
SHAPE = (250, 40, 5)
CASES = {
    "uniform": (init.uniform(-0.3, 0.7), lambda t: torch.nn.init.uniform_(t, -0.3, 0.7)),
    "normal": (init.normal(0.5, 2.0), lambda t: torch.nn.init.normal_(t, 0.5, 2.0)),
    "kaiming_uniform_default": (init.kaiming_uniform(), torch.nn.init.kaiming_uniform_),
    "kaiming_uniform_relu_fan_out": (init.kaiming_uniform(mode="fan_out", nonlinearity="relu"),
                                     lambda t: torch.nn.init.kaiming_uniform_(t, mode="fan_out", nonlinearity="relu")),
    "kaiming_uniform_a_sqrt5": (init.kaiming_uniform(a=math.sqrt(5)),
                                lambda t: torch.nn.init.kaiming_uniform_(t, a=math.sqrt(5))),
    "kaiming_normal_default": (init.kaiming_normal(), torch.nn.init.kaiming_normal_),
    "kaiming_normal_leaky_fan_out": (init.kaiming_normal(a=0.2, mode="fan_out"),
                                     lambda t: torch.nn.init.kaiming_normal_(t, a=0.2, mode="fan_out")),
    "xavier_uniform": (init.xavier_uniform(1.5), lambda t: torch.nn.init.xavier_uniform_(t, 1.5)),
    "xavier_normal": (init.xavier_normal(0.7), lambda t: torch.nn.init.xavier_normal_(t, 0.7)),
    "torch_default_weight": (init.torch_default_weight, lambda t: torch.nn.init.kaiming_uniform_(t, a=math.sqrt(5))),
}


@pytest.mark.parametrize("name", list(CASES))
def test_random_initialisers_draw_torch_distributions(name):
    ours_fn, torch_fn = CASES[name]
    ours = np.asarray(ours_fn(jax.random.key(0), SHAPE, jnp.float32))
    assert ours.shape == SHAPE and ours.dtype == np.float32
    torch.manual_seed(0)
    theirs = torch_fn(torch.empty(SHAPE)).numpy()
    assert_same_distribution(ours, theirs)
    if "uniform" in name or name == "torch_default_weight":  # the support, exactly
        low, high = theirs.min(), theirs.max()
        assert ours.min() >= low - 1e-3 * (high - low) and ours.max() <= high + 1e-3 * (high - low)
    # reproducible for a key, different for another
    np.testing.assert_array_equal(ours_fn(jax.random.key(0), SHAPE, jnp.float32), ours)
    assert not np.array_equal(ours_fn(jax.random.key(1), SHAPE, jnp.float32), ours)


def test_torch_default_bias_and_constants():
    fan_in = 200
    ours = np.asarray(init.torch_default_bias(fan_in)(jax.random.key(0), (50_000,), jnp.float32))
    layer = torch.nn.Linear(fan_in, 50_000)  # its bias: U(±1/√fan_in)
    assert_same_distribution(ours, layer.bias.detach().numpy())
    np.testing.assert_array_equal(init.torch_default_bias(0)(jax.random.key(0), (3,), jnp.float32), 0.0)
    for ours_fn, torch_fn in [(init.constant(0.25), lambda t: torch.nn.init.constant_(t, 0.25)),
                              (init.zeros, torch.nn.init.zeros_), (init.ones, torch.nn.init.ones_)]:
        for dtype, tdtype in [(jnp.float32, torch.float32), (jnp.bfloat16, torch.bfloat16)]:
            got = ours_fn(jax.random.key(0), (2, 3), dtype)
            assert got.dtype == dtype
            np.testing.assert_array_equal(np.asarray(got, np.float32),
                                          torch_fn(torch.empty(2, 3, dtype=tdtype)).float().numpy())
