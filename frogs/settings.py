"""Typed settings of one frogs job: one dataclass per config group, validated before heavy work.

These dataclasses are also the Hydra schemas (see ``frogs.config``), so a misspelt key fails at
composition and a bad value fails here with one line naming it and what is allowed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from frogs.errors import ConfigError
from frogs.precision import amp_setting


@dataclass
class DatasetSettings:
    """Which images, which class pair, how much of it (``dataset=`` group)."""

    name: str = "fashion_mnist"
    root: str = "~/.cache/frogs/data"
    target_class: Any = "Ankle boot"
    base_class: Any = "Bag"
    # null: the victim's default (transfer: the pair; end_to_end: every class); "pair"; "all";
    # or a list of class names / indices (e.g. dog, fish, cat for the paper's appendix D).
    task_classes: Any = None
    train_per_class: int | None = 50
    test_per_class: int | None = None
    subsample_seed: int = 0
    download: bool = True
    image_size: int | None = None
    # synthetic only
    num_classes: int = 4
    channels: int = 3
    synthetic_train_per_class: int = 64
    synthetic_test_per_class: int = 32


@dataclass
class PretrainSettings:
    """How frogs trains the clean model when no ready weights are configured.

    ``schedule``: ``constant`` keeps ``lr``; ``exponential`` keeps ``lr`` for ``hold_epochs``, then
    decays it every epoch to ``final_lr`` in the last epoch (the paper's App. F: a decaying rate
    whose final value, 1.85e-5, is the end-to-end victim's retraining rate).
    """

    epochs: int = 2
    lr: float = 1e-3
    final_lr: float | None = None
    schedule: str = "constant"
    hold_epochs: int = 0
    batch_size: int = 128
    train_per_class: int | None = 2000
    weight_decay: float = 0.0
    seed: int = 0
    # Which classes the clean model learns: ``all``; ``without_task`` (every class but the victim
    # task's: features learned elsewhere, the transfer analog of the paper's ImageNet extractor);
    # or a list of class names / indices.
    classes: Any = "all"


@dataclass
class ModelSettings:
    """The network whose penultimate layer is the feature space f(x) (``model=`` group)."""

    name: str = "alexnet_cifar"
    weights: str | None = None
    # When ``weights`` cannot be loaded (offline, no cached file): ``error`` stops the job with a
    # clear message; ``pretrain`` trains the network with ``pretrain.*`` instead.
    on_missing_weights: str = "error"
    # A clean-model file written by ``frogs pretrain`` (verified by its SHA-256 sidecar); when set,
    # no pretraining happens. ``checkpoint_sha256`` optionally pins the expected checksum.
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    input_size: int | None = None
    small_input: bool = False
    pretrain: PretrainSettings = field(default_factory=PretrainSettings)


@dataclass
class AttackSettings:
    """Feature collision (Eq. 1, Algorithm 1) and its variants (``attack=`` group).

    Pixel units: with ``recipe=algorithm1`` every pixel-valued knob (``eps``, ``lr``'s steps, the
    proximal ``beta``) is in frogs' [0, 1] pixels; ``recipe=authors`` runs the official code's
    loop in its [0, 255] pixels (``lr``, ``beta0`` as in that code). ``eps`` is always in [0, 1]
    pixels and also takes the form ``"N/255"``.
    """

    name: str = "feature_collision"
    recipe: str = "algorithm1"
    num_poisons: int = 1
    opacity: float = 0.0
    iters: int = 1000
    step: str = "sign"
    lr: float = 0.5 / 255
    beta0: float = 0.25
    stop_distance: Any = None
    constraint: str = "linf"
    eps: Any = "8/255"
    quantize: bool = True
    multi_base: bool = True
    lr_decay: bool = False
    optimize: bool = True


@dataclass
class VictimSettings:
    """How the victim retrains on clean data plus poisons (``victim=`` group)."""

    name: str = "transfer"
    epochs: int = 100
    lr: float = 0.01
    batch_size: int = 8
    weight_decay: float = 0.0


@dataclass
class JobSettings:
    """Everything one job needs: the groups plus the top-level knobs."""

    dataset: DatasetSettings = field(default_factory=DatasetSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    attack: AttackSettings = field(default_factory=AttackSettings)
    victim: VictimSettings = field(default_factory=VictimSettings)
    trials: int = 5
    trial_offset: int = 0
    target_selection: str = "random"
    seed: int = 0
    device: str = "auto"
    # auto: bf16 autocast + channels-last where the device does bf16 natively (frogs.precision)
    amp: Any = "auto"
    threads: int | None = None
    cache_dir: str = "~/.cache/frogs"
    save_poisons: bool = False
    save_features: bool = False
    feature_sample: int = 200
    progress: bool = True


TARGET_SELECTIONS = ("random", "outlier")
CONSTRAINTS = ("linf", "l2")
RECIPES = ("algorithm1", "authors")
STEPS = ("gradient", "sign")
DEVICES = ("auto", "cpu", "cuda")
SCHEDULES = ("constant", "exponential")
MISSING_WEIGHTS = ("error", "pretrain")
_PER_255 = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*/\s*255\s*$")


def pixel_value(value: Any, name: str) -> float:
    """A pixel-valued knob in [0, 1] units from a number or the string ``"N/255"``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        match = _PER_255.match(value)
        if match:
            return float(match.group(1)) / 255.0
        try:
            return float(value)
        except ValueError:
            pass
    raise ConfigError(
        f"{name}={value!r} is not allowed; expected a number in [0, 1] pixel units or 'N/255'"
    )


def resolved_eps(attack: AttackSettings) -> float | None:
    """The budget radius in [0, 1] pixel units (None: no hard L2 radius)."""
    if attack.eps is None:
        return None
    return pixel_value(attack.eps, "attack.eps")


def resolved_stop_distance(attack: AttackSettings) -> float | str | None:
    """``stop_distance`` as a number, ``"auto"``, or None."""
    value = attack.stop_distance
    if value is None or value == "auto":
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"attack.stop_distance={value!r} is not allowed; expected null, a number >= 0 "
            "(feature-space distance) or auto (the minimum pairwise distance between training "
            "features)"
        ) from None


