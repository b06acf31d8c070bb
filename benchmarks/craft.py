"""Crafting throughput (poison-iterations per second) on the paper's AlexNet-CIFAR features.

Three contenders craft the same poisons from the same bases for the same number of iterations:
frogs' batched ``feature_collision``; a bare batched ``torch.autograd`` loop of Algorithm 1
(forward gradient step on ‖f(x) - f(t)‖², proximal step, clamp); and the
adversarial-robustness-toolbox's ``FeatureCollisionAttack`` (one poison at a time, its own way).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from benchmarks.timing import Measured, interleaved
from frogs.attacks.feature_collision import dimension_scaled_beta, feature_collision
from frogs.config.settings import ModelSettings
from frogs.models.architectures import FeatureClassifier, ModelSpec, alexnet_cifar

log = logging.getLogger(__name__)

CIFAR_SPEC = ModelSpec(3, 32, 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
LR = 0.01


def cifar_alexnet(
    device: torch.device, seed: int = 0, torch_lrn: bool = False
) -> FeatureClassifier:
    """The paper's AlexNet-CIFAR in eval mode with frozen weights (as the victims hold it).

    ``torch_lrn``: with ``nn.LocalResponseNorm`` as written in a user's own code (the bare loops'
    and ART's network) instead of frogs' bit-identical faster layer (``frogs.models.layers``); the
    same seed gives the same weights either way.
    """
    torch.manual_seed(seed)
    model = alexnet_cifar(CIFAR_SPEC, ModelSettings()).to(device).eval()
    if torch_lrn:
        for index, layer in enumerate(model.backbone):
            if isinstance(layer, nn.LocalResponseNorm):
                model.backbone[index] = nn.LocalResponseNorm(
                    layer.size, layer.alpha, layer.beta, layer.k
                )
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def bare_loop(model: FeatureClassifier, target, bases, iters: int, lr: float, beta: float):
    """Algorithm 1 written directly in PyTorch, batched: the practical speed limit."""
    with torch.no_grad():
        target_features = model.features(target.unsqueeze(0))
    x = bases.clone()
    for _ in range(iters):
        x.requires_grad_(True)
        loss = (model.features(x) - target_features).pow(2).sum()
        (grad,) = torch.autograd.grad(loss, x)
        with torch.no_grad():
            x = (x - lr * grad + lr * beta * bases) / (1 + lr * beta)  # forward + backward step
            x.clamp_(0.0, 1.0)
    return x.detach()


def art_attack(model: FeatureClassifier, target, bases, iters: int, lr: float, beta0: float):
    """ART's FeatureCollisionAttack on the same model and layer; returns the iterations it ran.

    Its early stop is disabled (tiny ``stopping_tol``, no ``obj_threshold``); its learning-rate
    decay changes step sizes only, not the iteration count. Iterations are counted at each of its
    forward steps, so the throughput is honest whatever it decides.
    """
    from art.attacks.poisoning import FeatureCollisionAttack
    from art.estimators.classification import PyTorchClassifier

    classifier = PyTorchClassifier(
        model=model,
        loss=nn.CrossEntropyLoss(),
        input_shape=tuple(bases.shape[1:]),
        nb_classes=CIFAR_SPEC.num_classes,
        clip_values=(0.0, 1.0),
        device_type="gpu" if bases.is_cuda else "cpu",
    )

    class Counting(FeatureCollisionAttack):
        steps = 0

        def forward_step(self, poison):
            Counting.steps += 1
            return super().forward_step(poison)

    attack = Counting(
        classifier,
        target.unsqueeze(0).cpu().numpy(),
        feature_layer="backbone",  # FeatureClassifier.backbone's output is f(x), the 192-d layer
        learning_rate=lr,
        stopping_tol=1e-300,
        obj_threshold=None,
        max_iter=iters,
        similarity_coeff=beta0,
        verbose=False,
    )
    attack.poison(bases.cpu().numpy())
    return Counting.steps


@dataclass(frozen=True)
class CraftFigures:
    """Poison-iterations per second of each contender, per number of poisons."""

    by_poisons: dict[int, Measured]


def run_craft(
    poison_counts: tuple[int, ...],
    iters: int,
    art_iters: int,
    repeats: int,
    device: torch.device,
    art_poisons: tuple[int, ...] = (),
) -> CraftFigures:
    """Measure frogs vs bare (vs ART) crafting for each number of poisons, interleaved."""
    model = cifar_alexnet(device)
    user_model = cifar_alexnet(device, torch_lrn=True)  # the bare loop's and ART's
    gen = torch.Generator().manual_seed(0)
    beta0 = 0.25
    beta = dimension_scaled_beta(beta0, model.feature_dim, 3 * 32 * 32)
    figures = {}
    for count in poison_counts:
        target = torch.rand(3, 32, 32, generator=gen).to(device)
        bases = torch.rand(count, 3, 32, 32, generator=gen).to(device)

        def frogs_run(target=target, bases=bases, count=count) -> float:
            result = feature_collision(model.features, target, bases, iters=iters, lr=LR, beta=beta)
            return count * result.iters_run

        def bare_run(target=target, bases=bases, count=count) -> float:
            bare_loop(user_model, target, bases, iters, LR, beta)
            return count * iters

        workloads = {"frogs": frogs_run, "bare": bare_run}
        if count in art_poisons:

            def art_run(target=target, bases=bases) -> float:
                return art_attack(user_model, target, bases, art_iters, LR, beta0)

            workloads["art"] = art_run
        figures[count] = interleaved(workloads, repeats, desc=f"craft {count} poisons")
        log.info(
            "craft %d poisons: %s poison-iterations/s",
            count,
            {name: round(figures[count].median(name), 1) for name in workloads},
        )
    return CraftFigures(figures)
