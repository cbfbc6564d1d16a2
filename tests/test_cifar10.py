"""numpy_resnet.data: the binary reader, balanced subsets, transforms, Loader, download."""

from __future__ import annotations

import io
import shutil
import socket
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from numpy_resnet.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    Loader,
    balanced_subset,
    channel_stats,
    cifar10,
    class_quotas,
    download_url,
    find_data_dir,
    iterate_batches,
    load_cifar10,
    md5sum,
    normalize,
    random_crop,
    random_hflip,
    read_batch,
    read_classes,
    safe_extract,
)
from numpy_resnet.seeding import manual_seed

# Images per class (train, test) of the shared subset and of the full data set.
CLASS_COUNTS = {
    5170: ([521, 534, 497, 505, 540, 484, 515, 524, 537, 513],
           [105, 93, 100, 104, 92, 87, 114, 102, 110, 110]),
    50000: ([5000] * 10, [1000] * 10),
}
FILES = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]


def write_batch(path, labels, seed=0):
    """A binary file of len(labels) random images: label byte, then 3072 pixel bytes."""
    rng = np.random.default_rng(seed)
    records = rng.integers(0, 256, size=(len(labels), 3073), dtype=np.uint8)
    records[:, 0] = labels
    path.write_bytes(records.tobytes())
    return records


def make_folder(root, n=4):
    """root/cifar-10-batches-bin with six small batch files and the class names."""
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for i, name in enumerate(FILES):
        write_batch(folder / name, np.arange(n) % 10, seed=i)
    (folder / "batches.meta.txt").write_text("\n".join(cifar10.CLASSES) + "\n\n")
    return folder


# ----- the real subset ---------------------------------------------------------------
@pytest.fixture(scope="module")
def cifar(cifar_dir):
    return load_cifar10(cifar_dir, download=False)


def test_real_subset_has_the_expected_sizes_and_class_counts(cifar):
    data = cifar
    if len(data.y_train) not in CLASS_COUNTS:
        pytest.skip(f"class counts known for the shared subset and the full set, not for "
                    f"{len(data.y_train)} training images")
    train_counts, test_counts = CLASS_COUNTS[len(data.y_train)]
    assert data.x_train.shape == (sum(train_counts), 3, 32, 32)
    assert data.x_train.dtype == np.uint8 and data.y_train.dtype == np.int64
    assert data.x_test.shape == (sum(test_counts), 3, 32, 32) and data.y_test.dtype == np.int64
    assert np.bincount(data.y_train).tolist() == train_counts
    assert np.bincount(data.y_test).tolist() == test_counts
    assert data.classes[0] == "airplane" and data.classes[9] == "truck"


def test_real_subset_first_records_decode_as_label_then_chw_pixels(cifar_dir):
    images, labels = read_batch(cifar_dir / "data_batch_1.bin")
    raw = np.fromfile(cifar_dir / "data_batch_1.bin", dtype=np.uint8)
    assert labels[:5].tolist() == [6, 9, 9, 4, 1]  # frog, truck, truck, deer, automobile
    assert images[0, 0, 0, :5].tolist() == [59, 43, 50, 68, 98]
    assert images[0, 1, 0, 0] == raw[1 + 1024]             # green plane starts at byte 1025
    assert images[0, 2, 31, 31] == raw[3072]               # last blue pixel ends the record
    assert images[1, 0, 0, 0] == raw[3073 + 1]             # next record, after its label
    _, test_labels = read_batch(cifar_dir / "test_batch.bin")
    assert test_labels[:3].tolist() == [3, 8, 8]


def test_data_dir_may_be_the_batches_folder_or_its_parent(cifar_dir):
    assert find_data_dir(cifar_dir, download=False) == cifar_dir
    assert find_data_dir(cifar_dir.parent, download=False) == cifar_dir


def test_env_var_is_used_when_no_data_dir_is_given(cifar_dir, monkeypatch):
    monkeypatch.setenv("NUMPY_RESNET_DATA", str(cifar_dir.parent))
    assert find_data_dir(download=False) == cifar_dir


