"""Fetching pinned files from the package registry with pip itself (no other host is contacted)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from s2vnet.errors import InputError


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pip_download_pinned(requirement: str, filename: str, sha256: str, dest: Path, pip_args: Sequence[str] = ()) -> Path:
    """``pip download`` one distribution into ``dest`` (skipped if present) and check its sha256.

    Args:
        requirement: e.g. ``"totalsegmentator==2.18.0"``.
        filename: the file pip saves, e.g. ``"totalsegmentator-2.18.0.tar.gz"``.
        sha256: the pinned digest; a mismatching file is deleted and reported.
        dest: download folder.
        pip_args: extra ``pip download`` arguments (``--no-binary``, ...).
    """
    target = Path(dest) / filename
    if not target.exists():
        Path(dest).mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", *pip_args, "--dest", str(dest), requirement]
        subprocess.run(cmd, check=True)
    actual = sha256_of(target)
    if actual != sha256:
        target.unlink()
        raise InputError(target, f"sha256 {actual} does not match the pinned {sha256}; deleted, run again")
    return target
