"""torchvision 0.28's classification models, converted by ``funcnet.port`` from the published
wheel's source, against the real torchvision on torch (see ``zoo_harness``). For every family, at
small sizes: ``state_dict`` keys and order equal torch's; the default initialisation draws each
tensor as the model's own init code does; with torch's weights (made non-degenerate) loaded, the
eval output matches to 1e-4 relative; train mode with dropout off gives torch's output and
BatchNorm running statistics after one step, and finite, non-zero jitted gradients through it (one compile
for both; ``make_train_step`` on a ported model is covered by the porting example's test)."""

from __future__ import annotations

from functools import partial

import jax
import numpy as np
import pytest
import zoo_harness as zh
from torchvision_wheel import source_root

FAMILIES = ["alexnet", "convnext", "densenet", "efficientnet", "googlenet", "inception", "maxvit", "mnasnet",
            "mobilenetv2", "mobilenetv3", "regnet", "resnet", "shufflenetv2", "squeezenet", "swin_transformer",
            "vgg", "vision_transformer"]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    source_root()  # skips (offline) or fails (CI) with the reason when the wheel is unavailable
    root = str(tmp_path_factory.mktemp("zoo"))
    flags = zh.build_package(root, FAMILIES)
    return root, flags


def _check(zoo, family, make, **kwargs):
    fmodule, tmodule = zh.load(zoo[0], family)
    return zh.check_family(fmodule, tmodule, make, **kwargs)


# -- the families ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_alexnet(zoo):
    _check(zoo, "alexnet", lambda m: m.AlexNet(num_classes=5, dropout=0.0), x_shape=(2, 3, 64, 64))


def test_resnet_and_its_default_init(zoo):
    # batch 4: train-mode BatchNorm over 2 values per channel (batch 2 at layer4's 1x1 maps) turns a change of
    # summation order in the convolutions (oneDNN's, XLA's) into 1.4e-4 of output (see test_resnext)
    fmodel, _, fresh = _check(zoo, "resnet", lambda m: m.ResNet(m.BasicBlock, [1, 1, 1, 1], num_classes=5),
                              x_shape=(4, 3, 32, 32))
    sd = fmodel.state_dict(fresh)
    w = np.asarray(sd["layer1.0.conv1.weight"])  # kaiming_normal_(mode="fan_out", nonlinearity="relu")
    np.testing.assert_allclose(w.std(), np.sqrt(2 / (w.shape[0] * 9)), rtol=0.05)
    assert (np.asarray(sd["bn1.weight"]) == 1).all() and (np.asarray(sd["bn1.bias"]) == 0).all()


def test_resnet_zero_init_residual(zoo):
    fmodule, _ = zh.load(zoo[0], "resnet")
    model = fmodule.ResNet(fmodule.Bottleneck, [1, 1, 1, 1], num_classes=5, zero_init_residual=True)
    sd = model.state_dict(model.init(jax.random.key(0)))
    assert (np.asarray(sd["layer2.0.bn3.weight"]) == 0).all() and (np.asarray(sd["layer2.0.bn1.weight"]) == 1).all()


def test_resnext(zoo):
    # batch 4: train-mode BatchNorm over 2 values per channel (batch 2 at layer4's 1x1 maps) turned a
    # change of summation order in the 1x1 convolutions into 1.1e-4 of output; over 4 values: 6e-6
    _check(zoo, "resnet", lambda m: m.ResNet(m.Bottleneck, [1, 1, 1, 1], num_classes=5, groups=4, width_per_group=4),
           x_shape=(4, 3, 32, 32), train_step=False)


@pytest.mark.slow
def test_wide_resnet(zoo):
    _check(zoo, "resnet", lambda m: m.ResNet(m.Bottleneck, [1, 1, 1, 1], num_classes=5, width_per_group=128),
           x_shape=(4, 3, 32, 32), train_step=False)  # BatchNorm over 4 values at 1x1: well conditioned


def test_convnext(zoo):
    _check(zoo, "convnext", lambda m: m.ConvNeXt([m.CNBlockConfig(8, 16, 1), m.CNBlockConfig(16, None, 1)],
                                                  stochastic_depth_prob=0.0, num_classes=5))


