"""save / load / load_into and checkpoints: .npz round trips, atomic writes, no pickle, and
bad files refused in one line naming the file, with nothing loaded."""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import zipfile

import numpy as np
import pytest

from numpy_resnet import checkpoint, serialization
from numpy_resnet.models import cifar_resnet
from numpy_resnet.optim import SGD, WarmupCosine


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


# ----- bad files: one line naming the file, and nothing loaded ------------------------------
def good_npz_bytes() -> bytes:
    """A real checkpoint of the model the tests load into, as bytes to cut and corrupt."""
    buffer = io.BytesIO()
    model = trained_looking(cifar_resnet(8, width=4))
    state = checkpoint._prefixed("model", model.state_dict())
    state["meta"] = np.array(json.dumps({"epoch": 1}))
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for key, array in state.items():
            with archive.open(key + ".npy", "w") as member:
                np.lib.format.write_array(member, array)
    return buffer.getvalue()


def flipped(data: bytes, at: int) -> bytes:
    """`data` with the byte at `at` inverted."""
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at:][1:]


def last_byte_of_first_member(data: bytes) -> int:
    member = zipfile.ZipFile(io.BytesIO(data)).infolist()[0]
    local_header = 30 + len(member.filename.encode()) + len(member.extra)
    return member.header_offset + local_header + member.compress_size - 1


def compressed_npz_bytes() -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x=np.arange(1000.0))
    return buffer.getvalue()


def zip_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def pickled_object_array() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.array([{"a": 1}], dtype=object))    # needs pickle to read
    return buffer.getvalue()


def lone_npy() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.arange(3.0))
    return buffer.getvalue()


# id: (the file's bytes, or None for no file, or "folder"; error type; words in the message)
BAD_NPZ = {
    "missing": (None, FileNotFoundError, ""),
    "a folder": ("folder", OSError, ""),
    "zero bytes": (lambda: b"", ValueError, "empty file (0 bytes)"),
    "cut in half": (lambda: good_npz_bytes()[:len(good_npz_bytes()) // 2], ValueError,
                    "truncated or corrupt"),
    "last 10 bytes cut": (lambda: good_npz_bytes()[:-10], ValueError, "truncated or corrupt"),
    "only a zip signature": (lambda: b"PK\x03\x04", ValueError, "truncated or corrupt"),
    "a byte flipped in an array": (lambda: flipped(good_npz_bytes(),
                                                   last_byte_of_first_member(good_npz_bytes())),
                                   ValueError, "'model.conv1.weight' cannot be read: Bad CRC-32"),
    "a byte flipped in the zip directory": (lambda: flipped(good_npz_bytes(), -10), ValueError,
                                            "truncated or corrupt"),
    "compressed, a byte flipped": (lambda: flipped(compressed_npz_bytes(), 100),
                                   ValueError, "'x' cannot be read"),
    "text": (lambda: b"conv1.weight = [1, 2, 3]\n", ValueError, "not an .npz archive"),
    "random bytes": (lambda: np.random.default_rng(0).bytes(500), ValueError, "not an .npz archive"),
    "a lone .npy": (lone_npy, ValueError, "a single .npy array"),
    "a pickle": (lambda: pickle.dumps({"conv1.weight": [1.0]}), ValueError, "a Python pickle"),
    "a pickled object array": (pickled_object_array, ValueError, "'meta' cannot be read"),
    "a PyTorch .pth (zip)": (lambda: zip_of({"model/data.pkl": b"\x80\x02}q\x00.", "model/version": b"3"}),
                             ValueError, "a PyTorch .pth"),
    "a zip of text files": (lambda: zip_of({"readme.txt": b"hello"}), ValueError, "is not a .npy file"),
    "a corrupt .npy header": (lambda: zip_of({"meta.npy": b"\x93NUMPY\x01\x00junk"}), ValueError,
                              "'meta' cannot be read"),
}


def write_bad_file(tmp_path, content):
    path = tmp_path / "bad.npz"
    if content == "folder":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content())
    return path


def npz_to_torch(path):
    pytest.importorskip("torch")
    from numpy_resnet.convert import npz_to_torch
    npz_to_torch(path, path.parent / "out.pth")


# Every reader of .npz files goes through serialization.load.
READERS = {
    "load": serialization.load,
    "load_into": lambda path: serialization.load_into(cifar_resnet(8, width=4), path),
    "read_checkpoint": checkpoint.read_checkpoint,
    "npz_to_torch": npz_to_torch,
}


@pytest.mark.parametrize("reader", READERS.values(), ids=READERS.keys())
@pytest.mark.parametrize("content, error, words", BAD_NPZ.values(), ids=BAD_NPZ.keys())
def test_a_bad_file_raises_one_line_naming_it(tmp_path, reader, content, error, words):
    path = write_bad_file(tmp_path, content)
    with pytest.raises(error) as err:
        reader(path)
    message = str(err.value)
    assert str(path) in message and words in message, message
    assert "\n" not in message
    assert not (tmp_path / "out.pth").exists()


def test_the_good_file_the_bad_ones_are_cut_from_loads(tmp_path):
    path = tmp_path / "good.npz"
    path.write_bytes(good_npz_bytes())
    state, meta = checkpoint.read_checkpoint(path)
    assert meta == {"epoch": 1}
    checkpoint.restore(state, cifar_resnet(8, width=4))


@pytest.mark.parametrize("content, error, words",
                         [row for key, row in BAD_NPZ.items() if key not in ("missing", "a folder")],
                         ids=[key for key in BAD_NPZ if key not in ("missing", "a folder")])
