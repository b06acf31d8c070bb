"""The CIFAR-10 transfer analog (docs/replication.md, claims 1-2) at its reported budget, on real
CIFAR-10 with a fixed seed: the one statistical test of the replication.

CI cannot afford the report's extractor (29 minutes of pretraining), so this test trains a smaller
one with the same recipe shape: AlexNet-CIFAR on the 8 classes other than bird and dog, 500 images
per class, 3 epochs (``model/pretrain=analog`` with fewer images and epochs). Everything else is
the sweep's: a head on 40 images per class, 250 sign steps, one poison per target, L-inf 8/255.
The small extractor reaches 43.6 % test accuracy on its 8 classes (the report's: 78.7 %).
Measured values: see each test.
"""

from __future__ import annotations

import pytest

from frogs.config.compose import compose_settings
from frogs.experiment.run import run

pytestmark = pytest.mark.slow

TARGETS = 20


@pytest.fixture(scope="module")
def records(tmp_path_factory, cifar10_root):
    tmp = tmp_path_factory.mktemp("analog")
    overrides = [
        "dataset=cifar10",
        f"dataset.root={cifar10_root}",
        "dataset.target_class=bird",
        "dataset.base_class=dog",
        "dataset.train_per_class=40",
        "model/pretrain=analog",
        "model.pretrain.epochs=3",
        "model.pretrain.hold_epochs=1",
        "model.pretrain.train_per_class=500",
        "attack.num_poisons=1",
        "attack.opacity=0.0",
        "attack.iters=250",
        "attack.eps=8/255",
        f"trials={TARGETS}",
        "seed=0",
        "progress=false",
        "save_poisons=false",
        f"cache_dir={tmp / 'cache'}",
    ]
    return run(compose_settings(overrides), tmp / "run")


def test_the_extractor_never_saw_the_pair_and_the_head_is_underdetermined(records):
    first = records[0]
    assert first["pretrain_classes"] == "without_task" and first["clean_model_classes"] == 8
    assert first["victim_train_size"] == 80
    # App. D's condition, that the head can fit every training point, is full row rank of the
    # 80 training features; the live units are its proxy (measured 80 on this CPU, more on the
    # machines of earlier CI runs)
    assert first["victim_feature_rank"] == first["victim_train_size"], first["victim_feature_rank"]
    assert first["victim_live_features"] >= first["victim_train_size"]


def test_poisons_stay_inside_the_reported_budget(records):
    ok = [r for r in records if r["status"] == "ok"]
    assert len(ok) == TARGETS
    assert max(r["poison_linf255_base_worst"] for r in ok) <= 8.0 + 1e-4  # float32 rounding
    assert min(r["poison_psnr_base_worst"] for r in ok) >= 30.0  # measured 30.13 dB


def test_one_shot_rate_at_the_reported_budget(records):
    """Seed 0, 20 targets at L-inf 8/255. The analog does not reach the paper's 100 % there (the
    report's extractor: 15/100), so the test bounds both ways what a bug would break: crafting
    must pull each poison's features towards the target's (measured: median 36.5 % closer, every
    one at least 20 %; bound 20 % median), and the rate must stay far from the paper's (measured
    0/20 with this small extractor; bound 8/20): a high one-shot rate inside an 8/255 box on
    this extractor would mean an evaluation bug, not a result."""
    ok = [r for r in records if r["status"] == "ok"]
    closer = sorted(1 - r["feat_dist_after"] / r["feat_dist_before"] for r in ok)
    assert closer[len(closer) // 2] >= 0.20, closer
    successes = sum(bool(r["success"]) for r in ok)
    assert successes <= 8, successes
