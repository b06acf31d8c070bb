"""Models split into f(x) (penultimate layer) and a linear head, for any input channels."""

from __future__ import annotations

import urllib.error

import pytest
import torch
from torch import nn

from frogs.config.settings import ModelSettings, updated
from frogs.errors import ConfigError
from frogs.models.architectures import ModelSpec, build_model
from frogs.models.layers import LocalResponseNorm

GREY = ModelSpec(1, 28, 10, (0.3,), (0.3,))
RGB = ModelSpec(3, 32, 10, (0.5,) * 3, (0.25,) * 3)
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


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


def test_alexnet_cifar_backbone_is_table_1_layer_by_layer():
    backbone = build_model(RGB, ModelSettings(name="alexnet_cifar")).backbone
    expected = [
        nn.Conv2d,
        nn.ReLU,
        nn.MaxPool2d,
        LocalResponseNorm,
        nn.Conv2d,
        nn.ReLU,
        nn.MaxPool2d,
        LocalResponseNorm,
        nn.Flatten,
        nn.Linear,
        nn.ReLU,
        nn.Linear,
        nn.ReLU,
    ]
    assert [type(m) for m in backbone] == expected
    assert [m.out_features for m in backbone if isinstance(m, nn.Linear)] == [384, 192]


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network and an empty hub cache: every weight download fails as it does offline."""
    import torchvision.models._api

    def refuse(url, *args, **kwargs):
        raise urllib.error.URLError(f"offline: {url}")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", refuse)


@pytest.fixture
def weights_available(monkeypatch, tmp_path):
    """Weight downloads succeed: they return a fresh torchvision network's own state dict."""
    import torchvision.models
    import torchvision.models._api

    def serve(url, *args, **kwargs):
        arch = "inception_v3" if "inception" in url else "resnet18"
        kwargs = {"init_weights": False, "aux_logits": True} if arch == "inception_v3" else {}
        return getattr(torchvision.models, arch)(weights=None, **kwargs).state_dict()

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", serve)
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", serve)


@pytest.mark.usefixtures("offline")
def test_unloadable_weights_are_an_error_naming_the_fixes(tmp_path):
    with pytest.raises(ConfigError) as caught:
        build_model(RGB, ModelSettings(name="resnet18", weights="IMAGENET1K_V1"))
    message = str(caught.value)
    assert "\n" not in message
    assert "model.weights='IMAGENET1K_V1'" in message and "URLError" in message
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in message
    assert "model.on_missing_weights=pretrain" in message and "model.weights=null" in message


@pytest.mark.usefixtures("offline")
def test_pretraining_instead_of_weights_needs_epochs():
    settings = ModelSettings(
        name="resnet18", weights="IMAGENET1K_V1", on_missing_weights="pretrain"
    )
    settings = updated(settings, {"pretrain.epochs": 0})
    with pytest.raises(ConfigError, match=r"model\.pretrain\.epochs=0.*nothing would train"):
        build_model(RGB, settings)


@pytest.mark.usefixtures("offline")
def test_missing_weights_with_pretrain_build_a_random_network(caplog):
    settings = ModelSettings(
        name="resnet18", weights="IMAGENET1K_V1", on_missing_weights="pretrain"
    )
    model = build_model(RGB, settings)
    assert model.loaded_weights is None
    assert "could not be loaded" in caplog.text
    assert torch.allclose(model.adapter.mean.flatten(), torch.tensor(RGB.mean))


@pytest.mark.usefixtures("weights_available")
def test_torchvision_weights_bring_their_imagenet_normalisation():
    model = build_model(GREY, ModelSettings(name="resnet18", weights="IMAGENET1K_V1")).eval()
    assert model.loaded_weights == "IMAGENET1K_V1"
    assert "loaded_weights='IMAGENET1K_V1'" in repr(model)
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    assert torch.allclose(model.adapter.mean.flatten(), mean)
    assert torch.allclose(model.adapter.std.flatten(), std)
    x = torch.rand(2, 1, 28, 28)
    expected = (x.expand(-1, 3, -1, -1) - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    assert torch.allclose(model.adapter(x), expected)  # grey repeated first, then each channel
    assert model.features(x).shape == (2, 512)


def test_grey_dataset_statistics_are_repeated_for_an_rgb_backbone():
    model = build_model(GREY, ModelSettings(name="resnet18"))
    assert model.loaded_weights is None
    assert model.adapter.mean.flatten().tolist() == pytest.approx([0.3] * 3)
    x = torch.rand(1, 1, 28, 28)
    assert torch.allclose(model.adapter(x), (x.expand(-1, 3, -1, -1) - 0.3) / 0.3)


@pytest.mark.usefixtures("offline")
def test_a_checkpoint_architecture_builds_without_fetching_weights():
    settings = ModelSettings(name="inception_v3", weights="IMAGENET1K_V1", input_size=75)
    model = build_model(RGB, settings, fetch_weights=False)
    assert model.loaded_weights == "IMAGENET1K_V1"
    assert model.backbone.transform_input  # what the ImageNet weights need
    assert model.adapter.mean.flatten().tolist() == pytest.approx(IMAGENET_MEAN)
