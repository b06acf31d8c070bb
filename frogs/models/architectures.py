"""Networks split into a feature extractor f(x) (the penultimate layer) and a linear head.

Feature collision (Eq. 1) lives in the penultimate-layer space, the transfer victim retrains only
the head, and the angular deviation compares head weights, so every model exposes exactly that
split. Models take pixels in [0, 1] and normalise inside, so attacks work in pixel space.

Configured torchvision weights that cannot be loaded never silently become a random network:
``model.on_missing_weights`` decides between a one-line error and frogs' own pretraining.

Besides the registered networks, ``model=torchvision`` (any torchvision classification
architecture by name) and ``model=module`` (any ``nn.Module`` a Hydra ``_target_`` builds) tap
f(x) at a named graph node with ``torch.fx`` (``create_feature_extractor``), so a network whose
forward is not a chain of children (skip connections, functional calls) splits just as well.
"""

from __future__ import annotations

import copy
import functools
import logging
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from frogs.config.registry import Registry
from frogs.config.settings import ModelSettings
from frogs.errors import ConfigError
from frogs.models.layers import LocalResponseNorm
from frogs.store.identity import stable_hash

log = logging.getLogger(__name__)

MODELS: Registry[Callable[..., nn.Module]] = Registry("model", default_schema=ModelSettings)


@dataclass(frozen=True)
class TappedModelSettings(ModelSettings):
    """A network frogs did not define, cut at a graph node (``model=torchvision | module``)."""

    # the graph node whose output, flattened, is f(x) (``torchvision.models.feature_extraction``
    # names); null: the input of the last nn.Linear
    feature_node: str | None = None

    def check(self) -> None:
        super().check()
        if self.small_input:
            raise ConfigError(
                f"model.small_input=True is not allowed with model={self.name}; expected false "
                "(the network is built as its builder defines it; model=resnet18 has a CIFAR stem)"
            )
        if self.feature_node is not None and (
            not isinstance(self.feature_node, str) or not self.feature_node
        ):
            raise ConfigError(
                f"model.feature_node={self.feature_node!r} is not allowed; expected a graph node "
                "name (e.g. avgpool, flatten) or null"
            )


@dataclass(frozen=True)
class TorchvisionModelSettings(TappedModelSettings):
    """``model=torchvision``: any torchvision classification architecture, by name."""

    name: str = "torchvision"
    arch: str = "resnet18"  # any of torchvision.models.list_models(module=torchvision.models)

    def check(self) -> None:
        super().check()
        from torchvision import models

        archs = models.list_models(module=models)
        if self.arch not in archs:
            raise ConfigError(
                f"model.arch={self.arch!r} is not allowed with model=torchvision; expected a "
                f"torchvision classification architecture, one of {', '.join(archs)}"
            )


@dataclass(frozen=True)
class ModuleModelSettings(TappedModelSettings):
    """``model=module``: any nn.Module a builder returns, built the Hydra way."""

    name: str = "module"
    # ``_target_`` (dotted path of a callable returning an nn.Module) plus its keyword arguments,
    # built by ``hydra.utils.instantiate``
    builder: Any = None
    in_channels: int | None = None  # input channels the network takes; null: the dataset's

    def check(self) -> None:
        super().check()
        if self.in_channels is not None and self.in_channels < 1:
            raise ConfigError(
                f"model.in_channels={self.in_channels!r} is not allowed with model=module; "
                "expected null or a number > 0"
            )
        if self.weights is not None:
            raise ConfigError(
                f"model.weights={self.weights!r} is not allowed with model=module; expected null "
                "(the builder loads its own weights, e.g. through a model.builder argument)"
            )
        if self.builder is None:
            return  # composes (model=module alone); building then asks for model.builder._target_
        target = self.builder.get("_target_") if isinstance(self.builder, dict) else self.builder
        if not isinstance(self.builder, dict) or not isinstance(target, str | None):
            raise ConfigError(
                f"model.builder={self.builder!r} is not allowed; expected a mapping with _target_ "
                "(model.builder._target_=my_pkg.models.resnet18, +model.builder.KEY=VALUE)"
            )
        if target:
            _locate(target)


