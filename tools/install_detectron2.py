#!/usr/bin/env python
"""Install Detectron2 into the current Python environment, the way this project needs it.

Detectron2 publishes no wheels on PyPI. Three ways in, tried in this order:

1. ``--from PATH``: a Detectron2 the user already has (a source checkout, an sdist or a wheel);
   it is handed to ``pip install`` unchanged.
2. Detectron2 already importable in this environment: nothing to do.
3. The registry wheel ``sal-detectron2==0.7.2`` (upstream Detectron2 of mid-2024 plus a
   CPython-3.10-only ``_C`` extension). It is downloaded with pip, checked against a pinned
   sha256, and re-packed as a pure-Python ``py3-none-any`` wheel: the 3.10 ``.so`` is dropped
   (upstream treats ``_C`` as optional; S2VNet uses none of deform conv, rotated boxes or the
   fast COCO evaluator), the stray top-level ``tools`` package is dropped, the inconsistent WHEEL
   tag is fixed, the ``numpy<2`` pin is relaxed (the Python code runs on numpy 2) and RECORD is
   rewritten. The re-packed wheel is then installed with pip.

Usage: ``python tools/install_detectron2.py [--from PATH] [--cache-dir DIR]``
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

WHEEL_NAME = "sal_detectron2-0.7.2-cp310-none-any.whl"
WHEEL_SHA256 = "491af0c7f79bdb2d178e46f6cb16a97c4ac968d45c41ea3f6b6435d59bbee561"
REPACKED_NAME = "sal_detectron2-0.7.2-py3-none-any.whl"
DIST_INFO = "sal_detectron2-0.7.2.dist-info"


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_registry_wheel(cache_dir: Path) -> Path:
    """Fetch the pinned registry wheel into ``cache_dir`` (pip's own client) and verify its hash."""
    target = cache_dir / WHEEL_NAME
    if not target.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--python-version",
                "3.10",
                "--dest",
                str(cache_dir),
                "sal-detectron2==0.7.2",
            ],
            check=True,
        )
    actual = sha256_of(target)
    if actual != WHEEL_SHA256:
        target.unlink()
        raise SystemExit(f"{target}: sha256 {actual} does not match the pinned {WHEEL_SHA256}")
    return target


def _keep(name: str) -> bool:
    """Whether a member of the registry wheel goes into the re-packed one."""
    if name.startswith("tools/") or name.endswith("/RECORD"):
        return False
    return not (name.startswith("detectron2/_C") and name.endswith(".so"))


def _patch(name: str, data: bytes) -> bytes:
    """Fix the WHEEL tag and the numpy pin; every other file is copied byte for byte."""
    if name == f"{DIST_INFO}/WHEEL":
        text = data.decode()
        text = text.replace("Root-Is-Purelib: false", "Root-Is-Purelib: true")
        text = text.replace("Tag: cp310-cp310-linux_x86_64", "Tag: py3-none-any")
        return text.encode()
    if name == f"{DIST_INFO}/METADATA":
        return data.decode().replace("Requires-Dist: numpy<2", "Requires-Dist: numpy").encode()
    if name == f"{DIST_INFO}/top_level.txt":
        return b"detectron2\n"
    return data


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def repack(source: Path, out_dir: Path) -> Path:
    """Write the pure-Python wheel next to the cached one and return its path."""
    target = out_dir / REPACKED_NAME
    records = []
    tmp = target.with_suffix(".tmp")
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            if info.is_dir() or not _keep(info.filename):
                continue
            data = _patch(info.filename, zin.read(info.filename))
            zout.writestr(info.filename, data)
            records.append(_record_line(info.filename, data))
        records.append(f"{DIST_INFO}/RECORD,,")
        zout.writestr(f"{DIST_INFO}/RECORD", "\n".join(records) + "\n")
    tmp.replace(target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="source", help="a Detectron2 you already have: source folder, sdist or wheel")
    parser.add_argument("--cache-dir", default=".cache/wheels", help="where the registry wheel is kept")
    args = parser.parse_args(argv)
    pip = [sys.executable, "-m", "pip", "install"]
    if args.source:
        if not Path(args.source).exists():
            raise SystemExit(f"{args.source}: no such Detectron2 source, sdist or wheel")
        subprocess.run(pip + ["--no-build-isolation", args.source], check=True)
        return 0
    if importlib.util.find_spec("detectron2") is not None:
        print("detectron2 is already installed in this environment; leaving it as it is")
        return 0
    cache_dir = Path(args.cache_dir)
    wheel = repack(download_registry_wheel(cache_dir), cache_dir)
    subprocess.run(pip + [str(wheel)], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
