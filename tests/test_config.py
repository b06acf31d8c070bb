"""Every config group composes against the schema; bad values fail with one clear line."""

from __future__ import annotations

import pytest
from hydra.core.config_store import ConfigStore
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigKeyError, ValidationError

from frogs.cli import CONFIG_DIR
from frogs.config import compose as frogs_config
from frogs.errors import ConfigError

GROUPS = {
    group: sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))
    for group in ("dataset", "model", "attack", "victim", "debug")
}


def compose_settings(*overrides: str):
    return frogs_config.compose_settings(overrides)


def test_groups_have_the_names_other_code_relies_on():
    assert {"fashion_mnist", "cifar10", "imagefolder", "synthetic"} <= set(GROUPS["dataset"])
    assert {"alexnet_cifar", "resnet18", "inception_v3"} <= set(GROUPS["model"])
    assert "feature_collision" in GROUPS["attack"]
    assert {"transfer", "end_to_end"} <= set(GROUPS["victim"])
    assert "smoke" in GROUPS["debug"]


# Presets compose an option of another name (attack=feature_collision_authors runs the
# feature_collision attack with the official code's recipe).
PRESETS = {
    "feature_collision_authors": "feature_collision",
    "feature_collision_e2e": "feature_collision",
}


@pytest.mark.parametrize("group", ["model", "attack", "victim"])
def test_every_option_composes(group, tmp_path):
    # options that need an input of the user's (attack=external: its poison folders)
    required = {"external": [f"attack.path={tmp_path}"]}
    for option in GROUPS[group]:
        settings = compose_settings(f"{group}={option}", *required.get(option, []))
        assert getattr(settings, group).name == PRESETS.get(option, option)


def test_schemas_are_stored_once_and_again_when_replaced(monkeypatch):
    """Composing many jobs converts each schema once: a second registration stores nothing,
    an entry replaced in Hydra's store is stored again, and composition never changes the
    shared schema (an override of one job is not the next job's default)."""
    frogs_config.register_schemas()
    stored = []
    original = ConfigStore.store

    def counting_store(self, name, node, group=None, package=None, provider=None):
        stored.append((group, name))
        original(self, name=name, node=node, group=group, package=package, provider=provider)

    monkeypatch.setattr(ConfigStore, "store", counting_store)
    frogs_config.register_schemas()
    assert stored == []
    ConfigStore.instance().store(group="attack", name="base_feature_collision", node={"x": 1})
    stored.clear()
    frogs_config.register_schemas()
    assert stored == [("attack", "base_feature_collision")]
    assert compose_settings("attack.iters=7").attack.iters == 7
    assert compose_settings().attack.iters != 7


def test_authors_preset_is_the_official_code_in_its_units():
    attack = compose_settings("attack=feature_collision_authors").attack
    assert attack.recipe == "authors"
    assert attack.lr == 500 * 255 and attack.beta0 == 0.25 and attack.stop_distance == 2.9


def test_default_budget_is_eight_levels_linf():
    attack = compose_settings().attack
    assert (attack.constraint, attack.eps, attack.quantize) == ("linf", "8/255", True)


def test_default_is_the_transfer_one_shot_on_fashion_mnist():
    settings = compose_settings()
    assert settings.dataset.name == "fashion_mnist"
    assert settings.victim.name == "transfer"
    assert settings.attack.num_poisons == 1
    assert settings.victim.epochs == 100 and settings.victim.lr == 0.01
    end_to_end = compose_settings("victim=end_to_end")
    assert end_to_end.victim.lr == pytest.approx(1.85e-5) and end_to_end.victim.epochs == 10


def test_misspelt_key_fails_at_composition():
    with pytest.raises((ConfigCompositionException, ConfigKeyError, ValidationError)):
        compose_settings("attack.stepz=3")
    with pytest.raises((ConfigCompositionException, ConfigKeyError, ValidationError)):
        compose_settings("+attack.stepz=3")


def test_unknown_group_option_lists_the_known_ones():
    with pytest.raises(ConfigCompositionException, match="fashion_mnist"):
        compose_settings("dataset=mnist_typo")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("attack.opacity=1.5", "attack.opacity=1.5"),
        ("attack.iters=0", "attack.iters=0"),
        ("attack.lr=-1", "attack.lr=-1"),
        ("victim.epochs=0", "victim.epochs=0"),
        ("trials=0", "trials=0"),
    ],
)
def test_bad_values_name_the_value_and_what_is_allowed(override, message):
    with pytest.raises(ConfigError, match="expected") as info:
        compose_settings(override)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("override", "allowed"),
    [
        ("target_selection=worst", "random, outlier, setups"),
        ("attack.constraint=l1", "linf, l2"),
        ("device=tpu", "auto, cpu, cuda"),
        ("poison_format=png", "frogs, benchmark"),
        ("attack.recipe=paper", "algorithm1, authors, authors_e2e"),
        ("attack.base_selection=far", "random, closest"),
        ("model.pretrain.schedule=cosine", "constant, exponential"),
        ("model.on_missing_weights=ignore", "error, pretrain"),
    ],
)
def test_an_enum_knob_refuses_another_value_at_composition(override, allowed):
    """Enum-typed knobs: Hydra names the value and the allowed ones before anything runs (the
    CLI prints it as one line: tests/reliability/test_bad_input.py)."""
    key, value = override.split("=")
    with pytest.raises(ConfigCompositionException) as info:
        compose_settings(override)
    message = f"{info.value} {info.value.__cause__}"
    assert f"Invalid value '{value}', expected one of [{allowed}]" in message
    assert f"full_key: {key}" in message