def _locate(target: str) -> None:
    """Import ``target`` (``package.module.attribute``) as ``hydra.utils.instantiate`` will, so
    that a builder that is not there fails at composition, naming it."""
    import pkgutil

    where = f"model.builder._target_={target!r}"
    try:
        obj = pkgutil.resolve_name(target)
    except Exception as exc:  # importing runs user code: any failure is its own
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        raise ConfigError(
            f"{where} is not importable ({reason}); expected the dotted path of a callable "
            "that returns an nn.Module, e.g. my_pkg.models.resnet18"
        ) from exc
    if not callable(obj):
        raise ConfigError(
            f"{where} is a {type(obj).__name__}, not callable; expected a callable that "
            "returns an nn.Module"
        )


# What loading torchvision weights raises when the file cannot be had or read: no network
# (URLError is an OSError), a hash mismatch or a state-dict mismatch (RuntimeError), a cut file.
_WEIGHT_LOAD_ERRORS = (OSError, RuntimeError, EOFError, pickle.UnpicklingError)


@dataclass(frozen=True)
class ModelSpec:
    """What the dataset tells a model builder about its inputs and outputs."""

    in_channels: int
    image_size: int
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


def _per_channel(values: Sequence[float], channels: int) -> torch.Tensor:
    """Statistics as a (1, channels, 1, 1) buffer; one grey value is repeated to every channel."""
    stats = torch.tensor([float(v) for v in values])
    if len(stats) == 1:
        stats = stats.repeat(channels)
    if len(stats) != channels:
        raise ValueError(f"{len(stats)} statistics for {channels} input channels")
    return stats.view(1, -1, 1, 1)


class InputAdapter(nn.Module):
    """[0, 1] pixels to backbone input: repeat grey to RGB, normalise, resize when needed.

    Grey is repeated *before* normalising, so 3-channel statistics (ImageNet's, for torchvision
    weights) apply channel by channel; 1-channel dataset statistics are repeated to match.
    """

    def __init__(
        self, mean: Sequence[float], std: Sequence[float], channels: int, size: int | None
    ) -> None:
        super().__init__()
        self.register_buffer("mean", _per_channel(mean, channels))
        self.register_buffer("std", _per_channel(std, channels))
        self.channels = channels
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.channels:
            x = x.expand(-1, self.channels, -1, -1)
        x = (x - self.mean) / self.std
        if self.size is not None and x.shape[-1] != self.size:
            x = nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear")
        return x

    def extra_repr(self) -> str:
        mean = [round(v, 4) for v in self.mean.flatten().tolist()]
        std = [round(v, 4) for v in self.std.flatten().tolist()]
        return f"channels={self.channels}, size={self.size}, mean={mean}, std={std}"


class FeatureClassifier(nn.Module):
    """``head(features(x))``; ``features`` is the penultimate layer the paper calls f(x).

    ``loaded_weights`` names the torchvision weights the backbone really started from (e.g.
    ``IMAGENET1K_V1``), None when it started random; it is part of ``repr`` so that anything keyed
    by the architecture (the clean-model cache) tells the two apart.
    """

    def __init__(
        self,
        adapter: InputAdapter,
        backbone: nn.Module,
        feature_dim: int,
        num_classes: int,
        loaded_weights: str | None = None,
    ):
        super().__init__()
        self.adapter = adapter
        self.backbone = backbone
        self.feature_dim = feature_dim
        self.head = nn.Linear(feature_dim, num_classes)
        self.loaded_weights = loaded_weights

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.backbone(self.adapter(x)), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def extra_repr(self) -> str:
        return f"feature_dim={self.feature_dim}, loaded_weights={self.loaded_weights!r}"


def _feature_dim(backbone: nn.Module, adapter: InputAdapter, spec: ModelSpec) -> int:
    probe = torch.zeros(1, spec.in_channels, spec.image_size, spec.image_size)
    with torch.no_grad():
        return int(torch.flatten(backbone.eval()(adapter(probe)), 1).shape[1])