def test_missing_data_without_download_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-bin"):
        find_data_dir(tmp_path, download=False)


# ----- corrupt files -------------------------------------------------------------------
def test_file_size_not_a_multiple_of_3073_is_rejected(tmp_path):
    path = tmp_path / "data_batch_1.bin"
    path.write_bytes(bytes(2 * 3073 + 5))
    with pytest.raises(ValueError, match=r"data_batch_1\.bin.*6151.*3073"):
        read_batch(path)


def test_label_outside_0_to_9_is_rejected(tmp_path):
    path = tmp_path / "test_batch.bin"
    write_batch(path, [3, 10, 2])
    with pytest.raises(ValueError, match=r"test_batch\.bin: record 1 has label 10"):
        read_batch(path)


def test_short_files_are_read_in_full(tmp_path):
    records = write_batch(tmp_path / "b.bin", [0, 1, 2, 9, 5])
    images, labels = read_batch(tmp_path / "b.bin")
    assert labels.tolist() == [0, 1, 2, 9, 5]
    np.testing.assert_array_equal(images.reshape(5, -1), records[:, 1:])


# ----- balanced subsets ------------------------------------------------------------------
def test_quotas_are_equal_and_the_remainder_goes_to_the_lowest_labels():
    assert class_quotas(np.full(10, 200), 1003).tolist() == [101] * 3 + [100] * 7


def test_a_short_class_gives_its_share_to_the_others():
    available = np.array([5] + [100] * 9)
    assert class_quotas(available, 100).tolist() == [5] + [11] * 5 + [10] * 4
    assert class_quotas(available, 905).tolist() == available.tolist()


def test_subset_is_balanced_in_file_order_and_seeded(cifar_dir, cifar):
    full = cifar
    a = load_cifar10(cifar_dir, train_size=1000, test_size=1000, seed=3, download=False)
    assert np.bincount(a.y_train).tolist() == [100] * 10
    test_counts = np.bincount(full.y_test)        # the subset has only 87 dogs, 92 deer...
    expected = class_quotas(test_counts, 1000)    # ...so the larger classes make up for them
    assert np.bincount(a.y_test).tolist() == expected.tolist()
    if len(full.y_test) == 1017:
        assert expected.tolist() == [105, 93, 100, 104, 92, 87, 106, 102, 106, 105]
    keep = balanced_subset(full.y_train, 1000, seed=3)
    assert np.all(np.diff(keep) > 0)                                  # file order
    np.testing.assert_array_equal(a.x_train, full.x_train[keep])
    again = load_cifar10(cifar_dir, train_size=1000, seed=3, download=False)
    np.testing.assert_array_equal(again.x_train, a.x_train)
    other = load_cifar10(cifar_dir, train_size=1000, seed=4, download=False)
    assert not np.array_equal(other.x_train, a.x_train)


def test_subset_larger_than_the_files_is_an_error(cifar_dir, cifar):
    n = len(cifar.y_train)
    with pytest.raises(ValueError, match=f"train_size={n + 1}.*{n}"):
        load_cifar10(cifar_dir, train_size=n + 1, download=False)


# ----- normalisation and augmentation ---------------------------------------------------
def test_normalize_gives_float32_zero_mean_unit_std_per_channel(cifar):
    x = cifar.x_train
    mean, std = channel_stats(x)
    np.testing.assert_allclose(mean, CIFAR10_MEAN, atol=0.01)    # the subset looks like the whole
    np.testing.assert_allclose(std, CIFAR10_STD, atol=0.01)
    z = normalize(x, mean, std)
    assert z.dtype == np.float32 and z.shape == x.shape
    np.testing.assert_allclose(z.mean(axis=(0, 2, 3)), 0, atol=1e-4)
    np.testing.assert_allclose(z.std(axis=(0, 2, 3)), 1, atol=1e-4)
    assert z[0, 1, 2, 3] == pytest.approx((x[0, 1, 2, 3] / 255 - mean[1]) / std[1], rel=1e-5)


