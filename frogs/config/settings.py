"""Typed settings of one frogs job: one dataclass per config group, validated before heavy work.

These dataclasses are also the Hydra schemas (see ``frogs.config.compose``), so a misspelt key fails
at composition and a bad value fails here with one line naming it and what is allowed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from typing import Any, ClassVar, TypeVar

from frogs.errors import ConfigError
from frogs.models.precision import amp_setting


class TargetSelection(StrEnum):
    """random | outlier (lowest clean confidence among correctly classified) | setups (trial i =
    setup i of the setups file; docs/interchange.md)."""

    random = "random"
    outlier = "outlier"
    setups = "setups"


class PoisonFormat(StrEnum):
    """frogs | benchmark (also poisoning-benchmark's pickles)."""

    frogs = "frogs"
    benchmark = "benchmark"


class BaseSelection(StrEnum):
    """random (a seeded draw) | closest (nearest the target in the clean feature space)."""

    random = "random"
    closest = "closest"


class Constraint(StrEnum):
    """The budget's norm."""

    linf = "linf"
    l2 = "l2"


class Device(StrEnum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Schedule(StrEnum):
    constant = "constant"
    exponential = "exponential"


class MissingWeights(StrEnum):
    error = "error"
    pretrain = "pretrain"


@dataclass(frozen=True)
class DatasetSettings:
    """Which images, which class pair, how much of it (``dataset=`` group's base schema; a dataset
    with knobs of its own subclasses it beside its builder, as ``dataset=synthetic`` does)."""

    name: str = "fashion_mnist"
    root: str = "~/.cache/frogs/data"
    # The default pair: the one the default clean model confuses most (the criterion of
    # frogs/models/confusion.py, chosen before any attack ran: python -m frogs.models.confusion);
    # a pair it never confuses leaves a clean-label poison nothing to pull the target towards.
    target_class: Any = "Shirt"
    base_class: Any = "Coat"
    # null: the victim's default (transfer: the pair; end_to_end: every class); "pair"; "all";
    # or a list of class names / indices (e.g. dog, fish, cat for the paper's appendix D).
    task_classes: Any = None
    # 2 x 50 = 100 training samples < the ~110 live features of f(x): the one-shot regime
    train_per_class: int | None = 50
    test_per_class: int | None = None
    subsample_seed: int = 0
    download: bool = True
    image_size: int | None = None


@dataclass(frozen=True)
class PretrainSettings:
    """How frogs trains the clean model when no ready weights are configured.

    ``schedule``: ``constant`` keeps ``lr``; ``exponential`` keeps ``lr`` for ``hold_epochs``, then
    decays it every epoch to ``final_lr`` in the last epoch (the paper's App. F: a decaying rate
    whose final value, 1.85e-5, is the end-to-end victim's retraining rate).
    """

    epochs: int = 2
    lr: float = 1e-3
    final_lr: float | None = None
    schedule: Schedule = Schedule.constant
    hold_epochs: int = 0
    batch_size: int = 128
    train_per_class: int | None = 2000
    weight_decay: float = 0.0
    seed: int = 0
    # Which classes the clean model learns: ``all``; ``without_task`` (every class but the victim
    # task's: features learned elsewhere, the transfer analog of the paper's ImageNet extractor);
    # or a list of class names / indices.
    classes: Any = "all"


@dataclass(frozen=True)
class ModelSettings:
    """The network whose penultimate layer is the feature space f(x) (``model=`` group's base
    schema; ``model=torchvision`` and ``model=module`` subclass it with their own knobs in
    ``frogs.models.architectures``)."""

    name: str = "alexnet_cifar"
    weights: str | None = None
    # When ``weights`` cannot be loaded (offline, no cached file): ``error`` stops the job with a
    # clear message; ``pretrain`` trains the network with ``pretrain.*`` instead.
    on_missing_weights: MissingWeights = MissingWeights.error
    # A clean-model file written by ``frogs pretrain`` (verified by its SHA-256 sidecar); when set,
    # no pretraining happens. ``checkpoint_sha256`` optionally pins the expected checksum.
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    input_size: int | None = None
    small_input: bool = False
    pretrain: PretrainSettings = field(default_factory=PretrainSettings)

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Raise ConfigError naming the first bad knob (run on construction, so a composed config
        fails before data loading or any build); options with knobs of their own extend it."""


@dataclass(frozen=True)
class AttackSettings:
    """What every attack has (``attack=`` group's base schema): how many poisons, which bases,
    and the perceptibility budget each poison must stay in.

    Units: ``eps`` is in frogs' [0, 1] pixels and also takes the form ``"N/255"``. Each attack's
    own knobs live in its subclass beside its code (``frogs/attacks/``), with its validation.
    """

    name: str = ""
    num_poisons: int = 1
    # crafting iterations: every attack of the field is iterative, and presets (debug=smoke) and
    # studies cut them across attacks; an attack that does not iterate ignores it
    iters: int = 1000
    # the budget's norm: linf (clip to the eps-ball; replaces the proximal step, App. C) | l2
    # (proximal step, then the eps-ball if eps is set)
    constraint: Constraint = Constraint.linf
    # budget radius in [0, 1] pixel units (L-inf: per pixel; L2: over the image); "N/255" works;
    # null with l2: no hard radius
    eps: Any = field(default="8/255", metadata={"pixels": True})
    quantize: bool = True  # poisons (and watermarked starts) are 8-bit, rounded inside the budget
    multi_base: bool = True  # distinct bases; false: one base reused num_poisons times (Fig. 11b)
    # random: the bases are a seeded draw from the base class's test images; closest: the ones
    # nearest the target in the clean feature space (the official end-to-end code's choice for
    # its single-base arm, find_closest_3.py)
    base_selection: BaseSelection = BaseSelection.random
    # Poisons crafted per target when a sweep over num_poisons reuses them, as the official
    # end-to-end code does: the set of ``pool`` poisons is crafted once (and cached) and a trial
    # uses its first num_poisons; null: craft num_poisons. Bases are drawn so that the first N
    # are the same for every count, so a trial's poisons equal crafting N on their own.
    pool: int | None = None

    # The fewest poisons the method is defined for (a polytope needs at least two vertices).
    min_poisons: ClassVar[int] = 1
    # Whether each poison is crafted on its own (batching changes speed, not results), which
    # reusing the first N poisons of a larger set (``pool``) relies on.
    independent_poisons: ClassVar[bool] = True
    # Whether its poisons are a function of the settings, the clean model, target and bases, so
    # that frogs may cache them (poisons read from files are not: the files may change).
    cacheable: ClassVar[bool] = True

    def crafting_extractors(self) -> list[str]:
        """The feature extractors the attack crafts against (``CLEAN``: the victim's clean
        model); ensemble attacks list theirs."""
        return [CLEAN]

    def resolve(self, training_features: Callable[[], Any]) -> AttackSettings:
        """The settings with data-dependent knobs turned into this job's numbers;
        ``training_features`` gives the clean model's features of the victim's training images,
        computed only if called."""
        return self

    def check(self, job: JobSettings) -> None:
        """Raise ConfigError naming the first bad value; subclasses extend it with their knobs."""
        require_positive(self.num_poisons, "attack.num_poisons")
        require_positive(self.iters, "attack.iters")
        if self.num_poisons < self.min_poisons:
            raise ConfigError(
                f"attack.num_poisons={self.num_poisons} is not allowed with attack={self.name}; "
                f"expected >= {self.min_poisons} (with one poison the polytope is a point: use "
                "attack=feature_collision)"
            )
        require_choice(self.base_selection, "attack.base_selection", BASE_SELECTIONS)
        if self.pool is not None:
            if not self.independent_poisons:
                raise ConfigError(
                    f"attack.pool={self.pool} is not allowed with attack={self.name}: its "
                    "poisons are crafted jointly, so the first N of a larger set are not what "
                    "crafting N gives; expected attack.pool=null"
                )
            if self.pool < self.num_poisons:
                raise ConfigError(
                    f"attack.pool={self.pool} is not allowed with attack.num_poisons="
                    f"{self.num_poisons}; expected pool >= num_poisons (or null)"
                )
        require_choice(self.constraint, "attack.constraint", CONSTRAINTS)
        eps = resolved_eps(self)
        if self.constraint == "linf" and eps is None:
            raise ConfigError(
                "attack.eps=None is not allowed with attack.constraint=linf; expected a radius "
                "in [0, 1] pixel units such as 8/255"
            )
        if eps is not None:
            require_positive(eps, "attack.eps")
            if self.quantize and self.constraint == "linf" and eps < 1 / 255:
                raise ConfigError(
                    f"attack.eps={self.eps!r} ({eps * 255:.3g}/255) is not allowed with "
                    "attack.quantize=true and constraint=linf; an 8-bit poison moves in steps of "
                    "1/255, so expected eps >= 1/255"
                )


@dataclass(frozen=True)
class VictimSettings:
    """How the victim retrains on clean data plus poisons (``victim=`` group's base schema)."""

    name: str = ""
    epochs: int = 100
    lr: float = 0.01
    batch_size: int = 8
    weight_decay: float = 0.0

    #: ``dataset.task_classes=auto`` for this victim: ``pair`` (the attacked pair only) or
    #: ``all`` (every class of the dataset)
    default_task_classes: ClassVar[str] = "pair"

    def check(self, job: JobSettings) -> None:
        """Raise ConfigError naming the first bad value."""
        require_positive(self.epochs, "victim.epochs")
        require_positive(self.lr, "victim.lr")
        require_positive(self.batch_size, "victim.batch_size")
        require_positive(self.weight_decay, "victim.weight_decay", allow_zero=True)


@dataclass(frozen=True)
class DefenseSettings:
    """A training-set filter between crafting and retraining (``defense=`` group's base schema).

    ``scenarios`` names the victims the defense applies to (None: every victim);
    ``needs_features``: whether it reads the clean model's features (which then are computed for
    every row of the poisoned set).
    """

    name: str = "none"

    scenarios: ClassVar[tuple[str, ...] | None] = None
    needs_features: ClassVar[bool] = True

    def check(self, job: JobSettings) -> None:
        """Raise ConfigError naming the first bad value; subclasses extend it with their knobs."""
        if self.scenarios is not None and job.victim.name not in self.scenarios:
            raise ConfigError(
                f"defense={self.name} is not allowed with victim={job.victim.name}; expected "
                f"victim one of {', '.join(self.scenarios)}"
            )

    def resolve(self, job: JobSettings) -> DefenseSettings:
        """The settings with ``auto`` knobs turned into this job's numbers (recorded resolved)."""
        return self


@dataclass(frozen=True)
class JobSettings:
    """Everything one job needs: the groups plus the top-level knobs."""

    dataset: DatasetSettings = field(default_factory=DatasetSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    #: the option groups, typed by their base schema: the concrete option (its subclass) comes
    #: from the config's defaults list (conf/config.yaml) or is passed in by the caller
    attack: AttackSettings = field(default_factory=AttackSettings)
    victim: VictimSettings = field(default_factory=VictimSettings)
    defense: DefenseSettings = field(default_factory=DefenseSettings)
    trials: int = 5  # targets attacked by this job
    # first trial index: jobs that split one study's targets use 0, 10, 20, ...
    trial_offset: int = 0
    # random | outlier (lowest clean confidence among correctly classified) | setups (trial i =
    # setup i of the setups file; docs/interchange.md)
    target_selection: TargetSelection = TargetSelection.random
    setups: str | None = None  # a poisoning-benchmark setups file, with target_selection=setups
    seed: int = 0
    device: Device = Device.auto
    # bf16 autocast + channels_last: auto = where the device does bf16 natively (CUDA with bf16,
    # CPUs with AVX512-BF16/AMX; frogs.models.precision); true | false to force
    amp: Any = "auto"
    threads: int | None = None  # torch CPU threads; null: $SLURM_CPUS_PER_TASK or torch's default
    # clean models and features, shared by all jobs (the command line: $FROGS_CACHE if set)
    cache_dir: str = "~/.cache/frogs"
    # target/bases/poisons as tensors + PNG grid under poisons/ (the command line saves them)
    save_poisons: bool = False
    # frogs | benchmark: also poisoning-benchmark's pickles, poisons/benchmark/<i>/
    poison_format: PoisonFormat = PoisonFormat.frogs
    save_features: bool = False  # penultimate features, clean vs poisoned model, under features/
    feature_sample: int = 200  # training images per class in the saved feature snapshots
    progress: bool = True


#: The crafting extractor that is the victim's own clean model (``attack.ensemble`` entries).
CLEAN = "clean"
# The allowed values of the enum-typed knobs, for the checks of settings built in code (Hydra
# refuses any other value at composition).
TARGET_SELECTIONS = tuple(TargetSelection)
POISON_FORMATS = tuple(PoisonFormat)
BASE_SELECTIONS = tuple(BaseSelection)
CONSTRAINTS = tuple(Constraint)
DEVICES = tuple(Device)
SCHEDULES = tuple(Schedule)
MISSING_WEIGHTS = tuple(MissingWeights)
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


def require_positive(value: float | int | None, name: str, *, allow_zero: bool = False) -> None:
    bad = value is None or not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero)
    if bad:
        allowed = "a number >= 0" if allow_zero else "a number > 0"
        raise ConfigError(f"{name}={value!r} is not allowed; expected {allowed}")


def require_choice(value: str, name: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not allowed; expected one of {', '.join(allowed)}")


def validate(settings: JobSettings) -> JobSettings:
    """Check every value that needs no data; raise ConfigError naming the first bad one.

    The job-level knobs are checked here; each group option checks its own (``check``), with the
    whole job in view for the options that depend on another group.
    """
    pretrain = settings.model.pretrain
    require_positive(settings.trials, "trials")
    require_positive(settings.trial_offset, "trial_offset", allow_zero=True)
    require_choice(settings.target_selection, "target_selection", TARGET_SELECTIONS)
    check_fixed_trials(settings)
    require_choice(settings.device, "device", DEVICES)
    amp_setting(settings.amp)
    settings.attack.check(settings)
    settings.victim.check(settings)
    settings.defense.check(settings)
    require_positive(pretrain.epochs, "model.pretrain.epochs", allow_zero=True)
    require_positive(pretrain.lr, "model.pretrain.lr")
    require_choice(pretrain.schedule, "model.pretrain.schedule", SCHEDULES)
    if pretrain.schedule == "exponential":
        require_positive(pretrain.final_lr, "model.pretrain.final_lr")
    require_positive(pretrain.hold_epochs, "model.pretrain.hold_epochs", allow_zero=True)
    if pretrain.epochs and pretrain.hold_epochs >= pretrain.epochs:
        raise ConfigError(
            f"model.pretrain.hold_epochs={pretrain.hold_epochs} is not allowed with "
            f"model.pretrain.epochs={pretrain.epochs}; expected fewer hold epochs than epochs"
        )
    require_choice(settings.model.on_missing_weights, "model.on_missing_weights", MISSING_WEIGHTS)
    require_positive(pretrain.batch_size, "model.pretrain.batch_size")
    for name in ("train_per_class", "test_per_class"):
        value = getattr(settings.dataset, name)
        if value is not None:
            require_positive(value, f"dataset.{name}")
    if settings.threads is not None:
        require_positive(settings.threads, "threads")
    require_positive(settings.feature_sample, "feature_sample")
    return settings


def bases_from_training_split(settings: JobSettings) -> bool:
    """Whether a file fixes the trials' bases, which are then training images their poisons
    replace (the poisoning-benchmark's rule): a setups file, or another tool's poisons."""
    return settings.target_selection == "setups" or settings.attack.name == "external"


def check_fixed_trials(settings: JobSettings) -> None:
    """The setups file and poison format knobs agree with each other (files are read later)."""
    if settings.target_selection == "setups" and not settings.setups:
        raise ConfigError(
            "target_selection=setups needs setups=PATH, a poisoning-benchmark setups file"
        )
    if settings.setups and settings.target_selection != "setups":
        raise ConfigError(
            f"setups={settings.setups!r} is not allowed with target_selection="
            f"{settings.target_selection}; expected target_selection=setups"
        )
    require_choice(settings.poison_format, "poison_format", POISON_FORMATS)
    attack = settings.attack
    if bases_from_training_split(settings):
        source = "setups" if settings.target_selection == "setups" else "attack=external"
        for knob, value, allowed in (
            ("pool", attack.pool, None),
            ("multi_base", attack.multi_base, True),
            ("base_selection", attack.base_selection, "random"),
        ):
            if value != allowed:
                raise ConfigError(
                    f"attack.{knob}={value!r} is not allowed with {source}: the file fixes each "
                    f"trial's bases; expected attack.{knob}={allowed!r}"
                )
    if settings.poison_format == "benchmark" and not bases_from_training_split(settings):
        raise ConfigError(
            "poison_format=benchmark is not allowed with bases drawn from the test split "
            f"(target_selection={settings.target_selection}): the benchmark's base indices "
            "name training images that the poisons replace; expected target_selection=setups "
            "(setups=PATH) or attack=external, or poison_format=frogs"
        )


def setting_columns(group: str, option: Any) -> dict[str, Any]:
    """The record columns of a group option: ``GROUP.FIELD`` for every knob of its settings
    dataclass but ``name``, so a new option's knobs are recorded without a hand-kept list.
    Pixel-valued knobs (``metadata={"pixels": True}``) are written in [0, 1] pixel units."""
    columns: dict[str, Any] = {}
    for knob in fields(option):
        if knob.name == "name":
            continue
        value = getattr(option, knob.name)
        if knob.metadata.get("pixels") and value is not None:
            value = pixel_value(value, f"{group}.{knob.name}")
        columns[f"{group}.{knob.name}"] = value
    return columns


Settings = TypeVar("Settings")


def updated(settings: Settings, changes: Mapping[str, Any]) -> Settings:
    """A copy of ``settings`` with the dotted keys of ``changes`` set, e.g.
    ``updated(job, {"attack.opacity": 0.3, "trials": 2})``: settings are frozen, so a change is a
    new value (``dataclasses.replace`` at every level), validated as each dataclass validates on
    construction."""
    direct: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for key, value in changes.items():
        head, _, rest = key.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            direct[head] = value
    for head, inner in nested.items():
        direct[head] = updated(direct.get(head, getattr(settings, head)), inner)
    return replace(settings, **direct)
