"""``amp=``: where bf16 autocast runs, and a numerics check that it changes outcomes only by noise.

bf16 autocast works on every CPU (emulated where the CPU lacks AVX512-BF16/AMX, natively where it
has them), so the numerics check runs here whatever the machine; only the speed differs.
"""

from __future__ import annotations

import pytest
import torch

from frogs.attacks.budget import Budget
from frogs.attacks.feature_collision import feature_collision
from frogs.config.settings import ModelSettings
from frogs.data.datasets import SyntheticDatasetSettings, load_dataset
from frogs.errors import ConfigError
from frogs.models.architectures import ModelSpec, build_model, prepare_for_device
from frogs.models.precision import amp_setting, cpu_has_native_bf16, resolve_amp
from frogs.models.train import fit, predict_in_batches

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("auto", "auto"), ("AUTO", "auto"), (True, "true"), (False, "false"), ("false", "false")],
)
def test_amp_setting_accepts_auto_and_booleans(value, expected):
    assert amp_setting(value) == expected


def test_a_bad_amp_value_is_named_with_the_allowed_ones():
    with pytest.raises(ConfigError, match=r"amp='fp16' is not allowed; expected auto"):
        amp_setting("fp16")


def test_auto_is_on_exactly_where_the_cpu_does_bf16_natively():
    assert resolve_amp("auto", CPU) is cpu_has_native_bf16()
    assert resolve_amp(True, CPU) is True
    assert resolve_amp("false", CPU) is False


def _alexnet(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    spec = ModelSpec(3, 32, 4, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    return build_model(spec, ModelSettings(name="alexnet_cifar")).eval()


def test_bf16_crafting_lands_where_fp32_crafting_lands():
    """Same target, bases and budget: the final feature distances under bf16 autocast differ
    from fp32's by much less than crafting moved them (measured: at most 0.47 % of the start
    distance, while crafting removed 70-80 % of it; bound 5 %)."""
    gen = torch.Generator().manual_seed(0)
    target = torch.rand(3, 32, 32, generator=gen)
    bases = torch.rand(4, 3, 32, 32, generator=gen)
    budget = Budget("linf", 8 / 255)
    runs = {}
    for amp in (False, True):
        model = prepare_for_device(_alexnet(), CPU, amp)
        runs[amp] = feature_collision(
            model.features, target, bases, lr=0.5 / 255, iters=30, budget=budget, step="sign",
            amp=amp,
        )  # fmt: skip
    first = runs[False].start_distance
    fp32, bf16 = runs[False].final_distance, runs[True].final_distance
    assert ((first - fp32) > 0.2 * first).all(), "crafting must move the features for the check"
    assert ((bf16 - fp32).abs() < 0.05 * first).all(), (first, fp32, bf16)
    for result in runs.values():
        assert (result.poisons - bases).abs().max() <= 8 / 255 + 1e-6


def test_bf16_training_reaches_fp32_accuracy():
    """Two epochs of AlexNet-CIFAR on 4-class synthetic images (32 per class), fp32 vs bf16
    autocast with channels-last: test accuracies agree within 5 points (measured: both 100 %)."""
    data = load_dataset(SyntheticDatasetSettings(image_size=32, synthetic_train_per_class=32))
    accuracies = {}
    for amp in (False, True):
        model = prepare_for_device(_alexnet(seed=1), CPU, amp)
        fit(
            model, data.train_x, data.train_y, epochs=2, lr=1e-3, batch_size=32,
            generator=torch.Generator().manual_seed(0), amp=amp,
        )  # fmt: skip
        logits = predict_in_batches(model, data.test_x)
        accuracies[amp] = float((logits.argmax(1) == data.test_y).float().mean())
    assert accuracies[False] > 0.5, accuracies
    assert abs(accuracies[True] - accuracies[False]) <= 0.05, accuracies