def test_normalize_rejects_float_images():
    with pytest.raises(ValueError, match="uint8"):
        normalize(np.zeros((1, 3, 32, 32), np.float32))


def test_random_crop_is_a_window_of_the_zero_padded_image():
    rng = np.random.default_rng(0)
    x = rng.integers(1, 256, size=(16, 3, 8, 10), dtype=np.uint8)
    out = random_crop(x, padding=2, rng=rng)
    assert out.shape == x.shape and out.dtype == x.dtype
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    for n in range(len(x)):
        windows = [padded[n, :, i:i + 8, j:j + 10] for i in range(5) for j in range(5)]
        assert any(np.array_equal(out[n], w) for w in windows)
    assert not np.array_equal(out, x)
    np.testing.assert_array_equal(random_crop(x, padding=0, rng=rng), x)


def test_random_hflip_mirrors_some_images_and_leaves_the_rest():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(64, 3, 4, 4), dtype=np.uint8)
    out = random_hflip(x, rng=rng)
    flipped = np.array([np.array_equal(o, xi[:, :, ::-1]) for o, xi in zip(out, x, strict=True)])
    same = np.array([np.array_equal(o, xi) for o, xi in zip(out, x, strict=True)])
    assert np.all(flipped | same) and flipped.any() and same.any()
    np.testing.assert_array_equal(random_hflip(x, rng=rng, p=1.0), x[..., ::-1])
    np.testing.assert_array_equal(random_hflip(x, rng=rng, p=0.0), x)


# ----- Loader --------------------------------------------------------------------------
def small_set(n=50):
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8), np.arange(n) % 10


def test_loader_batches_cover_every_image_once():
    x, y = small_set()
    loader = Loader(x, y, batch_size=16, seed=0)
    batches = list(loader)
    assert len(loader) == len(batches) == 4
    assert [len(yb) for _, yb in batches] == [16, 16, 16, 2]
    assert batches[0][0].dtype == np.float32 and batches[0][1].dtype == np.int64
    images = np.concatenate([xb for xb, _ in batches])
    np.testing.assert_allclose(np.sort(images.ravel()), np.sort(normalize(x).ravel()))
    assert len(Loader(x, y, 16, drop_last=True)) == len(list(Loader(x, y, 16, drop_last=True))) == 3


def test_loader_with_augmentation_keeps_labels_and_shapes_and_changes_images():
    x, y = small_set()
    plain = list(Loader(x, y, 50, shuffle=False))
    augmented = list(Loader(x, y, 50, shuffle=False, augment=True))
    np.testing.assert_array_equal(augmented[0][1], y)
    assert augmented[0][0].shape == plain[0][0].shape
    assert not np.array_equal(augmented[0][0], plain[0][0])