@MODELS.register("alexnet_cifar")
def alexnet_cifar(
    spec: ModelSpec, settings: ModelSettings, fetch_weights: bool = True
) -> FeatureClassifier:
    """The paper's scaled-down AlexNet for CIFAR-10 (Table 1), for 1 or 3 input channels.

    Table 1 block by block: conv5x5-64, maxpool 3x3/2, LRN; conv5x5-64, maxpool 3x3/2, LRN;
    fc384, fc192 (= f(x)), fc-out (ReLU after every conv and hidden fc); the LRN is torch's, bit for
    bit, on a faster CPU path (``frogs.models.layers``). Always trained by frogs:
    there are no published weights, so ``fetch_weights`` changes nothing.
    """
    backbone = nn.Sequential(
        nn.Conv2d(spec.in_channels, 64, 5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, padding=1),
        LocalResponseNorm(9, alpha=0.001, beta=0.75, k=1.0),
        nn.Conv2d(64, 64, 5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, padding=1),
        LocalResponseNorm(9, alpha=0.001, beta=0.75, k=1.0),
        nn.Flatten(),
    )
    adapter = InputAdapter(spec.mean, spec.std, spec.in_channels, settings.input_size)
    flat = _feature_dim(backbone, adapter, spec)
    backbone.extend([nn.Linear(flat, 384), nn.ReLU(inplace=True), nn.Linear(384, 192), nn.ReLU()])
    return FeatureClassifier(adapter, backbone, 192, spec.num_classes)


def _torchvision_weights(arch: str, name: str | None) -> Any:
    """The torchvision weights enum member ``name`` of ``arch``, or None when not configured."""
    if not name:
        return None
    from torchvision.models import get_model_weights

    enum = get_model_weights(arch)
    try:
        return enum[name] if name != "DEFAULT" else enum.DEFAULT
    except KeyError:
        raise ConfigError(
            f"model.weights={name!r} is not a weight set of {arch}; expected one of "
            f"{', '.join(['DEFAULT', *enum.__members__])}"
        ) from None


def _architecture_of(arch: str, weights: Any) -> dict[str, Any]:
    """The constructor arguments torchvision sets itself when it loads ``weights``: the network
    those weights need, so that it can be built without them (and get a saved state dict)."""
    kwargs: dict[str, Any] = {"num_classes": len(weights.meta["categories"])}
    if arch in ("inception_v3", "googlenet"):
        kwargs.update(transform_input=True, aux_logits=True, init_weights=False)
    elif arch.startswith("vit_"):
        kwargs["image_size"] = weights.meta["min_size"][0]
    elif arch.startswith("maxvit"):
        kwargs["input_size"] = weights.meta["min_size"]
    return kwargs


def _short(text: str, limit: int = 160) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _unloadable_weights(arch: str, weights: Any, settings: ModelSettings, exc: Exception) -> None:
    """Raise the one-line error for weights that could not be loaded, unless the configuration
    asks frogs to pretrain instead (then warn, and let the caller build a random network)."""
    reason = _short(f"{type(exc).__name__}: {exc}")
    file = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name
    where = f"model.weights={settings.weights!r} of {arch} could not be loaded ({reason})"
    if settings.on_missing_weights == "error":
        raise ConfigError(
            f"{where}; expected the weight file at {file} (torch's hub cache, "
            "$TORCH_HOME/hub/checkpoints), or model.on_missing_weights=pretrain "
            "(with model.pretrain.epochs > 0), or model.weights=null"
        )
    if settings.pretrain.epochs == 0:
        raise ConfigError(
            f"model.on_missing_weights=pretrain is not allowed with model.pretrain.epochs=0: "
            f"{where} and nothing would train the random network; expected "
            f"model.pretrain.epochs > 0, the weight file at {file}, or model.weights=null"
        )
    log.warning(
        "%s; model.on_missing_weights=pretrain: frogs pretrains %s itself for %d epochs",
        where,
        arch,
        settings.pretrain.epochs,
    )


def _load_torchvision(
    arch: str, settings: ModelSettings, fetch_weights: bool, **kwargs: Any
) -> tuple[nn.Module, Any]:
    """A torchvision model and the weights (enum member) it really got, None when random.

    ``fetch_weights=False`` builds the network the configured weights need without loading them,
    for a caller that loads a state dict saved from such a model (a ``frogs pretrain`` file).
    """
    from torchvision import models

    builder = functools.partial(models.get_model, arch)
    weights = _torchvision_weights(arch, settings.weights)
    if weights is None:
        return builder(weights=None, **kwargs), None
    if not fetch_weights:
        return builder(weights=None, **{**kwargs, **_architecture_of(arch, weights)}), weights
    try:
        return builder(weights=weights, **kwargs), weights
    except _WEIGHT_LOAD_ERRORS as exc:  # offline without a cached file, a corrupt file
        _unloadable_weights(arch, weights, settings, exc)
    return builder(weights=None, **kwargs), None


