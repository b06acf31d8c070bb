"""Every sweep composes, every job of it is a valid frogs job, and it has the jobs its comment says.

Composition goes through Hydra's compose API with the sweeps folder as the primary config dir and
conf/ on the search path: the same search path ``frogs --config-dir sweeps`` builds.
"""

from __future__ import annotations

import re
from functools import cache

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from frogs.cli import CONFIG_DIR  # also registers the schemas
from frogs.config import to_settings
from frogs.settings import JobSettings
from tests.sweeps.helpers import SWEEPS, SWEEPS_DIR

PAPER_SWEEPS = {"transfer_oneshot", "e2e_poison_count", "e2e_outliers", "e2e_ablation"}


def compose_sweep(name: str, *overrides: str, hydra: bool = True) -> DictConfig:
    with initialize_config_dir(str(SWEEPS_DIR), version_base="1.3"):
        return compose(
            name,
            overrides=[f"hydra.searchpath=[file://{CONFIG_DIR}]", *overrides],
            return_hydra_config=hydra,
        )


def sweep_jobs(name: str, *overrides: str) -> list[list[str]]:
    """The jobs the basic sweeper makes: the cartesian product of hydra.sweeper.params, where a
    command-line value replaces the file's for the same key (as ``BasicSweeper.sweep`` does)."""
    cfg = compose_sweep(name, *overrides)
    params = [f"{key}={value}" for key, value in cfg.hydra.sweeper.params.items()]
    parsed = OverridesParser.create().parse_overrides([*params, *overrides])
    return BasicSweeper.split_arguments(parsed, max_batch_size=None)[0]


@cache
def job_settings(name: str, overrides: tuple[str, ...]) -> JobSettings:
    return to_settings(compose_sweep(name, *overrides, hydra=False))


def stated_job_count(path) -> int:
    """The first 'N jobs' in a file's header comment."""
    header = "".join(line for line in path.read_text().splitlines(True) if line.startswith("#"))
    found = re.search(r"(\d[\d,]*) jobs", header)
    assert found, f"{path.name}: the header comment must say how many jobs the sweep has"
    return int(found.group(1).replace(",", ""))


def test_the_paper_studies_are_all_there():
    assert set(SWEEPS) >= PAPER_SWEEPS


@pytest.mark.parametrize("name", SWEEPS)
def test_sweep_has_the_job_count_its_comment_says(name):
    path = SWEEPS_DIR / f"{name}.yaml"
    assert path.read_text().lstrip().startswith("# Fig."), "first comment names the paper figure"
    assert compose_sweep(name).hydra.mode.name == "MULTIRUN"
    assert len(sweep_jobs(name)) == stated_job_count(path)


@pytest.mark.parametrize("name", SWEEPS)
def test_cpu_preset_shrinks_the_grid_to_its_comment(name):
    grid = SWEEPS_DIR / "grid" / f"cpu_{name}.yaml"
    jobs = sweep_jobs(name, "scale=cpu")
    assert len(jobs) == (stated_job_count(grid) if grid.exists() else len(sweep_jobs(name)))
    assert len(jobs) <= 4
    for job in jobs:
        settings = job_settings(name, ("scale=cpu", *job))
        assert settings.trials == 1 and settings.device == "cpu" and not settings.save_poisons
        assert settings.attack.iters <= 20 and settings.victim.epochs <= 2
        assert settings.dataset.test_per_class == 40  # debug=smoke's tiny data


