"""Checkpoint files: written atomically with a SHA-256 sidecar, refused when the bytes differ."""

from __future__ import annotations

import json

import pytest
import torch

from frogs.errors import ConfigError
from frogs.store.checkpoint import load_checkpoint, save_checkpoint, sidecar_path

STATE = {"layer.weight": torch.arange(6.0).view(2, 3), "layer.bias": torch.zeros(2)}
META = {"model": {"name": "tiny"}, "test_accuracy": 0.5}


def test_round_trip_with_sidecar(tmp_path):
    path = tmp_path / "sub" / "clean.pt"
    digest = save_checkpoint(path, STATE, META)
    assert sidecar_path(path) == tmp_path / "sub" / "clean.pt.sha256.json"
    assert json.loads(sidecar_path(path).read_text()) == {"sha256": digest, "meta": META}
    state, meta, loaded_digest = load_checkpoint(path, expected_sha256=digest)
    assert loaded_digest == digest and meta == META
    assert state.keys() == STATE.keys()
    assert all(torch.equal(state[k], STATE[k]) for k in STATE)
    assert not list(path.parent.glob(".*.tmp"))  # no temporary files left behind


def test_a_flipped_byte_is_refused(tmp_path):
    path = tmp_path / "clean.pt"
    save_checkpoint(path, STATE, META)
    payload = bytearray(path.read_bytes())
    payload[len(payload) // 2] ^= 0xFF
    path.write_bytes(bytes(payload))
    with pytest.raises(ConfigError, match=r"model\.checkpoint=.*corrupt"):
        load_checkpoint(path)


def test_a_wrong_pin_is_refused(tmp_path):
    path = tmp_path / "clean.pt"
    save_checkpoint(path, STATE, META)
    with pytest.raises(ConfigError, match=r"model\.checkpoint_sha256 expects 0000"):
        load_checkpoint(path, expected_sha256="0" * 64)


def test_missing_file_or_sidecar_is_one_clear_line(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_checkpoint(tmp_path / "absent.pt")
    path = tmp_path / "clean.pt"
    save_checkpoint(path, STATE, META)
    sidecar_path(path).unlink()
    with pytest.raises(ConfigError, match=r"no checksum file clean\.pt\.sha256\.json"):
        load_checkpoint(path)


def test_a_garbage_sidecar_is_one_clear_line(tmp_path):
    path = tmp_path / "clean.pt"
    save_checkpoint(path, STATE, META)
    sidecar_path(path).write_text("{not json")
    with pytest.raises(ConfigError, match="unreadable checksum file"):
        load_checkpoint(path)
