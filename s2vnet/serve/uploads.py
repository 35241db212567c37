"""Checking uploaded scans before anything reads them: type by content, size, and safe unzipping.

An upload is a NIfTI (``.nii`` / ``.nii.gz``), an attached NRRD, or a zip of one DICOM series. The name's
suffix must agree with the bytes (NIfTI header size and magic, ``NRRD000``, zip signature). A zip is
checked member by member before extraction: no absolute paths, no ``..``, no symlinks, no encryption, a
member count and a total uncompressed size limit, and a compression-ratio limit; while extracting, the
bytes actually written are counted too (declared sizes can lie). A ``.nii.gz`` is streamed through once,
counting what it unpacks to against ``SERVE.MAX_UNPACKED_MB``, before anything reads it. Members are written
under numbered names in a private folder, so no name from the archive is ever used as a path.
"""

from __future__ import annotations

import gzip
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from s2vnet.errors import InputError
from s2vnet.serve.paths import check_single_file_format

__all__ = ["UploadLimits", "UPLOAD_SUFFIXES", "upload_suffix", "check_upload_content", "extract_dicom_zip"]

UPLOAD_SUFFIXES = {".nii.gz": "nifti", ".nii": "nifti", ".nrrd": "nrrd", ".zip": "zip"}
_MB = 1024 * 1024
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class UploadLimits:
    """Limits from ``SERVE.*`` on what one request may bring in (see :mod:`s2vnet.config`)."""

    max_upload_mb: float = 1024
    max_unzipped_mb: float = 4096
    max_zip_members: int = 10000
    max_zip_ratio: float = 200.0
    max_unpacked_mb: float = 1024.0
    max_slices: int = 1024

    @classmethod
    def from_cfg(cls, cfg) -> UploadLimits:
        serve = cfg.SERVE
        return cls(
            float(serve.MAX_UPLOAD_MB),
            float(serve.MAX_UNZIPPED_MB),
            int(serve.MAX_ZIP_MEMBERS),
            float(serve.MAX_ZIP_RATIO),
            float(serve.MAX_UNPACKED_MB),
            int(serve.MAX_SLICES),
        )

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * _MB)


def upload_suffix(name: str) -> str:
    """The upload's recognised suffix (a key of ``UPLOAD_SUFFIXES``, whose value is its kind).

    Raises:
        InputError: a name with a path, or an unsupported suffix.
    """
    if not name or name != PurePosixPath(name.replace("\\", "/")).name:
        raise InputError(name or "<upload>", "the upload name must be a plain file name")
    for suffix in UPLOAD_SUFFIXES:
        if name.lower().endswith(suffix):
            return suffix
    raise InputError(name, f"unsupported upload type; expected {', '.join(UPLOAD_SUFFIXES)}")


def check_upload_content(path: Path, name: str, kind: str, limits: UploadLimits) -> None:
    """Check that the received bytes are what the name says (``kind`` = ``UPLOAD_SUFFIXES[upload_suffix(name)]``).

    Raises:
        InputError: the content does not match the type (or a NRRD names a separate data file), or a
            ``.nii.gz`` unpacks to more than ``limits.max_unpacked_mb``.
    """
    with open(path, "rb") as handle:
        head = handle.read(1024)
    CONTENT_CHECKS[kind](path, name, head, limits)


def _check_nifti(path: Path, name: str, head: bytes, limits: UploadLimits) -> None:
    if name.lower().endswith(".gz"):
        if head[:2] != b"\x1f\x8b":
            raise InputError(name, "is not gzip-compressed although its name ends in .gz")
        head = _check_unpacked_size(path, name, limits)
    if not _is_nifti_header(head):
        raise InputError(name, "is not a NIfTI-1/2 single-file image (header size or magic wrong)")


def _check_unpacked_size(path: Path, name: str, limits: UploadLimits) -> bytes:
    """Stream through a gzip upload counting what it unpacks to (never holding more than a chunk); its first 1 kB."""
    budget, unpacked, head = int(limits.max_unpacked_mb * _MB), 0, b""
    try:
        with gzip.open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                head = head or chunk[:1024]
                unpacked += len(chunk)
                if unpacked > budget:
                    raise InputError(
                        name,
                        f"unpacks to more than {limits.max_unpacked_mb:g} MB (SERVE.MAX_UNPACKED_MB): "
                        "refused as too large or a decompression bomb",
                    )
    except (OSError, EOFError, zlib.error):
        raise InputError(name, "is not a readable gzip file (truncated or corrupt)") from None
    return head


