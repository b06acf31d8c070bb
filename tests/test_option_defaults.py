"""One source for each default: an option's YAML states only what differs from its dataclass.

The dataclass of each ``attack=``, ``defense=`` and ``victim=`` option holds every knob's default
(with its units); the option's YAML names that schema in its defaults list and sets only the
knobs it changes, so that editing a dataclass default cannot be silently overridden by a YAML
copy of the old value.
"""

from __future__ import annotations

from dataclasses import asdict

import pytest
from omegaconf import OmegaConf

from frogs.config.compose import CONFIG_DIR, compose_settings, option_registries
from frogs.errors import ConfigError

OPTIONS = [
    (group, path.stem)
    for group in ("attack", "defense", "victim")
    for path in sorted((CONFIG_DIR / group).glob("*.yaml"))
]
# datasets and models too state only what differs (their YAMLs also resolve paths from the
# environment and pick a pretraining recipe, so they are not compared whole after composing)
EVERY_OPTION = OPTIONS + [
    (group, path.stem)
    for group in ("dataset", "model")
    for path in sorted((CONFIG_DIR / group).glob("*.yaml"))
]
NEEDS = {("attack", "external"): ["attack.path=/nonexistent-but-composable"]}


def baseline(group: str, name: str):
    """What the option's YAML starts from: its schema's defaults (``base_NAME`` in its defaults
    list) or the option it extends, composed."""
    listed = OmegaConf.load(CONFIG_DIR / group / f"{name}.yaml").get("defaults", [])
    (parent,) = [entry for entry in listed if isinstance(entry, str) and entry != "_self_"]
    if parent.startswith("base_"):
        return option_registries()[group].settings_class(parent.removeprefix("base_"))()
    return getattr(compose_settings([f"{group}={parent}"]), group)


def stated_knobs(group: str, name: str) -> dict:
    """What the option's YAML file itself sets (its defaults list left out)."""
    stated = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / group / f"{name}.yaml"))
    stated.pop("defaults", None)
    return stated


@pytest.mark.parametrize(("group", "name"), EVERY_OPTION, ids=[f"{g}={n}" for g, n in EVERY_OPTION])
def test_option_yaml_states_only_what_differs_from_its_dataclass(group, name):
    start = baseline(group, name)
    schema, defaults = type(start), asdict(start)
    restated = {
        key: value
        for key, value in stated_knobs(group, name).items()
        if key in defaults and value == defaults[key]
    }
    assert not restated, (
        f"conf/{group}/{name}.yaml restates what it starts from ({schema.__name__}'s defaults "
        f"or the option it extends): {restated}; delete them there"
    )
    unknown = set(stated_knobs(group, name)) - set(defaults)
    assert not unknown, f"conf/{group}/{name}.yaml sets knobs {schema.__name__} lacks: {unknown}"


@pytest.mark.parametrize(("group", "name"), OPTIONS, ids=[f"{g}={n}" for g, n in OPTIONS])
def test_option_composes_to_its_dataclass_plus_what_its_yaml_states(group, name):
    overrides = [f"{group}={name}", *NEEDS.get((group, name), [])]
    try:
        composed = asdict(getattr(compose_settings(overrides), group))
    except ConfigError as error:  # external checks its folder at validation
        if (group, name) == ("attack", "external"):
            assert "attack.path" in str(error)
            return
        raise
    expected = asdict(baseline(group, name))
    expected.update(stated_knobs(group, name))
    assert composed == expected
