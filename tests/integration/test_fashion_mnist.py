"""Real Fashion-MNIST runs through ``run``: the default is clean-label, the attack still works where
the budget allows it, and the angle's noise floor is low (an end-to-end job:
test_fashion_mnist_e2e.py).

Statistical tests fix their seeds; each bound states the value measured here (2-core CPU).
"""

from __future__ import annotations

import pytest
import torch

from frogs.config.compose import compose_settings
from frogs.experiment.run import run
from tests.conftest import requires_fashion_mnist

pytestmark = [pytest.mark.slow, requires_fashion_mnist]

PAPER_ANGLE_DEG = 23.0  # Fig. 2: the transfer one-shot kill's mean final boundary rotation
# The pair these tests' bounds were measured on (the default before it became the clean model's
# most confused pair, frogs.models.confusion): pinned so that the bounds keep meaning what they say.
ANKLE_BOOT_BAG = ("dataset.target_class=Ankle boot", "dataset.base_class=Bag")


def default_settings(module_cache, *overrides: str):
    return compose_settings(
        [f"cache_dir={module_cache}", "progress=false", "device=cpu", *overrides]
    )


def test_default_poisons_are_clean_label_within_the_default_budget(module_cache, tmp_path):
    """The default: L-inf <= 8/255 of the base, 8-bit images. Measured (seed 0, 5 targets, Shirt ->
    Coat): every poison at exactly 8/255, PSNR 31.0-31.7 dB, SSIM 0.903-0.972, success 1/5 (the
    machine of 2026-12-03); PSNR 31.2-31.6 dB, SSIM 0.918-0.974, success 0/5 on other targets (that
    of 2026-12-04: the clean model's pretraining differs across CPUs, README)."""
    records = run(default_settings(module_cache, "trials=5", "save_poisons=true"), tmp_path)
    assert [r["status"] for r in records] == ["ok"] * 5
    for record in records:
        assert (record["constraint"], record["eps_255"], record["attack.quantize"]) == (
            "linf",
            8,
            True,
        )
        # opacity 0 and 8-bit data: the crafting start is the base itself
        assert record["poison_linf255_base_worst"] <= 8 + 1e-4
        assert record["poison_linf255_start_worst"] <= 8 + 1e-4
        assert record["poison_psnr_base_worst"] >= 20 * torch.log10(torch.tensor(255 / 8)) - 1e-3
        assert record["poison_ssim_base_worst"] >= 0.75
        saved = torch.load(tmp_path / record["poisons_path"], weights_only=True)
        levels = saved["poisons"] * 255
        assert (levels - levels.round()).abs().max() < 1e-3, "poisons are 8-bit images"
        assert (saved["poisons"] - saved["bases"]).abs().max() <= 8 / 255 + 1e-6
        assert record["clean_acc_after"] >= record["clean_acc_before"] - 0.02
    print("default one-shot success:", sum(r["success"] for r in records), "/ 5")


def test_one_shot_kill_still_works_where_no_budget_binds(module_cache, tmp_path):
    """Algorithm 1 without a radius (the old default) collides features and poisons the head, at
    the price of visible poisons. Measured (seed 0, 10 targets): 4/10 successes, median final
    feature distance 0.03 of the start, worst PSNR 7.7-11.3 dB; the same targets with the
    bases unmodified (attack.optimize=false) give 0/10."""
    settings = default_settings(
        module_cache,
        *ANKLE_BOOT_BAG,
        "trials=10",
        "save_poisons=false",
        "attack.constraint=l2",
        "attack.eps=null",
        "attack.step=gradient",
        "attack.lr=0.01",
    )
    records = run(settings, tmp_path)
    ok = [r for r in records if r["status"] == "ok"]
    assert len(ok) == 10
    rate = sum(r["success"] for r in ok) / len(ok)
    print(f"unbounded one-shot success rate: {rate:.2f}")
    assert rate >= 0.2
    shrink = sorted(r["feat_dist_after"] / r["feat_dist_before"] for r in ok)
    assert shrink[len(shrink) // 2] < 0.3
    assert sorted(r["poison_psnr_base_worst"] for r in ok)[5] < 20, "these poisons are visible"


def test_transfer_angle_noise_floor_is_far_below_the_papers_signal(module_cache, tmp_path):
    """An unmodified base image as the 'poison' (attack.optimize=false): the poisoned head sees
    the control's batches plus one innocuous image, so it barely rotates. Measured (seed 0, 5
    targets): 0.05, 0.05, 4.98, 0.06, 0.05 degrees (mean 1.0) against the paper's 23."""
    settings = default_settings(
        module_cache, *ANKLE_BOOT_BAG, "trials=5", "save_poisons=false", "attack.optimize=false"
    )
    angles = [r["angular_deviation_deg"] for r in run(settings, tmp_path)]
    assert sum(angles) / len(angles) < 5.0
    assert max(angles) < PAPER_ANGLE_DEG / 2