def _require_positive(value: float | int | None, name: str, *, allow_zero: bool = False) -> None:
    bad = value is None or not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero)
    if bad:
        allowed = "a number >= 0" if allow_zero else "a number > 0"
        raise ConfigError(f"{name}={value!r} is not allowed; expected {allowed}")


def _require_choice(value: str, name: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not allowed; expected one of {', '.join(allowed)}")


def validate(settings: JobSettings) -> JobSettings:
    """Check every value that needs no data; raise ConfigError naming the first bad one."""
    attack, victim, pretrain = settings.attack, settings.victim, settings.model.pretrain
    _require_positive(settings.trials, "trials")
    _require_positive(settings.trial_offset, "trial_offset", allow_zero=True)
    _require_choice(settings.target_selection, "target_selection", TARGET_SELECTIONS)
    _require_choice(settings.device, "device", DEVICES)
    amp_setting(settings.amp)
    _require_choice(attack.recipe, "attack.recipe", RECIPES)
    _require_choice(attack.step, "attack.step", STEPS)
    _require_positive(attack.num_poisons, "attack.num_poisons")
    _require_positive(attack.iters, "attack.iters")
    _require_positive(attack.lr, "attack.lr")
    _require_positive(attack.beta0, "attack.beta0", allow_zero=True)
    if not 0.0 <= attack.opacity <= 1.0:
        raise ConfigError(
            f"attack.opacity={attack.opacity!r} is not allowed; expected 0 <= opacity <= 1"
        )
    _require_choice(attack.constraint, "attack.constraint", CONSTRAINTS)
    eps = resolved_eps(attack)
    if attack.constraint == "linf" and eps is None:
        raise ConfigError(
            "attack.eps=None is not allowed with attack.constraint=linf; expected a radius in "
            "[0, 1] pixel units such as 8/255"
        )
    if eps is not None:
        _require_positive(eps, "attack.eps")
        if attack.quantize and attack.constraint == "linf" and eps < 1 / 255:
            raise ConfigError(
                f"attack.eps={attack.eps!r} ({eps * 255:.3g}/255) is not allowed with "
                "attack.quantize=true and constraint=linf; an 8-bit poison moves in steps of "
                "1/255, so expected eps >= 1/255"
            )
    stop = resolved_stop_distance(attack)
    if isinstance(stop, float):
        _require_positive(stop, "attack.stop_distance", allow_zero=True)
    _require_positive(victim.epochs, "victim.epochs")
    _require_positive(victim.lr, "victim.lr")
    _require_positive(victim.batch_size, "victim.batch_size")
    _require_positive(pretrain.epochs, "model.pretrain.epochs", allow_zero=True)
    _require_positive(pretrain.lr, "model.pretrain.lr")
    _require_choice(pretrain.schedule, "model.pretrain.schedule", SCHEDULES)
    if pretrain.schedule == "exponential":
        _require_positive(pretrain.final_lr, "model.pretrain.final_lr")
    _require_positive(pretrain.hold_epochs, "model.pretrain.hold_epochs", allow_zero=True)
    if pretrain.epochs and pretrain.hold_epochs >= pretrain.epochs:
        raise ConfigError(
            f"model.pretrain.hold_epochs={pretrain.hold_epochs} is not allowed with "
            f"model.pretrain.epochs={pretrain.epochs}; expected fewer hold epochs than epochs"
        )
    _require_choice(settings.model.on_missing_weights, "model.on_missing_weights", MISSING_WEIGHTS)
    _require_positive(pretrain.batch_size, "model.pretrain.batch_size")
    for name in ("train_per_class", "test_per_class"):
        value = getattr(settings.dataset, name)
        if value is not None:
            _require_positive(value, f"dataset.{name}")
    if settings.threads is not None:
        _require_positive(settings.threads, "threads")
    _require_positive(settings.feature_sample, "feature_sample")
    return settings