def _normalisation(spec: ModelSpec, weights: Any) -> tuple[Sequence[float], Sequence[float]]:
    """Pretrained weights expect the statistics they were trained with (ImageNet's, from their
    own transforms); a network that frogs trains uses the dataset's."""
    if weights is None:
        return spec.mean, spec.std
    transform = weights.transforms()
    return tuple(transform.mean), tuple(transform.std)


@MODELS.register("resnet18")
def resnet18(
    spec: ModelSpec, settings: ModelSettings, fetch_weights: bool = True
) -> FeatureClassifier:
    """torchvision ResNet-18; ``small_input`` swaps the ImageNet stem for a CIFAR-style 3x3 conv
    (only when training from scratch: pretrained weights need their own stem)."""
    net, weights = _load_torchvision("resnet18", settings, fetch_weights)
    if settings.small_input and weights is None:
        net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    adapter = InputAdapter(*_normalisation(spec, weights), 3, settings.input_size)
    loaded = weights.name if weights is not None else None
    return FeatureClassifier(adapter, net, 512, spec.num_classes, loaded)


@MODELS.register("inception_v3")
def inception_v3(
    spec: ModelSpec, settings: ModelSettings, fetch_weights: bool = True
) -> FeatureClassifier:
    """torchvision Inception-v3 (the paper's transfer-learning network); f(x) is the 2048-d pool."""
    net, weights = _load_torchvision(
        "inception_v3",
        settings,
        fetch_weights,
        aux_logits=bool(settings.weights),
        init_weights=False,
    )
    net.aux_logits, net.AuxLogits = False, None
    net.fc = nn.Identity()
    adapter = InputAdapter(*_normalisation(spec, weights), 3, settings.input_size or 299)
    loaded = weights.name if weights is not None else None
    return FeatureClassifier(adapter, net, 2048, spec.num_classes, loaded)


# The name under which a tapped network's extractor returns its feature node.
_TAP = "f"
# Node lists longer than this are cut in error messages (the head and the tail are kept).
_NODE_LIST_LIMIT = 40