def test_iterate_batches_is_repeatable_from_its_generator():
    x, y = small_set()
    first = list(iterate_batches(x, y, 16, rng=np.random.default_rng(5), augment=True))
    again = list(iterate_batches(x, y, 16, rng=np.random.default_rng(5), augment=True))
    for (xa, ya), (xb, yb) in zip(first, again, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    raw = next(iterate_batches(x, y, 50, shuffle=False, mean=None, std=None))[0]
    np.testing.assert_array_equal(raw, x.astype(np.float32))


def test_loader_without_a_seed_follows_the_library_generator():
    x, y = small_set()
    manual_seed(11)
    a = next(iter(Loader(x, y, 8, seed=None)))[1]
    manual_seed(11)
    b = next(iter(Loader(x, y, 8, seed=None)))[1]
    np.testing.assert_array_equal(a, b)


def test_an_epoch_depends_only_on_seed_and_epoch():
    x, y = small_set()
    straight = Loader(x, y, 8, augment=True, seed=7)
    epochs = [list(straight) for _ in range(3)]          # epochs 0, 1, 2 in a row
    resumed = Loader(x, y, 8, augment=True, seed=7)
    resumed.set_epoch(2)
    for (xa, ya), (xb, yb) in zip(epochs[2], resumed, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(epochs[0][0][1], epochs[1][0][1])   # a new order each epoch
    other_seed = list(Loader(x, y, 8, augment=True, seed=8))
    assert not np.array_equal(other_seed[0][0], epochs[0][0][0])


# ----- download and extraction ------------------------------------------------------------
def make_archive(tmp_path, name="cifar-10-binary.tar.gz"):
    source = make_folder(tmp_path / "source")
    archive = tmp_path / name
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source, arcname="cifar-10-batches-bin")
    return archive


def serve(monkeypatch, archive, md5=None):
    monkeypatch.setattr(cifar10, "CIFAR10_URL", archive.as_uri())
    monkeypatch.setattr(cifar10, "CIFAR10_MD5", md5 or md5sum(archive))


def test_download_fetches_checks_and_unpacks_then_cleans_up(tmp_path, monkeypatch):
    serve(monkeypatch, make_archive(tmp_path))
    root = tmp_path / "root"
    folder = find_data_dir(root, download=True)
    assert folder == root / "cifar-10-batches-bin"
    data = load_cifar10(root, download=False)
    assert data.x_train.shape == (20, 3, 32, 32) and data.x_test.shape == (4, 3, 32, 32)
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-batches-bin"]


def test_without_data_dir_or_env_the_cache_folder_is_used(tmp_path, monkeypatch):
    serve(monkeypatch, make_archive(tmp_path))
    monkeypatch.delenv("NUMPY_RESNET_DATA", raising=False)
    monkeypatch.setenv("NUMPY_RESNET_CACHE", str(tmp_path / "cache"))
    assert find_data_dir() == tmp_path / "cache" / "cifar-10-batches-bin"
    assert find_data_dir(download=False) == tmp_path / "cache" / "cifar-10-batches-bin"


def test_bad_md5_is_an_error_and_leaves_no_partial_file(tmp_path, monkeypatch):
    serve(monkeypatch, make_archive(tmp_path), md5="0" * 32)
    root = tmp_path / "root"
    with pytest.raises(ValueError, match="MD5"):
        find_data_dir(root, download=True)
    assert list(root.iterdir()) == []


def test_download_url_writes_through_a_part_file(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(b"numpy-resnet" * 1000)
    dest = download_url(source.as_uri(), tmp_path / "out" / "copy.bin", md5=md5sum(source))
    assert dest.read_bytes() == source.read_bytes()
    assert not (tmp_path / "out" / "copy.bin.part").exists()


def tar_with(tmp_path, member: tarfile.TarInfo):
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        ok = tarfile.TarInfo("fine.txt")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"ok"))
        tar.addfile(member, io.BytesIO(b"x" * member.size))
    return archive


def evil_members():
    dotdot = tarfile.TarInfo("cifar-10-batches-bin/../../evil")
    absolute = tarfile.TarInfo("/tmp/numpy_resnet_evil")
    symlink = tarfile.TarInfo("cifar-10-batches-bin/link")
    symlink.type, symlink.linkname = tarfile.SYMTYPE, "/etc/passwd"
    hardlink = tarfile.TarInfo("hard")
    hardlink.type, hardlink.linkname = tarfile.LNKTYPE, "../outside"
    for member in (dotdot, absolute):
        member.size = 1
    return [dotdot, absolute, symlink, hardlink]


@pytest.mark.parametrize("member", evil_members(),
                         ids=["dotdot", "absolute", "symlink", "hardlink"])
def test_safe_extract_rejects_members_that_escape_the_target(tmp_path, member):
    archive = tar_with(tmp_path, member)
    target = tmp_path / "a" / "b"
    with pytest.raises(ValueError, match="unsafe archive member"):
        safe_extract(archive, target)
    assert list(target.iterdir()) == []                      # nothing written, not even fine.txt
    assert not (tmp_path / "evil").exists()


def test_download_of_a_malicious_archive_is_rejected(tmp_path, monkeypatch):
    archive = tar_with(tmp_path, evil_members()[0])
    serve(monkeypatch, archive)
    root = tmp_path / "x" / "root"
    with pytest.raises(ValueError, match=r"unsafe archive member.*\.\."):
        find_data_dir(root, download=True)
    assert not (tmp_path / "x" / "evil").exists()
    assert not (root / "cifar-10-batches-bin").exists()