def test_densenet(zoo):
    _check(zoo, "densenet", lambda m: m.DenseNet(growth_rate=4, block_config=(2, 2), num_init_features=8, bn_size=2,
                                                  drop_rate=0, num_classes=5))


def test_densenet_memory_efficient(zoo):  # torch.utils.checkpoint -> jax.checkpoint; x.requires_grad reads True
    _check(zoo, "densenet", lambda m: m.DenseNet(growth_rate=4, block_config=(2,), num_init_features=8, bn_size=2,
                                                  drop_rate=0, num_classes=5, memory_efficient=True))


def test_efficientnet_v1(zoo):
    def make(m):
        setting, last = m._efficientnet_conf("efficientnet_b0", width_mult=0.25, depth_mult=0.1)
        return m.EfficientNet(setting, dropout=0.0, stochastic_depth_prob=0.0, num_classes=5, last_channel=last)

    _check(zoo, "efficientnet", make)


def test_efficientnet_v2(zoo):
    def make(m):
        setting = [m.FusedMBConvConfig(1, 3, 1, 8, 8, 1), m.FusedMBConvConfig(4, 3, 2, 8, 16, 1),
                   m.MBConvConfig(4, 3, 2, 16, 24, 1)]
        return m.EfficientNet(setting, dropout=0.0, stochastic_depth_prob=0.0, num_classes=5, last_channel=32,
                              norm_layer=partial(m.nn.BatchNorm2d, eps=1e-3))

    _check(zoo, "efficientnet", make)


def test_stochastic_depth_draws_from_the_apply_key(zoo):
    """torchvision's own ``StochasticDepth`` (``ops/stochastic_depth.py``, Bernoulli noise drawn in a
    free function), converted: rows or the whole batch dropped at rate p, kept ones scaled by
    1 / (1 - p), from the key given to apply; identity in eval mode."""
    zh.load(zoo[0], "efficientnet")  # puts the converted package on the path
    from fvision.ops.stochastic_depth import StochasticDepth

    x = jax.numpy.ones((4000, 3))
    rows, _ = StochasticDepth(0.3, "row").apply({}, x, key=jax.random.key(0), train=True)
    assert set(np.unique(np.asarray(rows))) == {0.0, np.float32(1 / 0.7)}
    assert 0.27 < float((rows[:, 0] == 0).mean()) < 0.33
    batches = [float(StochasticDepth(0.5, "batch").apply({}, x, key=jax.random.key(k), train=True)[0].max())
               for k in range(40)]
    assert set(batches) == {0.0, 2.0} and 10 < batches.count(0.0) < 30
    np.testing.assert_array_equal(StochasticDepth(0.3, "row").apply({}, x), x)  # eval: no key needed


def test_efficientnet_trains_with_its_default_stochastic_depth(zoo):
    """EfficientNet as torchvision builds it (stochastic depth 0.2, dropout 0.2): a jitted train step's
    loss and gradients are finite and depend on the key."""
    import funcnet.nn.functional as F

    fmodule, _ = zh.load(zoo[0], "efficientnet")
    setting, last = fmodule._efficientnet_conf("efficientnet_b0", width_mult=0.25, depth_mult=0.2)
    model = fmodule.EfficientNet(setting, dropout=0.2, stochastic_depth_prob=0.2, num_classes=5, last_channel=last)
    variables = model.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (2, 3, 32, 32))

    @jax.jit
    def loss_and_grads(params, key):
        def loss(params):
            out, _ = model.apply(params, x, buffers=variables.buffers, key=key, train=True)
            return F.cross_entropy(out, jax.numpy.array([0, 3]))
        return jax.value_and_grad(loss)(params)

    (loss, grads), (other, _) = loss_and_grads(variables.params, jax.random.key(2)), \
        loss_and_grads(variables.params, jax.random.key(3))
    assert np.isfinite(float(loss)) and all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))
    assert float(loss) != float(other)


@pytest.mark.slow
def test_googlenet(zoo):
    _check(zoo, "googlenet", lambda m: m.GoogLeNet(num_classes=5, aux_logits=True, transform_input=True,
                                                    init_weights=True, dropout=0.0, dropout_aux=0.0),
           x_shape=(8, 3, 32, 32))  # batch 8: train-mode BatchNorm at 1x1 is well conditioned