class NodeFeatures(nn.Module):
    """The output of one graph node of a traced network: ``extractor(x)`` is the dict that
    ``torchvision.models.feature_extraction.create_feature_extractor`` returns, tapped at ``node``.

    The extractor keeps only what the node needs (the network's layers after it are gone) and
    switches between its train and eval graphs with ``train()``/``eval()``. ``graph`` is a digest of
    both graphs' generated code, part of ``repr`` so that the clean-model cache and a checkpoint's
    recorded architecture tell apart two forwards over the same layers (with and without a skip).
    """

    def __init__(self, extractor: nn.Module, node: str) -> None:
        super().__init__()
        self.extractor = extractor
        self.node = node
        self.graph = _graph_digest(extractor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.extractor(x)[_TAP]

    def extra_repr(self) -> str:
        return f"node={self.node!r}, graph={self.graph}"

    def __deepcopy__(self, memo: dict[int, Any]) -> NodeFeatures:
        """A copy in the modes of the original: torchvision's extractor comes out of
        ``copy.deepcopy`` in train mode (its ``__init__`` calls ``train()``), which would turn a
        copied eval-mode victim's batch norms and dropouts back on."""
        modes = [module.training for module in self.modules()]
        copied = NodeFeatures.__new__(NodeFeatures)
        memo[id(self)] = copied
        copied.__dict__.update(copy.deepcopy(self.__dict__, memo))
        copied.extractor.train(self.extractor.training)  # the graph of that mode
        for module, mode in zip(copied.modules(), modes, strict=True):
            module.training = mode
        return copied


def _graph_digest(extractor: nn.Module) -> str:
    """A short digest of the extractor's train- and eval-mode code (its mode is restored)."""
    training = extractor.training
    codes = []
    for mode in (True, False):
        extractor.train(mode)
        codes.append(extractor.code)
    extractor.train(training)
    return stable_hash(codes)


def _node_list(names: Sequence[str]) -> str:
    """``names`` for an error message, the middle cut when there are very many."""
    if len(names) <= _NODE_LIST_LIMIT:
        return ", ".join(names)
    head, tail = names[:8], names[-(_NODE_LIST_LIMIT - 8) :]
    return f"{', '.join(head)}, ... ({len(names) - len(head) - len(tail)} more), {', '.join(tail)}"


def _graph_nodes(net: nn.Module, where: str) -> tuple[list[str], list[str]]:
    """The train- and eval-mode node names of ``net`` (``get_graph_node_names``); a network that
    torch.fx cannot trace is one ConfigError line."""
    from torchvision.models.feature_extraction import get_graph_node_names

    try:
        return get_graph_node_names(net, suppress_diff_warning=True)
    except Exception as exc:  # tracing runs the model's code: any failure is the model's
        raise ConfigError(
            f"{where} cannot be traced by torch.fx ({_short(f'{type(exc).__name__}: {exc}')}); "
            "expected a network whose forward torch.fx can trace (no Python control flow on "
            "tensor values)"
        ) from exc


def _classifier_input(net: nn.Module) -> str | None:
    """The graph node that feeds the last ``nn.Linear`` the eval-mode forward calls (a classifier
    network's penultimate layer), named as ``get_graph_node_names`` names it; None without one."""
    from torchvision.models import feature_extraction as fe

    # torchvision's own tracer settings, those get_graph_node_names and create_feature_extractor
    # use, so that the node names agree with theirs.
    tracer = fe.NodePathTracer(**fe._set_default_tracer_kwargs(None))
    training = net.training
    try:
        graph = tracer.trace(net.eval())
    finally:
        net.train(training)
    modules = dict(net.named_modules())
    found = None
    for node in graph.nodes:
        if node.op == "call_module" and isinstance(modules.get(node.target), nn.Linear):
            source = node.args[0] if node.args else None
            found = tracer.node_to_qualname.get(source) if source is not None else None
    return found


def _feature_node(net: nn.Module, settings: ModelSettings, where: str) -> str:
    """``model.feature_node``, checked against the network's graph; null: the input of the last
    ``nn.Linear`` the forward calls. A name that is no node is one line listing the nodes."""
    train_nodes, eval_nodes = _graph_nodes(net, where)
    node = settings.feature_node
    if node is None:
        node = _classifier_input(net)
    if node is None:
        raise ConfigError(
            f"model.feature_node=None is not allowed with {where}: its forward calls no "
            "nn.Linear whose input would be f(x); expected the node of the feature layer, "
            f"one of {_node_list(eval_nodes)}"
        )
    if node not in eval_nodes:
        raise ConfigError(
            f"model.feature_node={node!r} is not a graph node of {where}; expected one of "
            f"{_node_list(eval_nodes)}"
        )
    if node not in train_nodes:
        raise ConfigError(
            f"model.feature_node={node!r} is a node of {where} in eval mode only; expected a node "
            f"of both its train and eval graphs, one of "
            f"{_node_list([n for n in eval_nodes if n in set(train_nodes)])}"
        )
    return node


def tapped_classifier(
    net: nn.Module,
    adapter: InputAdapter,
    spec: ModelSpec,
    settings: ModelSettings,
    where: str,
    loaded_weights: str | None = None,
) -> FeatureClassifier:
    """``net`` cut at its feature node (``model.feature_node``) with frogs' own linear head for the
    task: f(x) is that node's output, flattened; the network's layers after the node are dropped.

    ``where`` names the network in error messages. A probe image of the dataset's shape (through
    ``adapter``) gives the feature dimension; a network that cannot take it is one ConfigError line.
    """
    from torchvision.models.feature_extraction import create_feature_extractor

    node = _feature_node(net, settings, where)
    extractor = create_feature_extractor(net, return_nodes={node: _TAP}, suppress_diff_warning=True)
    backbone = NodeFeatures(extractor, node)
    try:
        dim = _feature_dim(backbone, adapter, spec)
    except (RuntimeError, ValueError, TypeError, AssertionError, IndexError, KeyError) as exc:
        size = settings.input_size or spec.image_size
        raise ConfigError(
            f"model.feature_node={node!r} of {where} could not be computed for "
            f"{adapter.channels}x{size}x{size} inputs ({_short(f'{type(exc).__name__}: {exc}')});"
            " expected a model.input_size (and, for model=module, model.in_channels) the network "
            "accepts, and a node whose output is a tensor"
        ) from exc
    return FeatureClassifier(adapter, backbone, dim, spec.num_classes, loaded_weights)


@MODELS.register("torchvision", TorchvisionModelSettings)
def torchvision_model(
    spec: ModelSpec, settings: ModelSettings, fetch_weights: bool = True
) -> FeatureClassifier:
    """Any torchvision classification architecture by name (``model.arch``, built by
    ``torchvision.models.get_model``), f(x) tapped at ``model.feature_node`` (default: the input of
    its final classifier layer). ``model.weights`` loads as for ``model=resnet18``; RGB inputs,
    normalised by the weights' statistics (the dataset's when random), resized to
    ``model.input_size`` when set."""
    net, weights = _load_torchvision(settings.arch, settings, fetch_weights)
    adapter = InputAdapter(*_normalisation(spec, weights), 3, settings.input_size)
    loaded = weights.name if weights is not None else None
    return tapped_classifier(net, adapter, spec, settings, f"model.arch={settings.arch}", loaded)


def _instantiate_builder(builder: dict[str, Any] | None) -> nn.Module:
    """The network ``model.builder`` builds, the Hydra way (``hydra.utils.instantiate``: its
    ``_target_`` called with the other keys); a failure or a non-module is one ConfigError line."""
    target = (builder or {}).get("_target_")
    if not target:
        raise ConfigError(
            f"model.builder._target_={target!r} is not allowed with model=module; expected the "
            "dotted path of a callable that returns an nn.Module, e.g. "
            "model.builder._target_=my_pkg.models.resnet18"
        )
    from hydra.utils import instantiate

    try:
        net = instantiate(dict(builder))
    except Exception as exc:  # the builder is user code: any failure is its own
        raise ConfigError(
            f"model.builder._target_={target!r} could not build the network "
            f"({_short(f'{type(exc).__name__}: {exc}')}); expected a callable that accepts the "
            "other model.builder keys and returns an nn.Module"
        ) from exc
    if not isinstance(net, nn.Module):
        raise ConfigError(
            f"model.builder._target_={target!r} returned a {type(net).__name__}, not an "
            "nn.Module; expected a callable that returns the network"
        )
    return net


@MODELS.register("module", ModuleModelSettings)
def module_model(
    spec: ModelSpec, settings: ModelSettings, fetch_weights: bool = True
) -> FeatureClassifier:
    """Any ``nn.Module`` that ``model.builder`` builds (``_target_`` plus its keyword arguments),
    f(x) tapped at ``model.feature_node`` (default: the input of the last ``nn.Linear`` its forward
    calls). Inputs: ``model.in_channels`` channels (default: the dataset's; grey images are
    repeated to them), normalised by the dataset's statistics, resized to ``model.input_size``.
    The builder owns any weights it loads, so ``fetch_weights`` changes nothing."""
    net = _instantiate_builder(settings.builder)
    channels = settings.in_channels or spec.in_channels
    if spec.in_channels not in (1, channels):
        raise ConfigError(
            f"model.in_channels={channels} is not allowed with a dataset of {spec.in_channels} "
            f"channels; expected {spec.in_channels} (only grey images are repeated to more "
            "channels)"
        )
    adapter = InputAdapter(spec.mean, spec.std, channels, settings.input_size)
    where = f"model.builder._target_={settings.builder['_target_']}"
    return tapped_classifier(net, adapter, spec, settings, where)


def prepare_for_device(model: nn.Module, device: torch.device, amp: bool = False) -> nn.Module:
    """``model`` on ``device``; with ``amp`` (resolved: bf16 on) also channels-last, the layout
    in which bf16 convolutions run fastest on CUDA and on oneDNN CPUs."""
    model = model.to(device)
    if amp:
        model = model.to(memory_format=torch.channels_last)
    return model


def build_model(
    spec: ModelSpec, settings: ModelSettings, *, fetch_weights: bool = True
) -> FeatureClassifier:
    """Build the configured model through its registered builder.

    ``fetch_weights=False``: the network ``settings.weights`` needs, without loading them (the
    caller loads a saved state dict into it); ``loaded_weights`` then names them as its origin.
    """
    return MODELS.get(settings.name)(spec, settings, fetch_weights=fetch_weights)
