"""torchvision 0.28's classification models, converted by ``funcnet.port`` from the published
wheel's source, against the real torchvision on torch (see ``zoo_harness``). For every family, at
small sizes: ``state_dict`` keys and order equal torch's; the default initialisation draws each
tensor as the model's own init code does; with torch's weights (made non-degenerate) loaded, the
eval output matches to 1e-4 relative; train mode with dropout off gives torch's output and
BatchNorm running statistics after one step; a jitted ``make_train_step`` runs one step."""

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
    fmodel, _, fresh = _check(zoo, "resnet", lambda m: m.ResNet(m.BasicBlock, [1, 1, 1, 1], num_classes=5))
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
    _check(zoo, "resnet", lambda m: m.ResNet(m.Bottleneck, [1, 1, 1, 1], num_classes=5, groups=4, width_per_group=4),
           train_step=False)


@pytest.mark.slow
def test_wide_resnet(zoo):
    _check(zoo, "resnet", lambda m: m.ResNet(m.Bottleneck, [1, 1, 1, 1], num_classes=5, width_per_group=128),
           x_shape=(4, 3, 32, 32), train_step=False)  # BatchNorm over 4 values at 1x1: well conditioned
