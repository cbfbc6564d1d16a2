"""save / load / load_into: .npz round trips, atomic writes, and no pickle."""

from __future__ import annotations

import os

import numpy as np
import pytest

from numpy_resnet import serialization
from numpy_resnet.models import cifar_resnet


def trained_looking(model):
    """Weights and running statistics that differ from a fresh model's."""
    rng = np.random.default_rng(0)
    for _, p in model.named_parameters():
        p.data[...] = rng.standard_normal(p.data.shape)
    for m in model.modules():
        for name, b in m._buffers.items():
            m._buffers[name] = (b + rng.integers(1, 5, b.shape)).astype(b.dtype)
    return model


def test_save_then_load_into_a_fresh_model_restores_every_array(tmp_path):
    model = trained_looking(cifar_resnet(8, width=4))
    path = tmp_path / "model.npz"
    serialization.save(model, path)
    fresh = cifar_resnet(8, width=4)
    assert serialization.load_into(fresh, path) == ([], [])
    for (key, ours), (key2, theirs) in zip(model.state_dict().items(), fresh.state_dict().items(),
                                           strict=True):
        assert key == key2
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
        np.testing.assert_array_equal(ours, theirs)


def test_load_keeps_order_dtypes_and_scalar_shapes(tmp_path):
    state = {"b.weight": np.ones((2, 3), np.float32), "a.num_batches_tracked": np.array(7),
             "c": np.arange(4.0)}
    serialization.save(state, tmp_path / "s.npz")
    loaded = serialization.load(tmp_path / "s.npz")
    assert list(loaded) == list(state)
    assert loaded["a.num_batches_tracked"].shape == () and loaded["a.num_batches_tracked"] == 7
    assert loaded["b.weight"].dtype == np.float32


def test_saved_file_is_a_plain_npz_at_exactly_the_given_path(tmp_path):
    path = tmp_path / "weights.bin"                         # no .npz appended
    serialization.save({"x": np.arange(3)}, path)
    with np.load(path) as archive:
        np.testing.assert_array_equal(archive["x"], np.arange(3))
    assert os.listdir(tmp_path) == ["weights.bin"]


def test_failed_save_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    serialization.save({"x": np.zeros(3)}, path)
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(np.lib.format, "write_array", fail)
    with pytest.raises(OSError, match="disk full"):
        serialization.save({"x": np.ones(3), "y": np.ones(2)}, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.npz"]


def test_failed_first_save_creates_no_file(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(np.lib.format, "write_array", fail)
    with pytest.raises(OSError):
        serialization.save({"x": np.ones(3)}, tmp_path / "new.npz")
    assert os.listdir(tmp_path) == []


def test_save_refuses_objects_that_would_need_pickle(tmp_path):
    with pytest.raises(TypeError, match="'meta'"):
        serialization.save({"meta": np.array([{"a": 1}], dtype=object)}, tmp_path / "x.npz")
    assert os.listdir(tmp_path) == []


def test_load_never_unpickles(tmp_path):
    path = tmp_path / "pickled.npz"
    np.savez(path, evil=np.array([{"a": 1}], dtype=object))  # written with pickle
    with pytest.raises(ValueError, match="allow_pickle"):
        serialization.load(path)


def test_load_into_a_different_architecture_fails_and_changes_nothing(tmp_path):
    serialization.save(trained_looking(cifar_resnet(8, width=4)), tmp_path / "small.npz")
    other = cifar_resnet(8, width=8)
    before = other.state_dict()
    with pytest.raises(ValueError, match="shape mismatch"):
        serialization.load_into(other, tmp_path / "small.npz")
    for key, value in other.state_dict().items():
        np.testing.assert_array_equal(value, before[key])


def test_saved_file_gets_the_usual_permissions(tmp_path):
    serialization.save({"x": np.zeros(1)}, tmp_path / "m.npz")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "m.npz").stat().st_mode & 0o777 == 0o666 & ~umask
