"""Target and base choice: outliers, disjoint random targets, base diversity."""

from __future__ import annotations

import pytest
import torch

from frogs.data.selection import choose_bases, choose_targets
from frogs.errors import ConfigError


def _pool():
    candidates = torch.tensor([10, 11, 12, 13, 14, 15])
    true_probs = torch.tensor([0.9, 0.2, 0.6, 0.1, 0.55, 0.95])
    correct = torch.tensor([True, True, True, False, True, True])  # 13 is misclassified
    return candidates, true_probs, correct


def test_outliers_are_correct_targets_in_ascending_confidence():
    candidates, probs, correct = _pool()
    chosen = choose_targets(
        candidates,
        probs,
        correct,
        mode="outlier",
        count=4,
        offset=0,
        generator=torch.Generator().manual_seed(0),
    )
    assert [c.index for c in chosen] == [11, 14, 12, 10]
    assert [c.outlier_rank for c in chosen] == [0, 1, 2, 3]
    confidences = [float(probs[candidates.tolist().index(c.index)]) for c in chosen]
    assert confidences == sorted(confidences)
    later = choose_targets(
        candidates,
        probs,
        correct,
        mode="outlier",
        count=1,
        offset=2,
        generator=torch.Generator().manual_seed(0),
    )
    assert later[0].index == 12 and later[0].outlier_rank == 2


def test_random_targets_split_by_offset_do_not_overlap():
    candidates = torch.arange(100, 150)
    probs, correct = torch.rand(50), torch.ones(50, dtype=torch.bool)
    correct[::7] = False

    def pick(offset):
        return {
            c.index
            for c in choose_targets(
                candidates,
                probs,
                correct,
                mode="random",
                count=10,
                offset=offset,
                generator=torch.Generator().manual_seed(3),
            )
        }

    first, second = pick(0), pick(10)
    assert len(first) == 10 and not first & second
    excluded = {int(candidates[i]) for i in range(0, 50, 7)}
    assert not (first | second) & excluded


def test_too_many_targets_is_a_clear_error():
    candidates, probs, correct = _pool()
    with pytest.raises(ConfigError, match="only 5 test images"):
        choose_targets(
            candidates,
            probs,
            correct,
            mode="random",
            count=6,
            offset=0,
            generator=torch.Generator(),
        )


def test_bases_distinct_or_reused():
    candidates = torch.arange(20)
    distinct = choose_bases(candidates, 5, True, torch.Generator().manual_seed(0))
    assert len(set(distinct.tolist())) == 5
    reused = choose_bases(candidates, 5, False, torch.Generator().manual_seed(0))
    assert len(reused) == 5 and len(set(reused.tolist())) == 1
    with pytest.raises(ConfigError, match="num_poisons=21"):
        choose_bases(candidates, 21, True, torch.Generator())


def test_bases_by_distance_are_the_nearest_and_share_their_first_n():
    candidates = torch.arange(100, 120)
    distances = torch.linspace(5, 1, 20)  # the last candidate is the nearest
    generator = torch.Generator()
    nearest = choose_bases(candidates, 3, True, generator, distances)
    assert nearest.tolist() == [119, 118, 117]
    assert choose_bases(candidates, 1, False, generator, distances).tolist() == [119]
    assert choose_bases(candidates, 4, False, generator, distances).tolist() == [119] * 4
    # random draws: the first N bases do not depend on how many are drawn
    five = choose_bases(candidates, 5, True, torch.Generator().manual_seed(3))
    two = choose_bases(candidates, 2, True, torch.Generator().manual_seed(3))
    assert five[:2].tolist() == two.tolist()
