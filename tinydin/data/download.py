"""Downloading data files with integrity checks, shared by MovieLens and Amazon.

A download is written to "<name>.part" and renamed only once complete, so an
interrupted download never looks finished. Archives are extracted into a
temporary folder and moved into place in one rename for the same reason.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

logger = logging.getLogger(__name__)

_CHUNK_BYTES = 1 << 20


def download(url: str, destination: Path, timeout: float = 60.0) -> Path:
    """Download `url` to `destination` through a .part file; raise OSError naming the URL on failure."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    logger.info("downloading %s to %s", url, destination)

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as out:
            shutil.copyfileobj(response, out, _CHUNK_BYTES)
    except (urllib.error.URLError, OSError) as error:
        partial.unlink(missing_ok=True)
        raise OSError(
            f"download of {url} failed ({error}); check the network, or download the "
            f"file by hand and pass its folder as data_dir"
        ) from error

    os.replace(partial, destination)
    return destination


def fetch_text(url: str, timeout: float = 30.0) -> str | None:
    """Return the text at `url`, or None (with a logged warning) when it cannot be fetched."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read().decode("utf-8", errors="replace")
    except (urllib.error.URLError, OSError) as error:
        logger.warning("could not fetch %s (%s)", url, error)
        return None


def md5_of(path: Path) -> str:
    """Hex MD5 digest of a file, read in 1 MiB chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def parse_md5(text: str) -> str | None:
    """Find the 32-hex-digit digest in a checksum file ("<md5>  name" or "MD5 (name) = <md5>")."""
    match = re.search(r"\b[0-9a-fA-F]{32}\b", text)
    return match.group(0).lower() if match else None


def verify_md5(path: Path, checksum_url: str) -> bool:
    """Compare the file's MD5 with the one published at checksum_url.

    Returns True when they match and False when no checksum could be fetched or
    read (the caller then relies on its other checks). Raises ValueError, after
    deleting the file, when they differ.
    """
    text = fetch_text(checksum_url)
    expected = parse_md5(text) if text is not None else None
    if expected is None:
        if text is not None:
            logger.warning("no MD5 digest found in %s; skipping the checksum", checksum_url)
        return False

    actual = md5_of(path)
    if actual != expected:
        Path(path).unlink(missing_ok=True)
        raise ValueError(
            f"MD5 of the downloaded {Path(path).name} is {actual} but {checksum_url} "
            f"publishes {expected}; the download was corrupted or the file changed. "
            f"The file was deleted; run again to download it anew"
        )
    return True


def extract_zip(archive: Path, parent: Path, folder: str, expected: list[str]) -> Path:
    """Check a zip archive and extract its top-level `folder` into parent/folder.

    Checks, before anything is written: the archive opens and every member's CRC
    is right, every name in `expected` exists as folder/name, and no member would
    land outside `parent`. Raises ValueError naming the problem.
    """
    archive = Path(archive)
    parent = Path(parent)
    try:
        with zipfile.ZipFile(archive) as zipped:
            bad_member = zipped.testzip()
            if bad_member is not None:
                raise ValueError(
                    f"{archive}: member {bad_member} fails its CRC check; delete the "
                    f"archive and download it again"
                )
            names = set(zipped.namelist())
            missing = [name for name in expected if f"{folder}/{name}" not in names]
            if missing:
                raise ValueError(
                    f"{archive} lacks {', '.join(folder + '/' + m for m in missing)}; "
                    f"it is not the expected {folder} release"
                )
            for name in names:
                member = PurePosixPath(name)
                if member.is_absolute() or ".." in member.parts:
                    raise ValueError(f"{archive}: member {name!r} would extract outside {parent}")

            staging = parent / f".{folder}.partial"
            shutil.rmtree(staging, ignore_errors=True)
            zipped.extractall(staging)
    except zipfile.BadZipFile as error:
        raise ValueError(
            f"{archive} is not a valid zip archive ({error}); delete it and download again"
        ) from error

    target = parent / folder
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging / folder, target)
    shutil.rmtree(staging, ignore_errors=True)
    return target