def test_load_into_from_a_bad_file_changes_nothing(tmp_path, content, error, words):
    model = trained_looking(cifar_resnet(8, width=4))
    before = snapshot(model)
    with pytest.raises(error):
        serialization.load_into(model, write_bad_file(tmp_path, content))
    assert snapshot(model) == before


def snapshot(model) -> dict:
    """Every parameter, gradient and buffer as (dtype, shape, bytes)."""
    arrays = {f"{key} data": p.data for key, p in model.named_parameters()}
    arrays |= {f"{key} grad": p.grad for key, p in model.named_parameters()}
    arrays |= dict(model.named_buffers())
    return {key: (a.dtype, a.shape, a.tobytes()) for key, a in arrays.items()}


def test_a_string_array_late_in_the_file_names_key_and_file_and_loads_nothing(tmp_path):
    """The half-load of issue 18: the cast used to fail on this key after the others loaded."""
    state = trained_looking(cifar_resnet(8, width=4)).state_dict()
    state["fc.bias"] = np.array(["0.5"] * state["fc.bias"].size)     # no pickle needed
    serialization.save(state, tmp_path / "strings.npz")
    model = trained_looking(cifar_resnet(8, width=4))
    for p in model.parameters():
        p.data += 1                                                    # unlike the file's values
    before = snapshot(model)
    with pytest.raises(ValueError) as err:
        serialization.load_into(model, tmp_path / "strings.npz")
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'strings.npz'}: ResNet.load_state_dict: ")
    assert "'fc.bias' holds strings (<U3)" in message and "nothing was loaded" in message
    assert snapshot(model) == before


def test_load_into_accepts_a_file_without_num_batches_tracked(tmp_path):
    source = trained_looking(cifar_resnet(8, width=4))
    state = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    serialization.save(state, tmp_path / "old.npz")
    model = cifar_resnet(8, width=4)
    assert serialization.load_into(model, tmp_path / "old.npz") == ([], [])
    for key, value in model.state_dict().items():
        expected = 0 if key.endswith("num_batches_tracked") else source.state_dict()[key]
        np.testing.assert_array_equal(value, expected)


# ----- checkpoints -----------------------------------------------------------------------
def write_checkpoint(tmp_path, meta=None):
    model = trained_looking(cifar_resnet(8, width=4))
    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = WarmupCosine(optimizer, warmup_steps=2, total_steps=10)
    model(np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32))
    model.backward(np.ones((2, 10), np.float32))
    optimizer.step()
    scheduler.step()
    checkpoint.save_checkpoint(tmp_path / "checkpoint.npz", model, optimizer, scheduler,
                               meta={"epoch": 1} if meta is None else meta)
    return tmp_path / "checkpoint.npz"


@pytest.mark.parametrize("meta, words", [
    (None, "not a training checkpoint (no 'meta' entry)"),
    ("{'epoch': 1", "'meta' entry is not valid JSON"),
    ("[1, 2]", "'meta' entry is a JSON list, expected an object"),
    ("", "'meta' entry is not valid JSON"),
], ids=["weights, no meta", "meta not JSON", "meta a list", "meta empty"])
def test_read_checkpoint_refuses_a_file_that_is_not_a_checkpoint(tmp_path, meta, words):
    state = dict(serialization.load(write_checkpoint(tmp_path)))
    if meta is None:
        del state["meta"]
    else:
        state["meta"] = np.array(meta)
    serialization.save(state, tmp_path / "bad.npz")
    with pytest.raises(ValueError) as err:
        checkpoint.read_checkpoint(tmp_path / "bad.npz")
    assert str(err.value).startswith(f"{tmp_path / 'bad.npz'}: ") and words in str(err.value)


def live_objects():
    model = cifar_resnet(8, width=4)
    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9)
    return model, optimizer, WarmupCosine(optimizer, warmup_steps=2, total_steps=10)


def everything(model, optimizer, scheduler) -> dict:
    """The objects' whole state, as bytes, to compare before and after."""
    state = {**checkpoint._prefixed("model", model.state_dict()),
             **checkpoint._prefixed("optim", optimizer.state_dict()),
             **checkpoint._prefixed("sched", scheduler.state_dict())}
    state |= {f"{key} grad": p.grad for key, p in model.named_parameters()}
    return {key: (a.dtype, a.shape, a.tobytes()) for key, a in state.items()}


@pytest.mark.parametrize("spoil, words", [
    (lambda s: s.update({"model.fc.bias": np.array(["x"] * 10)}), "'fc.bias' holds strings"),
    (lambda s: s.update({"optim.param_groups.1.params": np.array([0])}), "parameter groups"),
    (lambda s: s.update({"optim.state.0.momentum_buffer": np.zeros(3)}), "has shape (3,)"),
    (lambda s: s.update({"optim.junk": np.zeros(1)}), "unexpected key 'junk'"),
], ids=["model part", "optimizer groups", "optimizer state shape", "optimizer key"])
def test_restore_is_all_or_nothing_across_model_optimizer_and_schedule(tmp_path, spoil, words):
    state, _ = checkpoint.read_checkpoint(write_checkpoint(tmp_path))
    spoil(state)
    objects = live_objects()
    before = everything(*objects)
    with pytest.raises(ValueError, match=re.escape(words)):
        checkpoint.restore(state, *objects)
    assert everything(*objects) == before


def test_restore_of_a_good_checkpoint_brings_back_every_part(tmp_path):
    state, _ = checkpoint.read_checkpoint(write_checkpoint(tmp_path))
    objects = live_objects()
    checkpoint.restore(state, *objects)
    saved = {key: (v.dtype, v.shape, v.tobytes()) for key, v in state.items()}
    restored = {key: v for key, v in everything(*objects).items() if not key.endswith(" grad")}
    assert restored == saved