@pytest.mark.slow
def test_inception_v3(zoo):
    # Its aux head needs 17x17 at Mixed_6e (a 299x299 input) to run in train mode: the outputs are
    # compared without it at 75x75, the smallest input (batch 8: train-mode BatchNorm at 1x1 over 8 values);
    # with it, keys and initialisation.
    _check(zoo, "inception", lambda m: m.Inception3(num_classes=5, aux_logits=False, transform_input=True,
                                                     init_weights=True, dropout=0.0), x_shape=(8, 3, 75, 75),
           train_rel=1e-3)  # ~95 train-mode BatchNorms, the last ones over 8 values: 1.6e-4 measured
    fmodule, tmodule = zh.load(zoo[0], "inception")
    fmodel, tmodel = (m.Inception3(num_classes=5, aux_logits=True, init_weights=True) for m in (fmodule, tmodule))
    zh.assert_same_distributions(fmodel.state_dict(fmodel.init(jax.random.key(0))), zh.torch_state(tmodel))


@pytest.mark.slow
def test_maxvit(zoo):
    _check(zoo, "maxvit", lambda m: m.MaxVit(input_size=(32, 32), stem_channels=8, partition_size=2,
                                              block_channels=[8, 16], block_layers=[1, 1], head_dim=4,
                                              stochastic_depth_prob=0.0, num_classes=5))


def test_mnasnet(zoo):
    # batch 8: train-mode BatchNorm over 2 values per channel (batch 2 at 1x1) amplifies rounding by 1/sqrt(eps)
    _check(zoo, "mnasnet", lambda m: m.MNASNet(0.25, num_classes=5, dropout=0.0), x_shape=(8, 3, 32, 32))


def test_mobilenet_v2(zoo):
    _check(zoo, "mobilenetv2", lambda m: m.MobileNetV2(num_classes=5, width_mult=0.25, dropout=0.0,
                                                        inverted_residual_setting=[[1, 8, 1, 1], [6, 16, 2, 2]]))


def test_mobilenet_v3(zoo):
    def make(m):
        setting, last = m._mobilenet_v3_conf("mobilenet_v3_small", width_mult=0.25, reduced_tail=True)
        return m.MobileNetV3(setting, last, num_classes=5, dropout=0.0)

    _check(zoo, "mobilenetv3", make)


def test_regnet(zoo):
    _check(zoo, "regnet", lambda m: m.RegNet(m.BlockParams.from_init_params(depth=2, w_0=8, w_a=8.0, w_m=2.0,
                                                                            group_width=4, se_ratio=0.25),
                                              num_classes=5))


def test_shufflenet_v2(zoo):
    _check(zoo, "shufflenetv2", lambda m: m.ShuffleNetV2([1, 1, 1], [8, 16, 32, 64, 128], num_classes=5))


@pytest.mark.parametrize("version", ["1_0", "1_1"])
def test_squeezenet(zoo, version):
    _check(zoo, "squeezenet", lambda m: m.SqueezeNet(version, num_classes=5, dropout=0.0))


def test_swin_v1(zoo):
    _check(zoo, "swin_transformer", lambda m: m.SwinTransformer([4, 4], 8, [2, 1], [2, 2], [2, 2],
                                                                 stochastic_depth_prob=0.0, num_classes=5))


def test_swin_v2(zoo):
    _check(zoo, "swin_transformer", lambda m: m.SwinTransformer([4, 4], 8, [2, 1], [2, 2], [2, 2],
                                                                 stochastic_depth_prob=0.0, num_classes=5,
                                                                 block=m.SwinTransformerBlockV2,
                                                                 downsample_layer=m.PatchMergingV2))


@pytest.mark.slow
@pytest.mark.parametrize("batch_norm", [False, True])
def test_vgg(zoo, batch_norm):
    _check(zoo, "vgg", lambda m: m.VGG(m.make_layers([8, "M", 512, "M"], batch_norm=batch_norm), num_classes=5,
                                        dropout=0.0), x_shape=(2, 3, 16, 16), train_step=batch_norm)


def test_vision_transformer(zoo):
    _check(zoo, "vision_transformer", lambda m: m.VisionTransformer(image_size=32, patch_size=8, num_layers=1,
                                                                     num_heads=2, hidden_dim=16, mlp_dim=32,
                                                                     dropout=0.0, attention_dropout=0.0,
                                                                     num_classes=5))