def _check_nrrd(path: Path, name: str, head: bytes, limits: UploadLimits) -> None:
    if not head.startswith(b"NRRD000"):
        raise InputError(name, "is not an NRRD file (no NRRD000 magic)")
    check_single_file_format(path, name)


def _check_zip(path: Path, name: str, head: bytes, limits: UploadLimits) -> None:
    if not (head[:4] in (b"PK\x03\x04", b"PK\x05\x06") and zipfile.is_zipfile(path)):
        raise InputError(name, "is not a zip archive")


# Content check per upload kind, called as ``check(path, name, first_1024_bytes, limits)``; raises InputError.
CONTENT_CHECKS = {"nifti": _check_nifti, "nrrd": _check_nrrd, "zip": _check_zip}


def _is_nifti_header(head: bytes) -> bool:
    """NIfTI-1 ``n+1`` (348-byte header) or NIfTI-2 ``n+2`` (540), either byte order; pairs (``ni1``) refused."""
    if len(head) >= 348:
        for order in "<>":
            if struct.unpack(order + "i", head[:4])[0] == 348 and head[344:348] == b"n+1\x00":
                return True
            if len(head) >= 540 and struct.unpack(order + "i", head[:4])[0] == 540 and head[4:8] == b"n+2\x00":
                return True
    return False


def _member_problem(info: zipfile.ZipInfo, limits: UploadLimits) -> str | None:
    """Why a zip member may not be extracted, or None."""
    name = info.filename.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return f"member '{info.filename}' has an absolute path"
    if ".." in PurePosixPath(name).parts:
        return f"member '{info.filename}' has '..' in its path"
    if stat.S_ISLNK(info.external_attr >> 16):
        return f"member '{info.filename}' is a symbolic link"
    if info.flag_bits & 0x1:
        return f"member '{info.filename}' is encrypted"
    if info.file_size > _MB and info.file_size > limits.max_zip_ratio * max(info.compress_size, 1):
        return (
            f"member '{info.filename}' expands {info.file_size / max(info.compress_size, 1):.0f}x "
            f"(limit {limits.max_zip_ratio:g}x): refused as a decompression bomb"
        )
    return None


def extract_dicom_zip(path: Path, name: str, dest: Path, limits: UploadLimits) -> Path:
    """Check and extract a zipped DICOM series into ``dest`` (created); returns ``dest``.

    Raises:
        InputError: a member breaking a rule above, too many members, too large uncompressed, or a corrupt zip.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            members = [i for i in archive.infolist() if not i.is_dir()]
            _check_members(members, name, limits)
            dest.mkdir(parents=True, exist_ok=False)
            budget = int(limits.max_unzipped_mb * _MB)
            for index, info in enumerate(members):
                budget -= _extract_member(archive, info, dest / f"{index:06d}.dcm", budget, name)
    except zipfile.BadZipFile as err:
        raise InputError(name, f"is a corrupt zip archive ({err})") from None
    return dest


def _check_members(members: list[zipfile.ZipInfo], name: str, limits: UploadLimits) -> None:
    if not members:
        raise InputError(name, "zip archive is empty")
    if len(members) > limits.max_zip_members:
        raise InputError(name, f"zip holds {len(members)} files (limit {limits.max_zip_members})")
    for info in members:
        problem = _member_problem(info, limits)
        if problem:
            raise InputError(name, problem)
    total = sum(i.file_size for i in members)
    if total > limits.max_unzipped_mb * _MB:
        raise InputError(name, f"zip expands to {total / _MB:.0f} MB (limit {limits.max_unzipped_mb:g} MB)")


def _extract_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: int, name: str) -> int:
    """Copy one member to ``target`` counting real bytes; returns the bytes written."""
    written = 0
    with archive.open(info) as source, open(target, "wb") as out:
        while chunk := source.read(_CHUNK):
            written += len(chunk)
            if written > info.file_size or written > budget:
                raise InputError(
                    name,
                    f"member '{info.filename}' expands beyond its declared size or the "
                    "unzipped size limit: refused as a decompression bomb",
                )
            out.write(chunk)
    return written
