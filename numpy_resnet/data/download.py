"""Fetch an archive over HTTP(S), check its MD5 and unpack it without trusting its paths.

    download_url(url, dest, md5) url -> dest, through `dest.part` then a rename, so a file
                                 at `dest` is always complete and verified
    safe_extract(archive, dest)  .tar.gz -> dest, refusing any member that could write
                                 outside dest (absolute paths, `..`, links, devices)

Only the standard library (urllib, hashlib, tarfile) and tqdm for the progress bar.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath

from tqdm import tqdm

CHUNK = 1 << 20  # read and hash 1 MiB at a time


def md5sum(path: str | os.PathLike) -> str:
    """Hex MD5 digest of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_url(url: str, dest: str | os.PathLike, md5: str | None = None,
                 timeout: float = 60) -> Path:
    """Save `url` to `dest` with a progress bar; verify `md5` if given.

    The bytes go to `dest.part` first and are renamed to `dest` only once complete and
    verified. A checksum mismatch deletes the partial file and raises a ValueError; a
    failed connection (offline, refused, an HTTP error, `timeout` seconds of silence)
    raises a one-line OSError naming the URL and `dest`, before any folder is created.
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    try:
        response = urllib.request.urlopen(url, timeout=timeout)
    except OSError as err:  # URLError and HTTPError are OSErrors
        raise OSError(f"could not download {url} into {dest}: {_reason(err)}") from err
    with response:
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(part, "wb") as out:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name) as bar:
                    for chunk in iter(lambda: response.read(CHUNK), b""):
                        out.write(chunk)
                        bar.update(len(chunk))
            if md5 is not None:
                got = md5sum(part)
                if got != md5:
                    raise ValueError(f"download of {url} is corrupt: MD5 {got}, expected "
                                     f"{md5} (the partial file was deleted; try again)")
        except OSError as err:  # the connection dropped, or the disk is full
            part.unlink(missing_ok=True)
            raise OSError(f"download of {url} into {dest} failed: {_reason(err)} "
                          f"(the partial file was deleted)") from err
        except BaseException:
            part.unlink(missing_ok=True)
            raise
    os.replace(part, dest)
    return dest


def _reason(err: OSError) -> str:
    """Why a download failed, in one line: URLError keeps the cause in `.reason`."""
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    reason = getattr(err, "reason", None) or err
    return " ".join(str(reason).split()) or type(reason).__name__


def _check_member(member: tarfile.TarInfo, dest: Path) -> None:
    """Raise if extracting `member` into `dest` could touch anything outside `dest`."""
    name = PurePosixPath(member.name)
    if name.is_absolute() or member.name.startswith("\\"):
        raise ValueError(f"unsafe archive member {member.name!r}: absolute path")
    if ".." in name.parts:
        raise ValueError(f"unsafe archive member {member.name!r}: '..' in path")
    if not (member.isfile() or member.isdir()):
        raise ValueError(f"unsafe archive member {member.name!r}: links and special files "
                         f"are not allowed")
    target = (dest / member.name).resolve()
    if not target.is_relative_to(dest.resolve()):
        raise ValueError(f"unsafe archive member {member.name!r}: resolves to {target}, "
                         f"outside {dest}")


def safe_extract(archive: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Unpack a tar(.gz) into `dest` after checking every member; nothing is written if
    any member is unsafe."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:*") as tar:
        members = tar.getmembers()
        for member in members:
            _check_member(member, dest)
        if hasattr(tarfile, "data_filter"):  # Python >= 3.12 (and security backports)
            tar.extractall(dest, members=members, filter="data")
        else:
            tar.extractall(dest, members=members)
