"""Every sweep composes, every job of it is a valid frogs job, and it has the jobs its comment says.

Composition goes through Hydra's compose API with the sweeps folder as the primary config dir and
conf/ on the search path: the same search path ``frogs --config-dir sweeps`` builds.
"""

from __future__ import annotations

import re
from functools import cache

import pytest
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from frogs.config.compose import compose_config, compose_settings
from frogs.config.settings import JobSettings
from frogs.store.identity import NOT_IDENTITY_KEYS, job_folder_excluded_keys
from tests.sweeps.helpers import SWEEPS, SWEEPS_DIR, smoke_job_count, smoke_overrides

PAPER_SWEEPS = {"transfer_oneshot", "e2e_poison_count", "e2e_outliers", "e2e_ablation"}


def compose_sweep(name: str, *overrides: str, hydra: bool = True) -> DictConfig:
    return compose_config(
        overrides, config_dir=SWEEPS_DIR, config_name=name, return_hydra_config=hydra
    )


def sweep_jobs(name: str, *overrides: str) -> list[list[str]]:
    """The jobs the basic sweeper makes: the cartesian product of hydra.sweeper.params, where a
    command-line value replaces the file's for the same key (as ``BasicSweeper.sweep`` does)."""
    parser = OverridesParser.create()
    given = parser.parse_overrides(list(overrides))
    cfg = compose_sweep(name, *(o.input_line for o in given if not o.is_sweep_override()))
    params = [f"{key}={value}" for key, value in cfg.hydra.sweeper.params.items()]
    parsed = parser.parse_overrides([*params, *overrides])
    return BasicSweeper.split_arguments(parsed, max_batch_size=None)[0]


@cache
def job_settings(name: str, overrides: tuple[str, ...]) -> JobSettings:
    return compose_settings(overrides, config_dir=SWEEPS_DIR, config_name=name)


def sampled(jobs: list[list[str]], count: int = 8) -> list[list[str]]:
    """About ``count`` jobs spread over the grid, its first and last among them (composing all of
    a 90-job grid takes over a minute)."""
    return jobs[:: max(1, len(jobs) // count)] + jobs[-1:]


def swept_values(jobs: list[list[str]], key: str) -> set[str]:
    """The values a grid gives ``key``, read from its jobs' overrides."""
    return {o.split("=", 1)[1] for job in jobs for o in job if o.split("=", 1)[0] == key}


def stated_job_count(path) -> int:
    """The first 'N jobs' in a file's header comment."""
    lines = path.read_text().splitlines(True)
    header = "".join(line for line in lines if line.startswith("#") and "smoke" not in line.lower())
    found = re.search(r"(\d[\d,]*) jobs", header)
    assert found, f"{path.name}: the header comment must say how many jobs the sweep has"
    return int(found.group(1).replace(",", ""))


def test_the_paper_studies_are_all_there():
    assert set(SWEEPS) >= PAPER_SWEEPS


@pytest.mark.parametrize("name", SWEEPS)
def test_sweep_has_the_job_count_its_comment_says(name):
    path = SWEEPS_DIR / f"{name}.yaml"
    first = path.read_text().lstrip()
    assert first.startswith(("# Fig.", "# Study")), "first comment names the figure or the study"
    assert compose_sweep(name).hydra.mode.name == "MULTIRUN"
    assert len(sweep_jobs(name)) == stated_job_count(path)


@pytest.mark.parametrize("name", SWEEPS)
def test_smoke_line_shrinks_the_grid_to_its_comment(name):
    """Every study file carries its small CPU grid as a ``# smoke:`` line (the shared preset plus
    the study's own values); appended to the command, it gives the jobs its comment says."""
    smoke = smoke_overrides(name)
    assert "debug=sweep_smoke" in smoke, "the smoke grid uses the shared preset"
    jobs = sweep_jobs(name, *smoke)
    assert len(jobs) == smoke_job_count(name) <= 4
    for job in jobs:  # each job holds every override, the smoke line's too
        settings = job_settings(name, tuple(job))
        assert settings.trials == 1 and settings.device == "cpu" and not settings.save_poisons
        assert settings.attack.iters <= 20 and settings.victim.epochs <= 2
        assert settings.dataset.test_per_class == 40  # debug=smoke's tiny data


@pytest.mark.parametrize("name", SWEEPS)
def test_every_job_of_the_paper_grid_is_a_valid_job(name):
    jobs = sweep_jobs(name)
    assert all(isinstance(job_settings(name, tuple(job)), JobSettings) for job in sampled(jobs, 12))


def test_transfer_oneshot_splits_distinct_targets_over_jobs():
    jobs = sweep_jobs("transfer_oneshot")
    composed = {tuple(job): job_settings("transfer_oneshot", tuple(job)) for job in sampled(jobs)}
    assert {s.trials for s in composed.values()} == {10}
    assert all(f"trial_offset={s.trial_offset}" in job for job, s in composed.items())
    offsets = sorted(int(v) for v in swept_values(jobs, "trial_offset"))
    indices = [i for offset in offsets for i in range(offset, offset + 10)]
    assert len(indices) == len(set(indices)) == 900
    first = composed[tuple(jobs[0])]
    assert first.victim.name == "transfer" and first.attack.num_poisons == 1


def test_poison_count_grid_is_fig_5b():
    jobs = sweep_jobs("e2e_poison_count")
    assert sorted(int(v) for v in swept_values(jobs, "attack.num_poisons")) == [1, *range(5, 71, 5)]
    assert len(jobs) == 15 * 2 * 2
    composed = {tuple(job): job_settings("e2e_poison_count", tuple(job)) for job in sampled(jobs)}
    for job, s in composed.items():  # each override lands where the grid says
        assert f"attack.num_poisons={s.attack.num_poisons}" in job
        assert f"attack.opacity={s.attack.opacity}" in job
    assert {s.attack.opacity for s in composed.values()} == {0.2, 0.3}
    pairs = {(s.dataset.target_class, s.dataset.base_class) for s in composed.values()}
    assert pairs == {("bird", "dog"), ("airplane", "frog")}
    assert {(s.dataset.name, s.victim.name, s.trials) for s in composed.values()} == {
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
    assert "trial_offset" not in excluded  # jobs at different offsets are different jobs
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


def test_folder_names_and_trial_ids_leave_out_the_same_keys():
    """Hydra's exclude_keys is the one list in frogs.store.records (through a resolver), plus
    trials."""
    cfg = compose_sweep("e2e_ablation").hydra.job.config.override_dirname
    assert OmegaConf.to_container(cfg, resolve=False)["exclude_keys"] == "${frogs_excluded_keys:}"
    assert list(cfg.exclude_keys) == job_folder_excluded_keys() == [*NOT_IDENTITY_KEYS, "trials"]
    job = compose_sweep(
        "e2e_ablation", "device=cpu", "attack.iters=2", "trials=3", "trial_offset=1"
    )
    assert job.hydra.job.override_dirname == "attack.iters=2,trial_offset=1"  # Hydra resolved it