@pytest.mark.parametrize("name", SWEEPS)
def test_every_job_of_the_paper_grid_is_a_valid_job(name):
    jobs = sweep_jobs(name)
    sample = jobs[:: max(1, len(jobs) // 12)] + jobs[-1:]
    assert all(isinstance(job_settings(name, tuple(job)), JobSettings) for job in sample)


def test_transfer_oneshot_splits_distinct_targets_over_jobs():
    jobs = sweep_jobs("transfer_oneshot")
    settings = [job_settings("transfer_oneshot", tuple(job)) for job in jobs]
    indices = [i for s in settings for i in range(s.trial_offset, s.trial_offset + s.trials)]
    assert len(indices) == len(set(indices)) == 900
    first = settings[0]
    assert first.victim.name == "transfer" and first.attack.num_poisons == 1


def test_poison_count_grid_is_fig_5b():
    jobs = sweep_jobs("e2e_poison_count")
    settings = [job_settings("e2e_poison_count", tuple(job)) for job in jobs]
    assert sorted({s.attack.num_poisons for s in settings}) == [1, *range(5, 71, 5)]
    assert {s.attack.opacity for s in settings} == {0.2, 0.3}
    pairs = {(s.dataset.target_class, s.dataset.base_class) for s in settings}
    assert pairs == {("bird", "dog"), ("airplane", "frog")}
    assert {(s.dataset.name, s.victim.name, s.trials) for s in settings} == {
        ("cifar10", "end_to_end", 30)
    }


def test_outlier_sweep_is_fig_5a():
    settings = [job_settings("e2e_outliers", tuple(job)) for job in sweep_jobs("e2e_outliers")]
    assert {s.target_selection for s in settings} == {"outlier", "random"}
    assert {(s.dataset.target_class, s.dataset.base_class) for s in settings} == {
        ("airplane", "frog")
    }
    assert {(s.attack.num_poisons, s.attack.opacity) for s in settings} == {(50, 0.3)}
    outliers = [s for s in settings if s.target_selection == "outlier"]
    ranks = sorted(i for s in outliers for i in range(s.trial_offset, s.trial_offset + s.trials))
    assert ranks == list(range(50))


def test_ablation_sweep_changes_one_ingredient_at_a_time():
    variants = {}
    for job in sweep_jobs("e2e_ablation"):
        attack = job_settings("e2e_ablation", tuple(job)).attack
        variants[job[0]] = (attack.multi_base, attack.optimize, attack.opacity, attack.num_poisons)
    assert variants == {
        "ablation=full": (True, True, 0.3, 50),
        "ablation=single_base": (False, True, 0.3, 50),
        "ablation=no_optimize": (True, False, 0.3, 50),
        "ablation=no_watermark": (True, True, 0.0, 50),
    }


def test_a_command_line_value_replaces_a_swept_one():
    jobs = sweep_jobs("e2e_poison_count", "attack.num_poisons=50", "pair=bird_dog")
    assert len(jobs) == 2


def test_sweep_folders_are_stable_and_name_the_job_not_where_it_runs():
    cfg = compose_sweep("e2e_ablation")
    assert cfg.hydra.sweep.dir == "multirun/e2e_ablation"
    raw = OmegaConf.to_container(cfg.hydra.sweep, resolve=False)
    assert raw["subdir"] == "${hydra.job.override_dirname}"
    excluded = set(cfg.hydra.job.config.override_dirname.exclude_keys)
    assert {"cache_dir", "device", "threads", "progress", "trials"} <= excluded
    run_dir = OmegaConf.to_container(cfg.hydra.run, resolve=False)["dir"]
    assert "%f" in run_dir  # single runs keep sub-second timestamps


@pytest.mark.parametrize("launcher", ["slurm", "slurm_local"])
def test_launcher_presets_read_the_environment(launcher, monkeypatch):
    monkeypatch.setenv("FROGS_SLURM_PARTITION", "gpu")
    monkeypatch.setenv("FROGS_SLURM_CPUS", "6")
    monkeypatch.setenv("FROGS_SLURM_GPUS", "1")
    monkeypatch.setenv("FROGS_SLURM_TIME_MIN", "30")
    cfg = compose_sweep("e2e_ablation", f"hydra/launcher={launcher}").hydra.launcher
    assert (cfg.cpus_per_task, cfg.gpus_per_node, cfg.timeout_min) == (6, 1, 30)
    if launcher == "slurm":
        assert cfg.partition == "gpu" and cfg.max_num_timeout > 0
        assert cfg.additional_parameters.requeue is True
        assert cfg._target_.endswith("SlurmLauncher")
    else:
        assert cfg._target_.endswith("LocalLauncher")
