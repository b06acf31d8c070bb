"""A plugin attack and defense defined outside the package, found through the ``frogs.plugins``
entry point, composed from their own YAML, run by the real command and recorded like built-ins.

The plugin lives in a temporary folder: a module, its ``conf/`` and a ``.dist-info`` with the
entry point (what ``pip install`` of a plugin package writes), put on ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from frogs.store.records import read_records
from tests.reliability.conftest import TINY, frogs_env

PLUGIN = '''
"""A frogs plugin: a uniform-shift attack and a drop-the-newest defense."""
from dataclasses import dataclass, field
from typing import Any

import torch

from frogs.attacks import ATTACKS, Crafted, CraftingProblem
from frogs.attacks.budget import quantize_within
from frogs.defenses import DEFENSES, PoisonedSet
from frogs.errors import ConfigError
from frogs.config.settings import AttackSettings, DefenseSettings, pixel_value


@dataclass(frozen=True)
class UniformShiftSettings(AttackSettings):
    name: str = "uniform_shift"
    shift: Any = field(default="4/255", metadata={"pixels": True})

    def check(self, job):
        super().check(job)
        if pixel_value(self.shift, "attack.shift") <= 0:
            raise ConfigError(f"attack.shift={self.shift!r} is not allowed; expected > 0")


@ATTACKS.register("uniform_shift", UniformShiftSettings)
def uniform_shift(settings, problem: CraftingProblem) -> Crafted:
    step = pixel_value(settings.shift, "attack.shift")
    moved = problem.bases + step * torch.sign(problem.target - problem.bases)
    poisons = quantize_within(problem.budget.project(moved, problem.bases), problem.bases,
                              problem.budget)
    return Crafted(poisons, problem.bases, {"plugin_metric": 42.0})


@dataclass(frozen=True)
class DropNewestSettings(DefenseSettings):
    name: str = "drop_newest"
    count: int = 1


@DEFENSES.register("drop_newest", DropNewestSettings)
def drop_newest(settings, features, training: PoisonedSet):
    keep = torch.ones(len(training.labels), dtype=torch.bool)
    keep[len(keep) - settings.count:] = False
    return keep
'''


def make_plugin(root: Path) -> Path:
    """Write the plugin package and its distribution metadata under ``root``; return it."""
    package = root / "my_frogs_plugin"
    (package / "conf" / "attack").mkdir(parents=True)
    (package / "conf" / "defense").mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(PLUGIN))
    (package / "conf" / "attack" / "uniform_shift.yaml").write_text(
        "defaults:\n  - base_uniform_shift\n  - _self_\n\nshift: 4/255\nnum_poisons: 2\n"
    )
    (package / "conf" / "defense" / "drop_newest.yaml").write_text(
        "defaults:\n  - base_drop_newest\n  - _self_\n\ncount: 1\n"
    )
    dist = root / "my_frogs_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-frogs-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[frogs.plugins]\nmy_plugin = my_frogs_plugin\n")
    return root


def run_outside(site: Path, cwd: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = frogs_env()
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "frogs", *TINY, *overrides],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    return make_plugin(tmp_path_factory.mktemp("plugin-site"))


def test_a_plugin_attack_and_defense_run_and_are_recorded_like_built_ins(site, tmp_path):
    run_dir = tmp_path / "run"
    result = run_outside(
        site,
        tmp_path,
        "attack=uniform_shift",
        "defense=drop_newest",
        f"cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={run_dir}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (record,) = read_records(run_dir / "results.jsonl").records
    assert record["status"] == "ok", record.get("error")
    assert (record["attack"], record["defense"]) == ("uniform_shift", "drop_newest")
    assert record["attack.shift"] == pytest.approx(4 / 255)  # a pixel knob, in [0, 1] units
    assert record["attack.num_poisons"] == 2 and record["defense.count"] == 1
    assert record["plugin_metric"] == 42.0
    assert (record["poisons_removed"], record["clean_removed"]) == (1, 0)
    # the shift plus at most half an 8-bit level (the synthetic bases are not 8-bit images)
    assert record["poison_linf255_base_worst"] <= 4.5 + 1e-6


def test_a_plugin_option_rejects_unknown_keys_and_bad_values(site, tmp_path):
    for overrides, needle in (
        (["attack=uniform_shift", "attack.shfit=1"], "attack.shfit"),
        (["attack=uniform_shift", "attack.shift=-1"], "attack.shift=-1"),
    ):
        result = run_outside(site, tmp_path, *overrides, f"cache_dir={tmp_path / 'cache'}")
        assert result.returncode == 2
        assert needle in result.stderr and "Traceback" not in result.stderr
