"""Any PyTorch model as the victim: ``model=torchvision`` and ``model=module``, cut at a graph node.

The user network (``tests.user_models.skip_net``) has a skip connection, so its forward is not a
chain of its children; f(x) is taken at a named torch.fx node and every part of frogs (pretraining,
the cache, checkpoints, crafting, defenses, both victims) runs on it as on the built-in networks.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch

from frogs.config.compose import compose_settings
from frogs.config.settings import JobSettings
from frogs.data.datasets import load_dataset
from frogs.errors import ConfigError
from frogs.experiment.run import run
from frogs.models.architectures import ModelSpec, build_model, prepare_for_device
from frogs.models.pretrain import clean_model_key, load_clean_model
from frogs.models.pretrain_cli import write_pretrained
from frogs.store.cache import ArtifactCache
from tests.conftest import whole_records
from tests.user_models import SkipNet

CPU = torch.device("cpu")
SKIP_NET = "tests.user_models.skip_net"
MODULE = ["model=module", f"model.builder._target_={SKIP_NET}"]
# debug=smoke on the synthetic set, with a clean model that fits it (targets must be classified).
JOB = [
    "dataset=synthetic",
    "debug=smoke",
    "dataset.train_per_class=null",
    "model.pretrain.epochs=6",
    "model.pretrain.lr=0.01",
]


@pytest.fixture(scope="module")
def cache_dir(module_cache: Path) -> Path:
    """One cache for this file, so the user model is pretrained once for every test."""
    return module_cache


def settings_for(*overrides: str, cache: Path | None = None) -> JobSettings:
    extra = [f"cache_dir={cache}"] if cache is not None else []
    return compose_settings([*JOB, *MODULE, *overrides, *extra])


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("victim", ["transfer", "end_to_end"])
def test_a_job_runs_on_a_user_module_with_both_victims(victim, cache_dir, tmp_path):
    settings = settings_for(f"victim={victim}", "model.feature_node=pool", cache=cache_dir)
    records = run(settings, tmp_path)
    assert len(records) == len(whole_records(tmp_path / "results.jsonl")) == 1
    record = records[0]
    assert record["status"] == "ok", record["error"]
    for name in ("feat_dist_before", "feat_dist_after", "feat_dist_after_min"):
        assert math.isfinite(record[name]), name
    assert record["feat_dist_after"] < record["feat_dist_before"]  # crafting moved the poison


@pytest.mark.parametrize("defense", ["deep_knn", "spectral_signatures"])
def test_defenses_read_a_user_modules_features(defense, cache_dir, tmp_path):
    """A defense filters on the clean model's f(x): on a user module, the named node's output."""
    settings = settings_for(
        f"defense={defense}", "attack.num_poisons=3", "model.feature_node=pool", cache=cache_dir
    )
    record = run(settings, tmp_path)[0]
    assert record["status"] == "ok", record["error"]
    assert record["defense"] == defense
    assert 0 <= record["poisons_removed"] <= 3 and record["clean_removed"] >= 0
    if defense == "spectral_signatures":  # it removes a fixed share of the base class's rows
        assert record["poisons_removed"] + record["clean_removed"] > 0


def test_features_are_the_named_node_including_the_skip():
    spec = ModelSpec(3, 16, 4, (0.5,), (0.25,))
    x = torch.rand(5, 3, 16, 16)
    torch.manual_seed(0)
    model = build_model(spec, settings_for("model.feature_node=add").model).eval()
    torch.manual_seed(0)
    default = build_model(spec, settings_for().model).eval()
    torch.manual_seed(0)
    net = SkipNet().eval()  # the same weights, computed by hand
    with torch.no_grad():
        h = torch.relu(net.stem(model.adapter(x)))
        added = h + net.block(h)  # the node "add": the skip included
        assert torch.allclose(model.features(x), added.flatten(1), atol=1e-6)
        assert model.feature_dim == 8 * 16 * 16
        # the default node is the input of the last nn.Linear: flatten(pool(h + block(h)))
        assert default.backbone.node == "flatten" and default.feature_dim == 32
        assert torch.allclose(default.features(x), net.pool(added).flatten(1), atol=1e-6)
    assert not hasattr(model.backbone.extractor, "fc")  # the layers after the node are dropped


def test_a_wrong_node_lists_the_real_nodes():
    settings = settings_for("model.feature_node=avgpool").model
    with pytest.raises(ConfigError) as exc:
        build_model(ModelSpec(3, 16, 4, (0.5,), (0.25,)), settings)
    message = one_line(exc)
    assert "model.feature_node='avgpool'" in message
    assert "x, stem, relu, block.0, block.1, block.2, add, pool, flatten, fc" in message


def test_a_bad_builder_is_one_line_naming_it():
    with pytest.raises(ConfigError) as exc:
        compose_settings(["model=module", "model.builder._target_=tests.user_models.nothing"])
    assert "model.builder._target_='tests.user_models.nothing' is not importable" in one_line(exc)
    with pytest.raises(ConfigError) as exc:
        compose_settings(["model=module", "model.builder._target_=no_such_pkg.models.net"])
    assert (
        "'no_such_pkg.models.net' is not importable "
        "(ModuleNotFoundError: No module named 'no_such_pkg')" in one_line(exc)
    )
    spec = ModelSpec(3, 16, 4, (0.5,), (0.25,))
    for target, expected in (
        ("tests.user_models.not_a_module", "returned a int, not an nn.Module"),
        ("null", "model.builder._target_=None is not allowed with model=module"),
    ):
        settings = compose_settings(["model=module", f"model.builder._target_={target}"])
        with pytest.raises(ConfigError) as exc:
            build_model(spec, settings.model)
        assert expected in one_line(exc)


def test_torchvision_resnet18_from_its_default_node():
    settings = compose_settings(
        ["dataset=synthetic", "model=torchvision", "model.arch=resnet18", "model.weights=null"]
    ).model
    model = build_model(ModelSpec(3, 16, 4, (0.5,), (0.25,)), settings)
    assert model.backbone.node == "flatten" and model.feature_dim == 512
    assert model(torch.rand(2, 3, 16, 16)).shape == (2, 4)
    with pytest.raises(ConfigError) as exc:
        compose_settings(["model=torchvision", "model.arch=resnet19"])
    assert "model.arch='resnet19' is not allowed" in one_line(exc)


def test_a_pretrain_checkpoint_reloads_to_identical_features(cache_dir, tmp_path):
    settings = settings_for(cache=cache_dir)
    written = write_pretrained(settings, tmp_path / "skip.pt")
    reload = settings_for(f"model.checkpoint={written.path}", cache=cache_dir)
    data = load_dataset(reload.dataset)
    clean = load_clean_model(data, reload.model, ArtifactCache(cache_dir), CPU)
    assert clean.source == "checkpoint" and clean.sha256 == written.sha256
    x = data.test_x[:16]
    with torch.no_grad():
        expected = written.clean.model.eval().features(x)
        assert torch.equal(clean.model.features(x), expected)
        # what the victims and the experiment do to the model keeps its features
        copied = copy.deepcopy(clean.model).requires_grad_(False)
        assert not any(module.training for module in copied.modules())  # still eval mode
        assert torch.equal(copied.features(x), expected)
        copied.train().eval()  # the traced graphs switch with the mode and back
        assert torch.equal(copied.features(x), expected)
        fast = prepare_for_device(copy.deepcopy(clean.model), CPU, amp=True)  # channels-last
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert torch.allclose(fast.features(x).float(), expected, atol=0.05, rtol=0.02)
    assert not any(p.requires_grad for p in copied.parameters())
    assert clean_model_key(data, reload.model, clean.model) != clean_model_key(
        data, settings_for("model.feature_node=add").model, clean.model
    )
