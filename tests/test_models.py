"""Models split into f(x) (penultimate layer) and a linear head, for any input channels."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from frogs.errors import ConfigError
from frogs.models import ModelSpec, build_model
from frogs.settings import ModelSettings

GREY = ModelSpec(1, 28, 10, (0.3,), (0.3,))
RGB = ModelSpec(3, 32, 10, (0.5,) * 3, (0.25,) * 3)


@pytest.mark.parametrize("spec", [GREY, RGB])
def test_alexnet_cifar_follows_table_1(spec):
    model = build_model(spec, ModelSettings(name="alexnet_cifar")).eval()
    convs = [m for m in model.backbone if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.backbone if isinstance(m, nn.Linear)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (spec.in_channels, 64, (5, 5)),
        (64, 64, (5, 5)),
    ]
    assert sum(isinstance(m, nn.LocalResponseNorm) for m in model.backbone) == 2
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.backbone) == 2
    assert [m.out_features for m in linears] == [384, 192]
    x = torch.rand(2, spec.in_channels, spec.image_size, spec.image_size)
    assert model.features(x).shape == (2, 192)
    assert model(x).shape == (2, 10)
    assert torch.allclose(model(x), model.head(model.features(x)))


def test_resnet18_and_inception_expose_their_feature_layers():
    resnet = build_model(GREY, ModelSettings(name="resnet18", small_input=True)).eval()
    assert resnet.features(torch.rand(2, 1, 28, 28)).shape == (2, 512)
    inception = build_model(RGB, ModelSettings(name="inception_v3", input_size=75)).eval()
    assert inception.features(torch.rand(1, 3, 32, 32)).shape == (1, 2048)


def test_unknown_model_and_weights_are_clear_errors():
    with pytest.raises(ConfigError, match=r"unknown model 'vgg'.*alexnet_cifar"):
        build_model(RGB, ModelSettings(name="vgg"))
    with pytest.raises(ConfigError, match=r"model\.weights='BOGUS'"):
        build_model(RGB, ModelSettings(name="resnet18", weights="BOGUS"))
