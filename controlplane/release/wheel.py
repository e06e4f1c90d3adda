"""What a release wheel is: a wheel (a zip archive) of this project, erp-controlplane, that holds
erp_core. Its version comes from its METADATA and must agree with its file name."""

from __future__ import annotations

import email.parser
import hashlib
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import BadWheel

PROJECT = "erp-controlplane"
# The ERP modules a release must ship for the control plane to serve and check it.
REQUIRED_MEMBERS = ("erp_core/__init__.py", "erp_core/app.py", "erp_core/config.py", "erp_core/db.py",
                    "erp_core/serve.py")
# A PEP 440 version as it appears in file names and directory names (no path separators).
VERSION_RE = re.compile(r"^[0-9]+(?:!?[0-9A-Za-z]+)*(?:[.+_-][0-9A-Za-z]+)*$")
_FIX = "Pass the wheel of an ERP release (erp_controlplane-<version>-py3-none-any.whl, as built by " \
       "'python -m pip wheel --no-deps <source tree>')."


def canonical_name(name: str) -> str:
    """A project name as package indexes compare them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class WheelInfo:
    path: Path
    name: str
    version: str
    sha256: str
    size: int

    @property
    def filename(self) -> str:
        return self.path.name


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def inspect_wheel(path: str | Path) -> WheelInfo:
    """Check that `path` is a sound wheel of this project; its name, version, sha256 and size.
    BadWheel names the problem otherwise."""
    path = Path(path)
    if not path.is_file():
        raise BadWheel(f"{path} does not exist or is not a file", fix=_FIX, path=str(path))
    if path.suffix != ".whl":
        raise BadWheel(f"{path.name} is not a wheel: a wheel's file name ends in .whl", fix=_FIX, path=str(path))
    parts = path.name[:-4].split("-")
    if len(parts) not in (5, 6):
        raise BadWheel(f"{path.name} is not a wheel file name (name-version-python-abi-platform.whl)",
                       fix=_FIX, path=str(path))
    file_name, file_version = parts[0], parts[1]
    if not zipfile.is_zipfile(path):
        raise BadWheel(f"{path.name} is not a wheel: it is not a zip archive", fix=_FIX, path=str(path))
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()  # reads every member and checks its CRC
            if bad is not None:
                raise BadWheel(f"{path.name} is corrupt: member {bad} fails its checksum",
                               fix="Copy the wheel again from where releases are kept (and compare its sha256).",
                               path=str(path))
            names = set(z.namelist())
            metadata_files = sorted(n for n in names if re.fullmatch(r"[^/]+\.dist-info/METADATA", n))
            if len(metadata_files) != 1:
                raise BadWheel(f"{path.name} is not a wheel: it has {len(metadata_files)} .dist-info/METADATA "
                               "files, a wheel has exactly one", fix=_FIX, path=str(path))
            metadata = email.parser.Parser().parsestr(z.read(metadata_files[0]).decode("utf-8", "replace"))
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise BadWheel(f"{path.name} is corrupt: {exc}",
                       fix="Copy the wheel again from where releases are kept (and compare its sha256).",
                       path=str(path)) from None
    name, version = (metadata.get("Name") or "").strip(), (metadata.get("Version") or "").strip()
    if canonical_name(name) != PROJECT:
        raise BadWheel(f"{path.name} is a wheel of {name or 'an unnamed project'!r}, not of {PROJECT}",
                       fix=_FIX, path=str(path), project=name)
    if not VERSION_RE.match(version):
        raise BadWheel(f"{path.name} has no usable version in its METADATA (found {version!r})", fix=_FIX,
                       path=str(path))
    if canonical_name(file_name) != PROJECT or file_version.lower() != version.lower():
        raise BadWheel(f"{path.name}: the file name says {file_name} {file_version}, its METADATA says "
                       f"{name} {version}", fix="Use the wheel under the name it was built with.", path=str(path))
    missing = [m for m in REQUIRED_MEMBERS if m not in names]
    if missing:
        raise BadWheel(f"{path.name} is a wheel of {PROJECT} without the ERP: it lacks {', '.join(missing)}",
                       fix=_FIX, path=str(path))
    return WheelInfo(path.resolve(), name, version, sha256_of(path), path.stat().st_size)
