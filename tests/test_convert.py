"""torch_to_npz / npz_to_torch: weights cross between PyTorch checkpoints and our .npz files."""

from __future__ import annotations

import argparse
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
    with pytest.raises(ValueError, match="odd.pth: 'note' is of type str, expected a tensor"):
        torch_to_npz(tmp_path / "odd.pth", tmp_path / "odd.npz")
    assert not (tmp_path / "odd.npz").exists()


# ----- bad .pth files: one line naming the file (and the key), nothing written --------------
def saved(obj, **kwargs):
    def write(path):
        torch.save(obj, path, **kwargs)
    return write


def a_good_pth(path):
    torch.save(torch_state(cifar_resnet(8, width=4)), path)


def cut_in_half(path):
    a_good_pth(path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def an_npz(path):
    serialization.save(cifar_resnet(8, width=4), path)


# id: (writes the file, error type, words in the message)
BAD_PTH = {
    "missing": (None, FileNotFoundError, ""),
    "a folder": (lambda path: path.mkdir(), IsADirectoryError, ""),
    "zero bytes": (lambda path: path.write_bytes(b""), ValueError, "empty file (0 bytes)"),
    "cut in half": (cut_in_half, ValueError, "not a PyTorch checkpoint torch.load can read"),
    "text": (lambda path: path.write_text("conv1.weight: [1, 2]"), ValueError,
             "not a PyTorch checkpoint (it starts with b'conv1.we')"),
    "our .npz": (an_npz, ValueError, "not a PyTorch checkpoint torch.load can read"),
    "a pickled class": (saved({"w": torch.zeros(2), "args": argparse.Namespace(lr=0.1)}),
                        ValueError, "holds Python objects (argparse.Namespace)"),
    "a legacy pickled class": (saved({"args": argparse.Namespace(lr=0.1)},
                                     _use_new_zipfile_serialization=False),
                               ValueError, "holds Python objects (argparse.Namespace)"),
    "a lone tensor": (saved(torch.zeros(3)), ValueError,
                      "holds an object of type Tensor, expected a state_dict"),
    "a list of tensors": (saved([torch.zeros(3)]), ValueError,
                          "holds an object of type list, expected a state_dict"),
    "a number among tensors": (saved({"w": torch.zeros(2), "epoch": 3}), ValueError,
                               "'epoch' is of type int, expected a tensor"),
    "a nested dict": (saved({"w": torch.zeros(2), "extra": {"b": torch.zeros(1)}}), ValueError,
                      "'extra' is of type dict, expected a tensor"),
    "a bfloat16 tensor": (saved({"w": torch.zeros(2, dtype=torch.bfloat16)}), ValueError,
                          "'w' is a torch.bfloat16 tensor NumPy cannot hold"),
}


@pytest.mark.parametrize("write, error, words", BAD_PTH.values(), ids=BAD_PTH.keys())
def test_a_bad_pth_raises_one_line_naming_it_and_writes_nothing(tmp_path, write, error, words):
    path = tmp_path / "bad.pth"
    if write is not None:
        write(path)
    with pytest.raises(error) as err:
        torch_to_npz(path, tmp_path / "out.npz")
    message = str(err.value)
    assert str(path) in message and words in message, message
    assert "\n" not in message
    assert not (tmp_path / "out.npz").exists()


@pytest.mark.parametrize("array, words", [
    (np.array(["1.5", "2"]), "'w' is a <U3 array PyTorch cannot hold"),
    (np.array(["2020-01-01"], dtype="datetime64[D]"), "'w' is a datetime64[D] array"),
    (np.arange(3, dtype=">f4"), "'w' is a >f4 array"),
], ids=["strings", "dates", "big-endian floats"])
def test_an_npz_array_torch_cannot_hold_is_named_and_nothing_is_written(tmp_path, array, words):
    serialization.save({"ok": np.zeros(2), "w": array}, tmp_path / "odd.npz")
    with pytest.raises(ValueError) as err:
        npz_to_torch(tmp_path / "odd.npz", tmp_path / "odd.pth")
    assert str(err.value).startswith(f"{tmp_path / 'odd.npz'}: ") and words in str(err.value)
    assert not (tmp_path / "odd.pth").exists()


def test_a_converted_complex_tensor_is_refused_by_key_and_file_when_loaded(tmp_path):
    state = torch_state(cifar_resnet(8, width=4))
    state["fc.bias"] = state["fc.bias"].to(torch.complex64)
    torch.save(state, tmp_path / "complex.pth")
    torch_to_npz(tmp_path / "complex.pth", tmp_path / "complex.npz")
    model = cifar_resnet(8, width=4)
    before = {k: v.tobytes() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="complex.npz: ResNet.load_state_dict: 'fc.bias' holds "
                                         "complex numbers"):
        serialization.load_into(model, tmp_path / "complex.npz")
    assert {k: v.tobytes() for k, v in model.state_dict().items()} == before


def test_an_older_torchvision_save_without_num_batches_tracked_loads_strictly_as_in_pytorch(tmp_path):
    source = cifar_resnet(8, width=4)
    for p in source.parameters():
        p.data += 1.0
    state = {k: v for k, v in torch_state(source).items() if not k.endswith("num_batches_tracked")}
    theirs = torch.nn.BatchNorm2d(4)
    theirs.load_state_dict({k[len("bn1."):]: v for k, v in state.items() if k.startswith("bn1.")})

    torch.save(state, tmp_path / "old.pth")
    torch_to_npz(tmp_path / "old.pth", tmp_path / "old.npz")
    model = cifar_resnet(8, width=4)
    model.bn1.num_batches_tracked = np.array(5)
    assert serialization.load_into(model, tmp_path / "old.npz", strict=True) == ([], [])
    assert model.bn1.num_batches_tracked == 5 and int(theirs.num_batches_tracked) == 0
    for key, value in source.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            np.testing.assert_array_equal(model.state_dict()[key], value)


def test_missing_torch_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)         # import torch now fails
    with pytest.raises(ImportError, match="needs PyTorch"):
        torch_to_npz(tmp_path / "a.pth", tmp_path / "a.npz")
