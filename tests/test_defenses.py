"""The defenses on planted poisons in feature space, their settings, and the defend stage."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pytest
import torch

from frogs.attacks.feature_collision import FeatureCollisionSettings
from frogs.config.settings import DefenseSettings, JobSettings, updated
from frogs.defenses import PoisonedSet, score
from frogs.defenses.activation_clustering import (
    ActivationClusteringSettings,
    activation_clustering,
)
from frogs.defenses.deep_knn import DeepKnnSettings, deep_knn, plurality_disagrees
from frogs.defenses.spectral_signatures import (
    SpectralSignaturesSettings,
    removal_count,
    spectral_signatures,
)
from frogs.errors import ConfigError
from frogs.experiment.run import run
from frogs.victims.transfer import TransferSettings


def planted(poisons: int = 5, clean: int = 40, dim: int = 16, seed: int = 0):
    """Two classes of Gaussian features; ``poisons`` rows labelled 1 sit at class 0's centre
    (where feature collision puts them: the target's class)."""
    rng = np.random.default_rng(seed)
    centre = np.zeros(dim)
    centre[:4] = 6.0
    class0 = rng.normal(size=(clean, dim))
    class1 = rng.normal(size=(clean, dim)) + centre
    bad = rng.normal(scale=0.3, size=(poisons, dim))
    features = torch.from_numpy(np.concatenate([class0, class1, bad]))
    labels = torch.tensor([0] * clean + [1] * clean + [1] * poisons)
    is_poison = torch.tensor([False] * (2 * clean) + [True] * poisons)
    inputs = torch.zeros(len(labels), 1, 2, 2)
    return features, PoisonedSet(inputs, labels, is_poison)


def test_deep_knn_removes_points_out_voted_by_their_neighbours():
    features, training = planted()
    settings = DeepKnnSettings(k=10, expected_poisons=5)
    filtered = score(deep_knn(settings, features, training), training)
    assert filtered.poisons_removed == 5 and filtered.recall == 1.0
    assert filtered.clean_removed <= 2


def test_deep_knn_plurality_keeps_ties_and_ignores_each_point_itself():
    points = np.array([[0.0], [0.1], [0.2], [5.0], [5.1]])
    labels = np.array([0, 0, 1, 1, 1])
    # k=2: point 2's neighbours are points 1 (label 0) and 0 (0): out-voted. Point 0's are 1 (0)
    # and 2 (1): a tie, kept.
    removed = plurality_disagrees(points, labels, 2)
    assert removed.tolist() == [False, False, True, False, False]


def test_deep_knn_auto_k_is_twice_the_expected_poisons():
    job = JobSettings(attack=FeatureCollisionSettings())
    job = updated(job, {"attack.num_poisons": 7})
    assert DeepKnnSettings().resolve(job).k == 14
    assert DeepKnnSettings(expected_poisons=3).resolve(job).k == 6
    assert DeepKnnSettings(k=5).resolve(job).k == 5


def test_spectral_signatures_removes_the_top_outliers_of_each_class():
    rng = np.random.default_rng(1)
    clean = rng.normal(size=(40, 16))
    shifted = rng.normal(size=(5, 16))
    shifted[:, 3] += 8.0  # the poisons' common direction: the top singular vector
    features = torch.from_numpy(np.concatenate([clean, shifted]))
    training = PoisonedSet(
        torch.zeros(45, 1, 2, 2),
        torch.zeros(45, dtype=torch.long),
        torch.tensor([False] * 40 + [True] * 5),
    )
    settings = SpectralSignaturesSettings(expected_poisons=5)
    assert removal_count(settings, 45) == math.ceil(1.5 * 5)  # Tran et al.'s 1.5 x epsilon
    filtered = score(spectral_signatures(settings, features, training), training)
    assert filtered.poisons_removed == 5
    assert filtered.clean_removed == 8 - 5
    fixed = replace(settings, removal_rate=0.2)
    assert int((~spectral_signatures(fixed, features, training)).sum()) == 9  # ceil(0.2 x 45)


def test_activation_clustering_removes_a_small_separate_cluster_only():
    features, training = planted(poisons=6)
    settings = ActivationClusteringSettings(dims=5)
    filtered = score(activation_clustering(settings, features, training), training)
    assert filtered.poisons_removed == 6
    # 2-means on a single Gaussian blob may cut off a few points too (measured: 4 of 80)
    assert filtered.clean_removed <= 8


def test_score_counts_recall_and_clean_removed():
    _, training = planted(poisons=4, clean=3)
    clean_keep, poison_keep = [True, False, True, True, True, True], [False, True, False, True]
    keep = torch.tensor([*clean_keep, *poison_keep])
    filtered = score(keep, training)
    assert (filtered.poisons_removed, filtered.clean_removed, filtered.recall) == (2, 1, 0.5)
    assert filtered.fields()["clean_kept"] == 5


@pytest.mark.parametrize(
    "settings, needle",
    [
        (DeepKnnSettings(k=0), "defense.k=0"),
        (DeepKnnSettings(k=2.5), "defense.k=2.5"),
        (DeepKnnSettings(expected_poisons=0), "defense.expected_poisons=0"),
        (SpectralSignaturesSettings(removal_rate=1.0), "defense.removal_rate=1.0"),
        (SpectralSignaturesSettings(removal_rate=-0.1), "defense.removal_rate=-0.1"),
        (ActivationClusteringSettings(max_cluster_fraction=0.6), "max_cluster_fraction=0.6"),
        (ActivationClusteringSettings(dims=0), "defense.dims=0"),
    ],
)
def test_bad_defense_settings_are_one_line_errors(settings, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.").replace("(", r"\(")):
        settings.check(JobSettings(victim=TransferSettings()))


def test_a_defense_limited_to_some_victims_names_the_victim():
    @dataclass(frozen=True)
    class TransferOnly(DefenseSettings):
        name: str = "transfer_only"
        scenarios = ("transfer",)

    job = JobSettings(victim=TransferSettings())
    TransferOnly().check(job)
    job = updated(job, {"victim.name": "end_to_end"})
    with pytest.raises(
        ConfigError,
        match="defense=transfer_only is not allowed with "
        "victim=end_to_end; expected victim one of transfer",
    ):
        TransferOnly().check(job)


@pytest.mark.parametrize("victim", ["transfer", "end_to_end"])
def test_defended_jobs_record_the_filter_and_share_the_crafted_poisons(
    synthetic_settings, tmp_path, victim
):
    """Two jobs that differ only in their defense: the second reuses the first's poisons (same
    pixels, no crafting), and both record what the defense removed."""
    from frogs.defenses.deep_knn import DeepKnnSettings as Knn
    from frogs.victims.end_to_end import EndToEndSettings

    if victim == "end_to_end":
        synthetic_settings = updated(
            synthetic_settings, {"victim": EndToEndSettings(epochs=1, lr=1e-4)}
        )
    synthetic_settings = updated(synthetic_settings, {"trials": 2})
    undefended = run(synthetic_settings, tmp_path / "none")
    defended = run(replace(synthetic_settings, defense=Knn(k=3)), tmp_path / "knn")
    for plain, knn in zip(undefended, defended, strict=True):
        assert plain["status"] == knn["status"] == "ok"
        assert plain["defense"] == "none" and knn["defense"] == "deep_knn"
        assert knn["scenario"] == victim
        assert knn["defense.k"] == 3 and knn["defense.expected_poisons"] == 1
        assert plain["poisons_removed"] == plain["clean_removed"] == 0
        assert 0 <= knn["poisons_removed"] <= 1 and knn["clean_removed"] >= 0
        assert knn["poison_recall"] == knn["poisons_removed"]
        assert knn["poison_linf255_base_worst"] == plain["poison_linf255_base_worst"]
        assert knn["feat_dist_after"] == plain["feat_dist_after"]
        assert knn["craft_s"] == plain["craft_s"]  # the time of the one crafting
        assert knn["poisons_reused"]  # the undefended job's (or an earlier test's) poisons
