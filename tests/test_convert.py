"""torch_to_npz / npz_to_torch: weights cross between PyTorch checkpoints and our .npz files."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from numpy_resnet import serialization
from numpy_resnet.convert import npz_to_torch, torch_to_npz
from numpy_resnet.models import cifar_resnet

torch = pytest.importorskip("torch")


def torch_state(model):
    return {k: torch.tensor(v) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("wrap", [
    lambda s: s,
    lambda s: {"state_dict": s, "epoch": 3},
    lambda s: {"model": s, "optimizer": {}},
    lambda s: {f"module.{k}": v for k, v in s.items()},
], ids=["raw state_dict", "state_dict key", "model key", "DataParallel prefix"])
def test_torch_checkpoint_converts_and_loads_into_our_model(tmp_path, wrap):
    source = cifar_resnet(8, width=4)
    for p in source.parameters():
        p.data += 1.0
    torch.save(wrap(torch_state(source)), tmp_path / "model.pth")
    arrays = torch_to_npz(tmp_path / "model.pth", tmp_path / "model.npz")
    assert list(arrays) == list(source.state_dict())
    target = cifar_resnet(8, width=4)
    serialization.load_into(target, tmp_path / "model.npz")
    for key, value in source.state_dict().items():
        np.testing.assert_array_equal(target.state_dict()[key], value)


def test_npz_converts_to_a_torch_state_dict_of_tensors(tmp_path):
    model = cifar_resnet(8, width=4)
    serialization.save(model, tmp_path / "model.npz")
    npz_to_torch(tmp_path / "model.npz", tmp_path / "model.pth")
    state = torch.load(tmp_path / "model.pth", weights_only=True)
    assert list(state) == list(model.state_dict())
    assert state["bn1.num_batches_tracked"].dtype == torch.int64
    assert state["conv1.weight"].dtype == torch.float32
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(state[key].numpy(), value)


def test_non_tensor_entries_are_reported_by_key(tmp_path):
    torch.save({"conv1.weight": torch.zeros(2), "note": "hello"}, tmp_path / "odd.pth")
    with pytest.raises(TypeError, match="'note'"):
        torch_to_npz(tmp_path / "odd.pth", tmp_path / "odd.npz")


def test_missing_torch_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)         # import torch now fails
    with pytest.raises(ImportError, match="needs PyTorch"):
        torch_to_npz(tmp_path / "a.pth", tmp_path / "a.npz")