# ----- bad data paths and bad files: a clear one-line error, and nothing created ----------
# Each case starts from a copy of the real files in tmp_path/data/cifar-10-batches-bin,
# spoils it, and gives the loader a path as a user would: through data_dir (--data-dir) or
# through $NUMPY_RESNET_DATA. The network is off: any download attempt fails and is recorded.
@pytest.fixture
def offline(tmp_path, monkeypatch):
    """urlopen fails as it does without a network, and records what it was asked for.

    The cache and the working directory are inside tmp_path, so a stray download or folder
    shows up in `tree(tmp_path)`.
    """
    calls = []

    def urlopen(url, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    monkeypatch.setenv("NUMPY_RESNET_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("NUMPY_RESNET_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    return calls


def tree(root):
    """Every path under root with its size (None for folders): what a call created or changed."""
    return {str(p.relative_to(root)): None if p.is_dir() else p.stat().st_size
            for p in root.rglob("*")}


def copy_of(cifar_dir, tmp_path):
    folder = tmp_path / "data" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for file in cifar_dir.iterdir():
        shutil.copyfile(file, folder / file.name)   # copyfile: writable, unlike the originals
    return folder


def edit(name, change):
    """A spoiler that replaces file `name` by change(its bytes) and gives the folder."""
    def spoil(folder):
        path = folder / name
        path.write_bytes(change(path.read_bytes()))
        return folder
    return spoil


def set_byte(offset, value):
    return lambda data: data[:offset] + bytes([value]) + data[offset + 1:]


def remove(name):
    def spoil(folder):
        (folder / name).unlink()
        return folder
    return spoil


def make_empty_folder(folder):
    (folder.parent / "empty").mkdir()
    return folder.parent / "empty"


def batch_as_folder(folder):
    (folder / "data_batch_2.bin").unlink()
    (folder / "data_batch_2.bin").mkdir()
    return folder


def meta_as_folder(folder):
    (folder / "batches.meta.txt").unlink()
    (folder / "batches.meta.txt").mkdir()
    return folder


# (spoil the copy -> the path to give, error type, fragments the message must contain)
BAD_PATHS = [
    pytest.param(lambda f: f.parent.parent / "nowhere" / "at" / "all", FileNotFoundError,
                 ["nowhere/at/all does not exist"], id="nonexistent-path"),
    pytest.param(lambda f: f.with_name("cifar-10-batches-bn"), FileNotFoundError,
                 ["cifar-10-batches-bn does not exist"], id="typo-in-folder-name"),
    pytest.param(lambda f: f / "data_batch_1.bin", NotADirectoryError,
                 ["data_batch_1.bin is a file"], id="path-is-a-file"),
    pytest.param(make_empty_folder, FileNotFoundError,
                 ["missing data_batch_1.bin", "test_batch.bin", "looked in", "empty/cifar-10"],
                 id="empty-folder"),
    pytest.param(remove("test_batch.bin"), FileNotFoundError,
                 ["missing test_batch.bin (looked in"], id="missing-test-batch"),
    pytest.param(lambda f: remove("data_batch_3.bin")(f).parent, FileNotFoundError,
                 ["missing data_batch_3.bin (looked in", "data and ", "/data/cifar-10-batches-bin"],
                 id="parent-folder-missing-batch-3"),
    pytest.param(batch_as_folder, FileNotFoundError, ["missing data_batch_2.bin"],
                 id="batch-is-a-folder"),
]
BAD_FILES = [
    pytest.param(edit("data_batch_1.bin", lambda d: d[:5 * 3073 + 100]), ValueError,
                 ["data_batch_1.bin: size 15465 bytes is not a multiple of 3073"],
                 id="truncated-mid-record"),
    pytest.param(edit("test_batch.bin", lambda d: d + bytes(7)), ValueError,
                 ["test_batch.bin: size", "is not a multiple of 3073"], id="wrong-size"),
    pytest.param(edit("data_batch_4.bin", lambda d: b""), ValueError,
                 ["data_batch_4.bin: empty file"], id="empty-batch"),
    pytest.param(edit("data_batch_5.bin", set_byte(2 * 3073, 10)), ValueError,
                 ["data_batch_5.bin: record 2 has label 10, expected 0..9"], id="label-10"),
    pytest.param(edit("test_batch.bin", set_byte(0, 255)), ValueError,
                 ["test_batch.bin: record 0 has label 255"], id="label-255"),
    pytest.param(edit("batches.meta.txt", lambda d: b"\xff\xfe" + bytes(range(256)) * 4),
                 ValueError, ["batches.meta.txt: not a text file (byte 0"], id="binary-meta"),
    pytest.param(edit("batches.meta.txt", lambda d: b"cat\x00\x01\n" * 10), ValueError,
                 ["batches.meta.txt: class name 'cat\\x00\\x01' holds control characters"],
                 id="meta-control-characters"),
    pytest.param(edit("batches.meta.txt", lambda d: b"\n".join(d.split()[:9])), ValueError,
                 ["batches.meta.txt: expected the 10 class names", "got 9 names"],
                 id="meta-nine-names"),
    pytest.param(meta_as_folder, IsADirectoryError, ["batches.meta.txt"],
                 id="meta-is-a-folder"),
]
SOURCES = {"data_dir": "data_dir / --data-dir", "env": "$NUMPY_RESNET_DATA"}


def load_from(path, given, monkeypatch):
    if given == "env":
        monkeypatch.setenv("NUMPY_RESNET_DATA", str(path))
        return load_cifar10()
    return load_cifar10(path)


def fails_cleanly(path, given, monkeypatch, offline, error, fragments):
    """Load from `path` as a user would; return the one-line message after checking that
    nothing was downloaded, created or changed under tmp_path (cache and cwd included)."""
    tmp_path = Path.cwd()
    before = tree(tmp_path)
    with pytest.raises(error) as info:
        load_from(path, given, monkeypatch)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message
    assert offline == []                            # a given path is never downloaded into
    assert tree(tmp_path) == before                 # no folder, no .part, nothing changed
    return message


@pytest.mark.parametrize("given", SOURCES)
@pytest.mark.parametrize(("spoil", "error", "fragments"), BAD_PATHS)
def test_bad_data_path_says_what_is_missing_where_and_how_to_get_it(
        cifar_dir, tmp_path, monkeypatch, offline, given, spoil, error, fragments):
    path = spoil(copy_of(cifar_dir, tmp_path))
    message = fails_cleanly(path, given, monkeypatch, offline, error, fragments)
    assert f"from {SOURCES[given]})" in message
    assert "point $NUMPY_RESNET_DATA or --data-dir at a cifar-10-batches-bin folder" in message
    assert f"download CIFAR-10 (170 MB) once into {tmp_path / 'cache'}" in message


@pytest.mark.parametrize("given", SOURCES)
@pytest.mark.parametrize(("spoil", "error", "fragments"), BAD_FILES)
def test_bad_data_file_is_named_with_what_was_expected(
        cifar_dir, tmp_path, monkeypatch, offline, given, spoil, error, fragments):
    path = spoil(copy_of(cifar_dir, tmp_path))
    fails_cleanly(path, given, monkeypatch, offline, error, fragments)


def test_the_unspoiled_copy_loads(cifar_dir, tmp_path, offline, cifar):
    """The spoilers above, not the copying, are what the loader rejects."""
    data = load_cifar10(copy_of(cifar_dir, tmp_path))
    np.testing.assert_array_equal(data.y_train, cifar.y_train)
    assert offline == []


def test_read_batch_of_a_folder_names_it(tmp_path):
    (tmp_path / "x.bin").mkdir()
    with pytest.raises(IsADirectoryError, match=r"x\.bin is a folder, expected a CIFAR-10"):
        read_batch(tmp_path / "x.bin")


def test_read_classes_defaults_to_the_standard_names_without_the_file(tmp_path):
    assert read_classes(tmp_path) == list(cifar10.CLASSES)


@pytest.mark.parametrize(("sizes", "fragment"), [
    ({"train_size": 0}, "train_size must be a whole number of images from 1 to"),
    ({"train_size": -5}, "got -5"),
    ({"test_size": 2.5}, "test_size must be a whole number"),
    ({"test_size": True}, "got True"),
    ({"test_size": 10**6}, "test_size=1000000, but the test files hold only"),
], ids=["train-0", "train-negative", "test-fraction", "test-bool", "test-too-many"])
def test_bad_subset_sizes_are_one_line_value_errors(cifar_dir, sizes, fragment):
    with pytest.raises(ValueError) as info:
        load_cifar10(cifar_dir, **sizes)
    assert fragment in str(info.value) and "\n" not in str(info.value)


# ----- a failed download: one line with the URL, where it was going and the alternative ---
def http_404(url):
    return urllib.error.HTTPError(url, 404, "Not Found", None, None)


@pytest.mark.parametrize(("failure", "reason"), [
    (lambda url: urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name "
                                                           "resolution")),
     "Temporary failure in name resolution"),
    (lambda url: urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")),
     "Connection refused"),
    (http_404, "HTTP 404 Not Found"),
    (lambda url: TimeoutError("timed out"), "timed out"),
], ids=["offline", "refused", "http-404", "timeout"])
def test_failed_download_into_the_cache_is_one_line_and_creates_no_folder(
        tmp_path, monkeypatch, offline, failure, reason):
    def urlopen(url, *args, **kwargs):
        offline.append(url)
        raise failure(url)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    with pytest.raises(OSError) as info:
        load_cifar10()                                        # nothing given: the cache
    message = str(info.value)
    assert "\n" not in message
    assert f"could not download {cifar10.CIFAR10_URL} into {tmp_path / 'cache'}" in message
    assert reason in message and "$NUMPY_RESNET_DATA" in message
    assert offline == [cifar10.CIFAR10_URL]
    assert tree(tmp_path) == {}                                # not even the cache folder


def test_explicit_download_into_a_given_path_fails_cleanly_offline(tmp_path, offline):
    root = tmp_path / "new" / "data"
    with pytest.raises(OSError, match=f"could not download .* into {root}"):
        find_data_dir(root, download=True)
    assert offline == [cifar10.CIFAR10_URL]
    assert tree(tmp_path) == {}


class DroppedConnection(io.BytesIO):
    """A response that sends 1 MiB, then fails as a reset connection does."""

    headers = {"Content-Length": str(170 << 20)}

    def read(self, size=-1):
        if self.tell() >= 1 << 20:
            raise ConnectionResetError(104, "Connection reset by peer")
        return super().read(size)


def test_a_dropped_download_leaves_no_partial_file(tmp_path, monkeypatch, offline):
    monkeypatch.setattr(urllib.request, "urlopen",
                        lambda url, *a, **k: DroppedConnection(bytes(2 << 20)))
    with pytest.raises(OSError, match="failed: .*Connection reset by peer.*partial file was "
                                      "deleted.*NUMPY_RESNET_DATA") as info:
        load_cifar10()
    assert "\n" not in str(info.value)
    assert tree(tmp_path) == {"cache": None}                   # the cache folder, empty


def test_default_download_never_fetches_into_a_given_path_even_online(tmp_path, monkeypatch):
    serve(monkeypatch, make_archive(tmp_path))                 # a working "server"
    monkeypatch.setenv("NUMPY_RESNET_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("NUMPY_RESNET_DATA", str(tmp_path / "mistyped"))
    before = tree(tmp_path)
    with pytest.raises(FileNotFoundError, match="mistyped does not exist"):
        load_cifar10()
    with pytest.raises(FileNotFoundError, match="mistyped does not exist"):
        load_cifar10(tmp_path / "mistyped")
    assert tree(tmp_path) == before
